"""Large payloads in an S3-compatible store: a real local S3 server (moto's, a subprocess on a loopback
port), with a real exosphere server on SQLite and on PostgreSQL. Payloads go to the bucket, never to
the database; claims hand them out whole; retention deletes a finished run's objects."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from exosphere_server.clock import now_ms
from exosphere_server.engine import runs, transitions
from exosphere_server.engine.context import EngineContext
from exosphere_server.engine.secret_box import SecretBox
from exosphere_server.storage import open_storage
from exosphere_server.storage.payloads import PayloadSettings
from exosphere_testing import ServerProcess, free_port, wait_until

from tests.blackbox.helpers import by_identifier, claim_all, executed, node, register, states, trigger, upsert
from tests.conftest import database_url

from ..engine.echo_graph import add_echo_graph

BUCKET = "exosphere-payloads"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
BIG = "object " * 30_000  # 210 KB


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server process with an empty bucket; the AWS variables point boto3 at test credentials."""
    port = free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    saved = {name: os.environ.get(name) for name in CREDENTIALS}
    os.environ.update(CREDENTIALS)

    def answers() -> bool:
        try:
            return httpx.get(endpoint, timeout=2).status_code < 500
        except httpx.HTTPError:
            return False

    try:
        wait_until(answers, what="the S3 server to answer")
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        process.kill()
        process.wait()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _objects(endpoint: str, prefix: str) -> list[str]:
    answer: dict[str, Any] = dict(
        boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    )
    return sorted(item["Key"] for item in answer.get("Contents", []))


def test_a_server_keeps_large_payloads_in_the_bucket_and_hands_them_out_whole(
    make_server: Callable[..., ServerProcess], s3_endpoint: str, namespace: str
) -> None:
    env = {"EXOSPHERE_PAYLOAD_STORE": f"s3://{BUCKET}/{namespace}", "EXOSPHERE_S3_ENDPOINT_URL": s3_endpoint}
    server = make_server(env={**env, **CREDENTIALS})
    with httpx.Client(
        base_url=f"{server.url}/v0/namespace/{namespace}", headers={"x-api-key": server.api_key}, timeout=60
    ) as api:
        register(api, {"Take": (("big",), ("out",)), "Next": (("out",), ("x",))})
        upsert(
            api,
            "take",
            [
                node("take", "Take", namespace, {"big": "x"}, ["next"]),
                node("next", "Next", namespace, {"out": "${{ take.outputs.out }}"}),
            ],
        )
        run_id = trigger(api, "take", inputs={"big": BIG})
        [claimed] = claim_all(api, "Take", count=1)
        assert claimed["inputs"] == {"big": BIG}
        assert executed(api, claimed, {"out": BIG + "!"}).status_code == 200
        [child] = claim_all(api, "Next", count=1)
        assert child["inputs"] == {"out": BIG + "!"}
        [take] = by_identifier(states(api, run_id), "take")
        assert set(take["large_outputs"]) == {"out"} and take["outputs"] == {}
        assert api.get(f"/state/{take['state_id']}/payload/outputs/out").text == BIG + "!"
    assert len(_objects(s3_endpoint, f"{namespace}/{run_id}/")) == 2  # the input and the output


async def test_retention_deletes_a_finished_runs_objects(backend: str, tmp_path: Path, s3_endpoint: str) -> None:
    prefix = f"retention-{backend}"
    settings = PayloadSettings(store_url=f"s3://{BUCKET}/{prefix}", s3_endpoint_url=s3_endpoint)
    storage = open_storage(database_url(backend, tmp_path), payload_settings=settings)
    await storage.start()
    ctx = EngineContext(storage=storage, box=SecretBox(b"k" * 32))
    try:
        await add_echo_graph(ctx)
        done = (await runs.trigger(ctx, "ns", "g", runs.RunRequest(inputs={"x": BIG}))).run_id
        [state] = await transitions.claim(ctx, "ns", ["Echo"], 1)
        await transitions.executed(ctx, "ns", state.id, [{"x": "small"}], state.lease_id)
        live = (await runs.trigger(ctx, "ns", "g", runs.RunRequest(inputs={"x": BIG + "2"}))).run_id
        assert len(_objects(s3_endpoint, f"{prefix}/{done}/")) == 1

        assert await runs.delete_finished_runs(ctx, now_ms() + 1000, limit=10) == 1
        wait_until(lambda: _objects(s3_endpoint, f"{prefix}/{done}/") == [], what="the run's objects to go")
        assert len(_objects(s3_endpoint, f"{prefix}/{live}/")) == 1

        # An object a crash left (its run never committed) goes in the sweep; the live run's stays.
        client = boto3.client("s3", endpoint_url=s3_endpoint)
        client.put_object(Bucket=BUCKET, Key=f"{prefix}/crashed-run/deadbeef", Body=b"left over")
        async with storage.reader() as tx:
            assert await tx.sweep_orphan_payloads(now_ms() + 60_000) == 1
        assert _objects(s3_endpoint, f"{prefix}/crashed-run/") == []
        assert len(_objects(s3_endpoint, f"{prefix}/{live}/")) == 1
    finally:
        await storage.close()
