#!/usr/bin/env bash
# The trace export suite: the recording proxy exports OpenTelemetry spans of proxy -> twin traffic to a real
# Phoenix server (arize-phoenix from PyPI, on free loopback ports with a temporary working directory), and the
# spans are read back through Phoenix's REST API.
#
#   interop/otel/run.sh [pytest args...]
#
# Needs the binaries built into the target dir: cargo build -p agentcap
# Environment: AGENTCAP_BIN (see conftest.py); AGENTCAP_OTEL_VENV: the virtualenv to use or create
# (default: interop/otel/.venv). A cold `pip install` of arize-phoenix takes about 2.5 minutes and 860 MB.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${AGENTCAP_OTEL_VENV:-$here/.venv}"
# shellcheck source=../../scripts/venv.sh
source "$here/../../scripts/venv.sh"
ensure_venv "$venv" "$here/requirements.txt"
export PYTHONDONTWRITEBYTECODE=1
cd "$here"
exec "$venv/bin/python" -m pytest -p no:cacheprovider -q "$@" test_otel.py
