#!/usr/bin/env bash
# Runs the TypeScript SDK interop suite against the twin, then again through the recording proxy to the twin
# over TLS (AGENTCAP_INTEROP_TARGET=proxy-tls, see twin.mjs). Works from any directory.
# The twin binary must be built first (see README in SDK_NOTES.md); override it with AGENTCAP_BIN.
# AGENTCAP_INTEROP_TARGETS chooses the targets (default: "direct proxy-tls"; also: proxy).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

if [ ! -d "$here/node_modules/@mistralai/mistralai" ]; then
  (cd "$here" && npm ci --no-audit --no-fund)
fi

cd "$repo"
failed=()
for target in ${AGENTCAP_INTEROP_TARGETS:-direct proxy-tls}; do
  echo "== typescript interop suite, target $target" >&2
  AGENTCAP_INTEROP_TARGET="$target" node --test --test-concurrency=1 "$@" interop/ts/ || failed+=("$target")
done
if (( ${#failed[@]} )); then
  echo "typescript interop suite failed for: ${failed[*]}" >&2
  exit 1
fi
