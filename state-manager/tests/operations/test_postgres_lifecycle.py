"""`make test` stops the PostgreSQL cluster it started, and only that one (scripts/with-postgres.sh).

Each test uses a cluster of its own (its own data folder and port), never the shared one of the suite.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from exosphere_testing import free_port, fresh_postgres_url, wait_until

SCRIPTS = Path(__file__).resolve().parents[3] / "scripts"
pytestmark = pytest.mark.skipif(
    not glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
    reason="PostgreSQL is not installed (scripts/postgres.sh start installs it)",
)


@pytest.fixture
def cluster_env() -> Iterator[dict[str, str]]:
    # Under /tmp itself: the postgres user must reach the folder, and pytest's own tmp folders are private.
    data = f"/tmp/exosphere-pg-lifecycle-{uuid.uuid4().hex[:8]}"
    # Not the suite's `make test` run's cluster: whether it is throwaway is for each test to find out.
    outer = {k: v for k, v in os.environ.items() if k != "EXOSPHERE_TEST_POSTGRES_THROWAWAY"}
    env = {**outer, "EXOSPHERE_PG_DIR": data, "EXOSPHERE_PG_PORT": str(free_port())}
    yield env
    subprocess.run([SCRIPTS / "postgres.sh", "stop"], env=env, check=False)
    shutil.rmtree(data, ignore_errors=True)
    Path(data + ".lock").unlink(missing_ok=True)


def _running(env: dict[str, str]) -> bool:
    return subprocess.run([SCRIPTS / "postgres.sh", "status"], env=env).returncode == 0


def _start(env: dict[str, str]) -> str:
    done = subprocess.run([SCRIPTS / "postgres.sh", "start"], env=env, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def _with_postgres(env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCRIPTS / "with-postgres.sh", *command], env=env, capture_output=True, text=True)


def test_a_cluster_started_for_the_tests_is_stopped_after_them_even_when_they_fail(cluster_env: dict[str, str]) -> None:
    check = 'scripts="$1"; "$scripts/postgres.sh" status && echo "running at $EXOSPHERE_TEST_POSTGRES_URL"; exit 3'
    done = _with_postgres(cluster_env, "bash", "-c", check, "-", str(SCRIPTS))
    assert done.returncode == 3, done  # the tests' failure is make's failure
    assert f"running at postgresql://postgres@127.0.0.1:{cluster_env['EXOSPHERE_PG_PORT']}/postgres" in done.stdout
    assert not _running(cluster_env)


def test_a_cluster_that_was_already_running_is_left_running(cluster_env: dict[str, str]) -> None:
    _start(cluster_env)
    done = _with_postgres(cluster_env, "true")
    assert done.returncode == 0, done
    assert _running(cluster_env)


# psql comes with Debian's postgresql; the same query also runs inside a `with-postgres.sh` command.
LIST_DATABASES = "SELECT datname FROM pg_database"
MAKE_DATABASE = "import sys; from exosphere_testing import fresh_postgres_url; print(fresh_postgres_url(sys.argv[1]))"


def _databases(url: str) -> set[str]:
    listed = subprocess.run(["psql", url, "-Atc", LIST_DATABASES], check=True, capture_output=True, text=True)
    return set(listed.stdout.split())


def test_a_cluster_whose_server_was_killed_starts_again_empty(cluster_env: dict[str, str]) -> None:
    # A session that ends kills its processes; the next run's `make test` must still get a cluster.
    admin = _start(cluster_env)
    old_db = fresh_postgres_url(admin)
    postmaster = int(Path(cluster_env["EXOSPHERE_PG_DIR"], "postmaster.pid").read_text().split()[0])
    os.kill(postmaster, signal.SIGKILL)
    wait_until(lambda: not _running(cluster_env), what="the killed cluster to stop answering")

    assert _start(cluster_env) == admin
    assert _running(cluster_env)
    assert old_db.rsplit("/", 1)[1] not in _databases(admin)


def test_the_databases_a_test_process_makes_are_dropped_when_it_exits(cluster_env: dict[str, str]) -> None:
    admin = _start(cluster_env)
    made = subprocess.run(
        [sys.executable, "-c", MAKE_DATABASE, admin], env=cluster_env, check=True, capture_output=True, text=True
    )
    name = made.stdout.strip().rsplit("/", 1)[1]
    assert name.startswith("exo_")
    assert name not in _databases(admin)


def test_a_cluster_made_for_one_run_keeps_its_databases_until_it_goes(cluster_env: dict[str, str]) -> None:
    # Dropping each costs a checkpoint; the cluster is made anew at the next start anyway.
    script = 'url="$EXOSPHERE_TEST_POSTGRES_URL"; "$1" -c "$2" "$url" && psql "$url" -Atc "$3"'
    done = _with_postgres(cluster_env, "bash", "-c", script, "-", sys.executable, MAKE_DATABASE, LIST_DATABASES)
    assert done.returncode == 0, done
    made, *listed = done.stdout.split()
    assert made.rsplit("/", 1)[1] in listed
    assert not _running(cluster_env)


def test_a_folder_the_script_did_not_make_is_never_removed(cluster_env: dict[str, str]) -> None:
    data = Path(cluster_env["EXOSPHERE_PG_DIR"])
    data.mkdir()
    (data / "precious.txt").write_text("someone's data")
    done = subprocess.run([SCRIPTS / "postgres.sh", "start"], env=cluster_env, capture_output=True, text=True)
    assert done.returncode == 1
    assert "not a cluster made by" in done.stderr
    assert (data / "precious.txt").read_text() == "someone's data"
