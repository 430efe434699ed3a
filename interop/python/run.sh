#!/usr/bin/env bash
# Run the Python interop suite (official mistralai SDK against the twin) from any directory, once per target:
# direct to the twin, through the recording proxy, and through the proxy to the twin over TLS (h2).
#
#   interop/python/run.sh [pytest args...]
#
# The twin binary must already be built (cargo test --workspace --no-run). Environment:
#   AGENTCAP_INTEROP_TARGETS  targets to run, in order (default: "direct proxy proxy-tls"; see conftest.py)
#   AGENTCAP_VENV         virtualenv to use/create (default: <repo>/.venv)
#   AGENTCAP_BIN          twin binary (default: <cargo target dir>/debug/agentcap, see scripts/target-dir)
#   AGENTCAP_CAPTURE_DIR  capture directory shared with the TypeScript suite (default: a pytest temp dir)
#   AGENTCAP_OPENAPI      OpenAPI spec (default: <repo>/../shared/spec/openapi.yaml)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${AGENTCAP_VENV:-$repo/.venv}"
requirements="$here/requirements.txt"
stamp="$venv/.interop-requirements.sha256"

want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" ]]; then
    echo "creating virtualenv $venv" >&2
    python3 -m venv "$venv"
fi
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "installing $requirements into $venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    echo "$want" > "$stamp"
fi

export AGENTCAP_BIN="${AGENTCAP_BIN:-$("$repo/scripts/target-dir")/debug/agentcap}"
export AGENTCAP_OPENAPI="${AGENTCAP_OPENAPI:-$repo/../shared/spec/openapi.yaml}"
export PYTHONDONTWRITEBYTECODE=1
# The SDK would otherwise fall back to a real key from the environment.
unset MISTRAL_API_KEY

if [[ ! -x "$AGENTCAP_BIN" ]]; then
    echo "twin binary $AGENTCAP_BIN is missing: build it first (cargo test --workspace --no-run)" >&2
    exit 2
fi

cd "$repo"
failed=()
for target in ${AGENTCAP_INTEROP_TARGETS:-direct proxy proxy-tls}; do
    echo "== python interop suite, target $target" >&2
    "$venv/bin/python" -m pytest -q "$here" --target "$target" "$@" || failed+=("$target")
done
if (( ${#failed[@]} )); then
    echo "python interop suite failed for: ${failed[*]}" >&2
    exit 1
fi
