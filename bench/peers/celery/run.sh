#!/usr/bin/env bash
# The Celery peer benchmark in one command: installs Debian's redis-server if it is missing, builds this
# folder's own virtual environment (.venv, Celery 5 and Redis's client: requirements.txt) apart from
# the project's, then runs bench.py with it. Arguments go to bench.py (--workers, --rounds).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PYTHON="${PYTHON:-python3.11}"
if ! command -v redis-server >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq >&2
  $SUDO apt-get install -y -qq redis-server >&2
fi
VENV="$HERE/.venv"
STAMP="$VENV/.installed"
if [ ! -e "$STAMP" ] || [ "$HERE/requirements.txt" -nt "$STAMP" ]; then
  test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip >&2
  "$VENV/bin/pip" install -q -r "$HERE/requirements.txt" >&2
  touch "$STAMP"
fi
exec "$VENV/bin/python" "$HERE/bench.py" "$@"
