#!/usr/bin/env bash
# Regenerates the wire contract from the server's routes and the models of exospherehost.contract:
#   contract/openapi.json                  the server's OpenAPI document (keys sorted, for readable diffs)
#   typescript-sdk/src/generated/openapi.ts  its TypeScript types (openapi-typescript, pinned by package-lock)
#   typescript-sdk/src/generated/stateMachine.ts  statuses, groups and moves of exospherehost.statuses
# Run it after changing a request or answer; `make test` fails while either file is stale.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
[ -x "$PYTHON" ] || { echo "no Python at $PYTHON: run 'make setup'" >&2; exit 1; }
command -v npm >/dev/null || { echo "npm not found: the TypeScript types need Node >= 20 and npm" >&2; exit 1; }

"$PYTHON" -m exosphere_server.openapi_document "$REPO/contract/openapi.json"
"$PYTHON" "$REPO/scripts/generate_state_machine.py"
cd "$REPO/typescript-sdk"
[ -x node_modules/.bin/openapi-typescript ] || npm ci --no-audit --no-fund --prefer-offline
node_modules/.bin/openapi-typescript ../contract/openapi.json -o src/generated/openapi.ts
echo "wrote contract/openapi.json, typescript-sdk/src/generated/openapi.ts and stateMachine.ts"
