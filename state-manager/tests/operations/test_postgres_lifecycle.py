"""`make test` stops the PostgreSQL cluster it started, and only that one (scripts/with-postgres.sh).

Each test uses a cluster of its own (its own data folder and port), never the shared one of the suite.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from exosphere_testing import free_port

SCRIPTS = Path(__file__).resolve().parents[3] / "scripts"
pytestmark = pytest.mark.skipif(
    not glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
    reason="PostgreSQL is not installed (scripts/postgres.sh start installs it)",
)


@pytest.fixture
def cluster_env() -> Iterator[dict[str, str]]:
    # Under /tmp itself: the postgres user must reach the folder, and pytest's own tmp folders are private.
    data = f"/tmp/exosphere-pg-lifecycle-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "EXOSPHERE_PG_DIR": data, "EXOSPHERE_PG_PORT": str(free_port())}
    yield env
    subprocess.run([SCRIPTS / "postgres.sh", "stop"], env=env, check=False)
    shutil.rmtree(data, ignore_errors=True)


def _running(env: dict[str, str]) -> bool:
    return subprocess.run([SCRIPTS / "postgres.sh", "status"], env=env).returncode == 0


def _with_postgres(env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCRIPTS / "with-postgres.sh", *command], env=env, capture_output=True, text=True)


def test_a_cluster_started_for_the_tests_is_stopped_after_them_even_when_they_fail(cluster_env: dict[str, str]) -> None:
    check = 'scripts="$1"; "$scripts/postgres.sh" status && echo "running at $EXOSPHERE_TEST_POSTGRES_URL"; exit 3'
    done = _with_postgres(cluster_env, "bash", "-c", check, "-", str(SCRIPTS))
    assert done.returncode == 3, done  # the tests' failure is make's failure
    assert f"running at postgresql://postgres@127.0.0.1:{cluster_env['EXOSPHERE_PG_PORT']}/postgres" in done.stdout
    assert not _running(cluster_env)


def test_a_cluster_that_was_already_running_is_left_running(cluster_env: dict[str, str]) -> None:
    subprocess.run([SCRIPTS / "postgres.sh", "start"], env=cluster_env, check=True, capture_output=True)
    done = _with_postgres(cluster_env, "true")
    assert done.returncode == 0, done
    assert _running(cluster_env)
