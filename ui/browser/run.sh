#!/usr/bin/env bash
# The UI's browser suite: real headless Chromium (the system's /usr/bin/chromium, never a downloaded one) driven
# by Playwright for Python, over recordings made by the real proxy.
#
#   ui/browser/run.sh [pytest args...]
#
# Needs: `apt-get install -y chromium`, and the binaries built into the target dir:
#   cargo build -p agentcap
# Environment: AGENTCAP_BIN, AGENTCAP_CHROMIUM, AGENTCAP_UI_SCREENSHOTS (see conftest.py; screenshots go to the
# target dir by default);
# AGENTCAP_UI_VENV: the virtualenv to use or create (default: ui/browser/.venv).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${AGENTCAP_UI_VENV:-$here/.venv}"
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
chromium="${AGENTCAP_CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$chromium" ]]; then
    echo "no Chromium at $chromium: apt-get install -y chromium (or set AGENTCAP_CHROMIUM)" >&2
    exit 2
fi
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 PYTHONDONTWRITEBYTECODE=1
cd "$here"
exec "$venv/bin/python" -m pytest -p no:cacheprovider -q "$@" test_ui.py
