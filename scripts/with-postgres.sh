#!/usr/bin/env bash
# Run a command with a PostgreSQL cluster for tests, and stop the cluster afterwards if this started it.
#   scripts/with-postgres.sh COMMAND [ARGS...]
# The command sees the admin URL in EXOSPHERE_TEST_POSTGRES_URL. A cluster that was already running
# (another checkout's tests, a developer's) is left running; one started here is stopped however the
# command ends (success, failure, Ctrl-C), so `make test` leaves no server behind.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if "$here/postgres.sh" status; then
  started_here=0
else
  started_here=1
fi
EXOSPHERE_TEST_POSTGRES_URL="$("$here/postgres.sh" start)"
export EXOSPHERE_TEST_POSTGRES_URL
if [ "$started_here" = 1 ]; then
  trap '"$here/postgres.sh" stop' EXIT
  # The next start makes the cluster anew, so the tests need not drop their databases one by one.
  export EXOSPHERE_TEST_POSTGRES_THROWAWAY=1
fi
"$@"
