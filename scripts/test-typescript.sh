#!/usr/bin/env bash
# The TypeScript SDK's tests, from a fresh clone: install exactly the locked dependencies, build,
# and run the node test runner against real `exosphere server` processes (started by the tests
# from $REPO/.venv/bin/exosphere, which `make setup` builds).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
export EXOSPHERE_SERVER_BIN="${EXOSPHERE_SERVER_BIN:-$REPO/.venv/bin/exosphere}"
[ -x "$EXOSPHERE_SERVER_BIN" ] || { echo "exosphere server not found at $EXOSPHERE_SERVER_BIN: run 'make setup'" >&2; exit 1; }
command -v npm >/dev/null || { echo "npm not found: the TypeScript SDK needs Node >= 20 and npm" >&2; exit 1; }
cd "$REPO/typescript-sdk"
npm ci --no-audit --no-fund --prefer-offline
npm run build
npm test
