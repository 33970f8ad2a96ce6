"""Large payloads in an S3-compatible object store (AWS S3, MinIO, Ceph, ...), with either database.

Chosen with ``EXOSPHERE_PAYLOAD_STORE=s3://BUCKET/PREFIX`` (``EXOSPHERE_S3_ENDPOINT_URL`` for a server
other than AWS; credentials and region from the usual ``AWS_*`` variables or files). Needs
``pip install "exosphere-server[s3]"`` (boto3). Objects are ``PREFIX/<run id>/<sha256>``.

A PUT is durable once S3 answers it, and `put` runs before the transaction that references the
payload commits, so a committed reference always finds its object. boto3 is synchronous: every call
runs in a worker thread, off the event loop.

Example::

    store = S3PayloadStore("s3://exosphere-payloads/prod", endpoint_url="http://127.0.0.1:9000")
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import sqlalchemy as sa
from botocore.exceptions import ClientError

from exosphere_server.storage import schema
from exosphere_server.storage.payloads import Blob, PayloadKey, PayloadMissing, PayloadStore, parse_s3_url

# Transfers in flight at once: a claim of a batch of states with large inputs reads them in parallel.
TRANSFERS = 8


class S3PayloadStore(PayloadStore):
    def __init__(self, url: str, endpoint_url: str | None = None) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        self._client = boto3.client("s3", endpoint_url=endpoint_url)
        self._pool = ThreadPoolExecutor(TRANSFERS, thread_name_prefix="exosphere-s3")

    def _name(self, run_id: str, key: str = "") -> str:
        return "/".join(part for part in (self.prefix, run_id, key) if part)

    async def _each(self, work: Any, items: Iterable[Any]) -> list[Any]:
        loop = asyncio.get_running_loop()
        return list(await asyncio.gather(*(loop.run_in_executor(self._pool, work, item) for item in items)))

    def _put(self, blob: Blob) -> None:
        self._client.put_object(Bucket=self.bucket, Key=self._name(blob.run_id, blob.key), Body=blob.data)

    async def put(self, conn: Any, blobs: Sequence[Blob]) -> None:
        await self._each(self._put, {(b.run_id, b.key): b for b in blobs}.values())

    def _get(self, key: PayloadKey) -> tuple[PayloadKey, str]:
        try:
            answer = self._client.get_object(Bucket=self.bucket, Key=self._name(*key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise PayloadMissing(f"Payload {key[1]} of run {key[0]} is missing from s3://{self.bucket}") from exc
            raise
        return key, answer["Body"].read().decode()

    async def get(self, conn: Any, keys: Iterable[PayloadKey]) -> dict[PayloadKey, str]:
        return dict(await self._each(self._get, set(keys)))

    async def delete_runs(self, conn: Any, run_ids: Sequence[str]) -> None:
        return None  # objects go once the rows are gone for good: `runs_deleted`

    def _delete_run(self, run_id: str) -> None:
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._name(run_id) + "/"
        )
        for page in pages:
            objects = [{"Key": item["Key"]} for item in page.get("Contents", []) if "Key" in item]
            if objects:
                self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})  # type: ignore[typeddict-item]

    def runs_deleted(self, run_ids: Iterable[str]) -> None:
        # Called on the event loop after the commit: the deletions run in the pool. Should the server
        # stop first, the sweep removes those objects later (their runs are gone).
        for run_id in run_ids:
            self._pool.submit(self._delete_run, run_id)

    def _runs_before(self, older_than_ms: int) -> set[str]:
        """Runs with an object under the prefix, all of whose objects were written before `older_than_ms`."""
        newest: dict[str, float] = {}
        start = self._name("", "") + "/" if self.prefix else ""
        for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start):
            for item in page.get("Contents", []):
                run_id = item["Key"][len(start) :].split("/", 1)[0]
                written = item["LastModified"].timestamp() * 1000
                newest[run_id] = max(written, newest.get(run_id, written))
        return {run_id for run_id, written in newest.items() if written < older_than_ms}

    async def sweep(self, conn: Any, older_than_ms: int) -> int:
        loop = asyncio.get_running_loop()
        candidates = sorted(await loop.run_in_executor(self._pool, self._runs_before, older_than_ms))
        if not candidates:
            return 0
        r = schema.runs
        existing = {row[0] for row in await conn.execute(sa.select(r.c.run_id).where(r.c.run_id.in_(candidates)))}
        gone = [run_id for run_id in candidates if run_id not in existing]
        await self._each(self._delete_run, gone)
        return len(gone)
