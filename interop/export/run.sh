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
# shellcheck source=../../scripts/venv.sh
source "$here/../../scripts/venv.sh"
ensure_venv "$venv" "$here/requirements.txt"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 PYTHONDONTWRITEBYTECODE=1
cd "$here"
exec "$venv/bin/python" -m pytest -p no:cacheprovider -q "$@" test_export.py
