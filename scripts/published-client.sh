#!/usr/bin/env bash
# Builds .venv-published: Python >= 3.12 with the published `exospherehost==0.0.3` client from PyPI,
# used by the compatibility tests and the side-by-side benchmark. Prints the venv's python.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-published
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import exospherehost" 2>/dev/null; then
  PY=""
  for candidate in python3.13 python3.12 "$HOME"/.pyenv/versions/3.13*/bin/python3 "$HOME"/.pyenv/versions/3.12*/bin/python3; do
    if "$candidate" -c "import sys; sys.exit(sys.version_info < (3, 12))" >/dev/null 2>&1; then
      PY=$(command -v "$candidate"); break
    fi
  done
  [ -n "$PY" ] || { echo "no Python >= 3.12 found (the published client needs it)" >&2; exit 1; }
  rm -rf "$VENV"
  "$PY" -m venv "$VENV" >&2
  "$VENV/bin/pip" install -q "exospherehost==0.0.3" >&2
fi
echo "$PWD/$VENV/bin/python"
