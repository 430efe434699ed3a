#!/usr/bin/env bash
# The lake suite: two `agentcap proxy --ship` instances writing one Parquet dataset into an S3 emulator (moto),
# read back by DuckDB and by ClickHouse's engine (chdb), with a SIGKILL in the middle of a segment.
#
#   interop/lake/run.sh [pytest args...]
#
# Needs the agentcap binary: `cargo build -p agentcap` (or `cargo test`, which builds it).
# Environment: AGENTCAP_BIN (default: <cargo target dir>/debug/agentcap);
# AGENTCAP_LAKE_VENV: the virtualenv to use or create (default: interop/lake/.venv).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${AGENTCAP_LAKE_VENV:-$here/.venv}"
# shellcheck source=../../scripts/venv.sh
source "$here/../../scripts/venv.sh"
ensure_venv "$venv" "$here/requirements.txt"
export PYTHONDONTWRITEBYTECODE=1
cd "$here"
exec "$venv/bin/python" -m pytest -p no:cacheprovider -q -s "$@" test_lake.py
