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

# The wire types must be what openapi-typescript makes of the committed contract/openapi.json (whose
# own freshness state-manager/tests/unit/test_contract_drift.py checks).
generated="$(mktemp -d)"
trap 'rm -rf "$generated"' EXIT
node_modules/.bin/openapi-typescript ../contract/openapi.json -o "$generated/openapi.ts" >/dev/null 2>&1
if ! diff -u src/generated/openapi.ts "$generated/openapi.ts"; then
  echo "typescript-sdk/src/generated/openapi.ts is stale: run scripts/generate-contract.sh and commit both files it writes" >&2
  exit 1
fi

npm run build
npm test
