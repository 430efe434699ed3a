#!/usr/bin/env bash
# Runs the TypeScript SDK interop suite against the twin. Works from any directory.
# The twin binary must be built first (see README in SDK_NOTES.md); override it with AGENTCAP_BIN.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

if [ ! -d "$here/node_modules/@mistralai/mistralai" ]; then
  (cd "$here" && npm ci --no-audit --no-fund)
fi

cd "$repo"
exec node --test --test-concurrency=1 "$@" interop/ts/
