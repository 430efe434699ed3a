#!/usr/bin/env bash
# The export suite: records traffic through the real proxy against the twin, exports it with
# `agentcap export` (Parquet, JSON Lines, HAR; from the closed file and through a running proxy's admin
# listener) and reads the files back with Python's DuckDB, pyarrow, jsonschema (a HAR 1.2 schema written
# from the public format description), haralyzer and, when the system has Chromium, Playwright's HAR
# replay in headless Chromium.
#
#   interop/export/run.sh [pytest args...]
#
# Needs the binary built into the target dir (`cargo build -p agentcap`).
# Environment: AGENTCAP_BIN (default: <target dir>/debug/agentcap), AGENTCAP_CHROMIUM (default
# /usr/bin/chromium; the Chromium test is skipped without it), AGENTCAP_EXPORT_VENV: the virtualenv to
# use or create (default: interop/export/.venv).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${AGENTCAP_EXPORT_VENV:-$here/.venv}"
requirements="$here/requirements.txt"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
fi
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    echo "$want" > "$stamp"
fi
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 PYTHONDONTWRITEBYTECODE=1
cd "$here"
exec "$venv/bin/python" -m pytest -p no:cacheprovider -q "$@" test_export.py
