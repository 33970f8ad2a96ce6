"""Large payloads: input and output values above a threshold live apart from the state rows.

A state's `inputs`, `outputs` and `carried` hold strings. A string longer than `PayloadSettings.inline_bytes`
(UTF-8) is written to a `PayloadStore` and its place in the row holds a reference, a JSON object::

    {"payload": "<sha256 of the UTF-8 text>", "bytes": 10485760}

A stored value is otherwise always a string, so an object is unambiguously a reference. Payloads are
keyed by run and content: the output a node returns, the child input a placeholder copies it into and
the value carried further down are one stored payload, and a run's payloads go with the run when
retention deletes it. Placeholders copy references without reading them; claims, listings and the
dashboard read only the rows. A payload is loaded where its text is needed: the claim answer that
hands the inputs to a runtime, a placeholder that embeds it in longer text, and a reader who asks.

The store writes a payload before the transaction that references it commits (the row's transaction
calls `put` first), so a crash never leaves a committed state referencing a missing payload; a crash
before the commit leaves at most an unreferenced payload, removed with its run, or by the hourly
sweep (`PayloadStore.sweep`) when that run never committed.

Example::

    limits = PayloadSettings(inline_bytes=4)
    row, blobs = split_values("run-1", {"small": "ab", "big": "abcdef"}, limits)
    row["big"]  # {'payload': 'bef57ec7f53a6d40beb640a780a639c83bc29ac8a9816f1fc6c5c6dcd93c4721', 'bytes': 6}
    blobs[0].data  # b'abcdef'
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import os
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from exosphere_server.storage import schema

MIB = 1024 * 1024
DEFAULT_INLINE_BYTES = 64 * 1024
DEFAULT_MAX_BYTES = 50 * MIB
# Values whose UTF-8 length cannot pass the threshold are never encoded to measure: a character is at
# most 4 bytes, so a string of at most inline_bytes // 4 characters stays inline without a look.
_MAX_UTF8_BYTES_PER_CHAR = 4
# Splitting this many characters (hashing them) goes to a worker thread, off the event loop.
HASH_OFF_LOOP_CHARS = 256 * 1024


@dataclass(frozen=True)
class PayloadSettings:
    """`inline_bytes`: longer values are stored apart; `max_bytes`: longer values are refused (413);
    `store_url`: `s3://BUCKET/PREFIX` for an S3-compatible store (at `s3_endpoint_url`, if not AWS),
    empty for the database's own (files beside SQLite, the `payloads` table on PostgreSQL)."""

    inline_bytes: int = DEFAULT_INLINE_BYTES
    max_bytes: int = DEFAULT_MAX_BYTES
    store_url: str = ""
    s3_endpoint_url: str | None = None


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, prefix without slashes at its ends) of ``s3://BUCKET[/PREFIX]``; ValueError otherwise.

    >>> parse_s3_url("s3://payloads/exosphere/prod/")
    ('payloads', 'exosphere/prod')
    """
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"expected s3://BUCKET or s3://BUCKET/PREFIX, got {url!r}")
    return parts.netloc, parts.path.strip("/")


class PayloadTooLarge(Exception):
    """A value is longer than `PayloadSettings.max_bytes`; the API answers 413 with this text."""

    def __init__(self, where: str, size: int, limit: int) -> None:
        super().__init__(
            f"Payload too large: {where} is {size} bytes, the limit is {limit} bytes "
            "(EXOSPHERE_MAX_PAYLOAD_BYTES on the server); pass a reference to the data instead"
        )


@dataclass(frozen=True)
class Blob:
    run_id: str
    key: str  # sha256 hex of `data`
    data: bytes


PayloadKey = tuple[str, str]  # (run id, sha256 hex)


def is_ref(value: object) -> bool:
    """Whether a stored input/output value is a reference to a payload kept apart."""
    return isinstance(value, dict)


def ref_key(value: Mapping[str, Any]) -> str:
    return str(value["payload"])


def ref_bytes(value: Mapping[str, Any]) -> int:
    return int(value["bytes"])


def _measure(value: str, limits: PayloadSettings, where: str) -> bytes | None:
    """The UTF-8 bytes of a value to store apart, or None when it stays inline."""
    if len(value) * _MAX_UTF8_BYTES_PER_CHAR <= limits.inline_bytes:
        return None
    data = value.encode()
    if len(data) > limits.max_bytes:
        raise PayloadTooLarge(where, len(data), limits.max_bytes)
    return data if len(data) > limits.inline_bytes else None


# id of a large string -> (the string, its reference, its UTF-8 bytes): the same text met again in one
# transaction (an output, the child input a placeholder copies it into, the value carried on) is
# encoded and hashed once. The string is kept, so that its id cannot be reused meanwhile.
Seen = dict[int, tuple[str, dict[str, Any], bytes]]


def split_values(
    run_id: str, values: Mapping[str, Any], limits: PayloadSettings, where: str = "a value", seen: Seen | None = None
) -> tuple[dict[str, Any], list[Blob]]:
    """`values` as a row stores them (large strings replaced by references) and the payloads to write;
    `values` itself (not a copy) when nothing is kept apart."""
    row: dict[str, Any] = {}
    blobs: list[Blob] = []
    for name, value in values.items():
        known = seen.get(id(value)) if seen is not None and isinstance(value, str) else None
        if known is not None and known[0] is value:
            row[name] = known[1]
            blobs.append(Blob(run_id, ref_key(known[1]), known[2]))
            continue
        data = _measure(value, limits, f"{where} {name!r}") if isinstance(value, str) else None
        if data is None:
            row[name] = value
            continue
        key = hashlib.sha256(data).hexdigest()
        row[name] = {"payload": key, "bytes": len(data)}
        blobs.append(Blob(run_id, key, data))
        if seen is not None:
            seen[id(value)] = (value, row[name], data)
    if not blobs and isinstance(values, dict):
        return values, blobs  # nothing kept apart: the same object, so that what shares it is encoded once
    return row, blobs


def split_carried(
    run_id: str, carried: Mapping[str, Mapping[str, Any]], limits: PayloadSettings, seen: Seen | None = None
) -> tuple[dict[str, dict[str, Any]], list[Blob]]:
    """`split_values` for each ancestor's carried outputs."""
    row: dict[str, dict[str, Any]] = {}
    blobs: list[Blob] = []
    for ident, values in carried.items():
        row[ident], found = split_values(run_id, values, limits, f"carried output of {ident}", seen)
        blobs.extend(found)
    if not blobs and isinstance(carried, dict):
        return carried, blobs  # as `split_values`: the same object when nothing is kept apart
    return row, blobs


def large_chars(values: Iterable[Mapping[str, Any]]) -> int:
    """How many characters the long strings among these values hold: what splitting them would hash."""
    return sum(len(v) for m in values for v in m.values() if isinstance(v, str) and len(v) > 1024)


def same_values(stored: Mapping[str, Any], given: Mapping[str, str]) -> bool:
    """Whether `given` (as a client sends it) is what `stored` (a row's values, with references) holds."""
    if stored.keys() != given.keys():
        return False
    for name, value in stored.items():
        if is_ref(value):
            data = given[name].encode()
            if len(data) != ref_bytes(value) or hashlib.sha256(data).hexdigest() != ref_key(value):
                return False
        elif value != given[name]:
            return False
    return True


def refs_in(run_id: str, values: Mapping[str, Any]) -> set[PayloadKey]:
    return {(run_id, ref_key(v)) for v in values.values() if is_ref(v)}


def resolved(values: Mapping[str, Any], texts: Mapping[str, str]) -> dict[str, Any]:
    """`values` with each reference replaced by its text from `texts` (sha256 -> text)."""
    return {name: texts[ref_key(v)] if is_ref(v) else v for name, v in values.items()}


class PayloadMissing(Exception):
    """A referenced payload is not in the store: it was deleted by hand, or its run by retention."""


class PayloadStore(abc.ABC):
    """Where payloads live. `conn` is the storage connection of the calling transaction.

    Three implement it: `FilePayloadStore` (SQLite's default), `TablePayloadStore` (PostgreSQL's) and
    `s3_payloads.S3PayloadStore` (either database, with `EXOSPHERE_PAYLOAD_STORE=s3://...`).
    """

    @abc.abstractmethod
    async def put(self, conn: Any, blobs: Sequence[Blob]) -> None:
        """Store durably before the transaction that references them commits; an existing key is kept."""

    @abc.abstractmethod
    async def get(self, conn: Any, keys: Iterable[PayloadKey]) -> dict[PayloadKey, str]:
        """The text of each key; raises `PayloadMissing` for one not stored."""

    @abc.abstractmethod
    async def delete_runs(self, conn: Any, run_ids: Sequence[str]) -> None:
        """Inside the transaction that deletes these runs (retention)."""

    def runs_deleted(self, run_ids: Iterable[str]) -> None:
        """After that transaction committed."""
        return None

    async def sweep(self, conn: Any, older_than_ms: int) -> int:
        """Remove the payloads, written before `older_than_ms`, of runs that do not exist: a transaction
        that wrote them and crashed before its commit, or a crash between a deletion and `runs_deleted`.
        How many runs' payloads went."""
        return 0  # a store written inside the transaction never keeps payloads of a run it lacks


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FilePayloadStore(PayloadStore):
    """Files beside the SQLite database: `<root>/<run id>/<sha256>`, owner-only.

    A payload is written to a temporary name, fsynced, renamed and its directory fsynced, all before
    the transaction referencing it commits: after a crash (kill -9, power loss) a committed reference
    always finds its whole file. Temporary files of a crash mid-write are swept with their run.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, run_id: str, key: str) -> Path:
        # Run ids and keys are made by the server (uuid4, sha256 hex): never a path of a client's.
        return self.root / run_id / key

    def _write(self, blobs: Sequence[Blob]) -> None:
        for blob in {(b.run_id, b.key): b for b in blobs}.values():
            target = self._path(blob.run_id, blob.key)
            if target.exists():
                continue  # content-addressed: the same text, already durable
            new_run = not target.parent.exists()
            if new_run:
                self.root.mkdir(mode=0o700, exist_ok=True)  # owner-only, like the database beside it
                target.parent.mkdir(mode=0o700, exist_ok=True)
            temporary = target.with_name(f".{blob.key}.{os.getpid()}.{time.monotonic_ns()}.tmp")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(blob.data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, target)
            _fsync_dir(target.parent)
            if new_run:
                _fsync_dir(self.root)  # the run's directory entry, durable too

    async def put(self, conn: Any, blobs: Sequence[Blob]) -> None:
        if blobs:
            await asyncio.to_thread(self._write, blobs)

    def _read(self, keys: Iterable[PayloadKey]) -> dict[PayloadKey, str]:
        texts = {}
        for run_id, key in keys:
            try:
                texts[(run_id, key)] = self._path(run_id, key).read_bytes().decode()
            except FileNotFoundError as exc:
                raise PayloadMissing(f"Payload {key} of run {run_id} is missing from {self.root}") from exc
        return texts

    async def get(self, conn: Any, keys: Iterable[PayloadKey]) -> dict[PayloadKey, str]:
        wanted = set(keys)
        return await asyncio.to_thread(self._read, wanted) if wanted else {}

    async def delete_runs(self, conn: Any, run_ids: Sequence[str]) -> None:
        return None  # files go once the rows are gone for good: `runs_deleted`

    def runs_deleted(self, run_ids: Iterable[str]) -> None:
        for run_id in run_ids:
            shutil.rmtree(self.root / run_id, ignore_errors=True)

    def _dirs_before(self, older_than_ms: int) -> list[str]:
        if not self.root.exists():
            return []
        return [p.name for p in self.root.iterdir() if p.is_dir() and p.stat().st_mtime * 1000 < older_than_ms]

    async def sweep(self, conn: Any, older_than_ms: int) -> int:
        # Only directories untouched for a while: a transaction writing a new run's first payload has
        # not committed its run yet, and its directory is recent.
        candidates = await asyncio.to_thread(self._dirs_before, older_than_ms)
        if not candidates:
            return 0
        r = schema.runs
        existing = {row[0] for row in await conn.execute(sa.select(r.c.run_id).where(r.c.run_id.in_(candidates)))}
        gone = [run_id for run_id in candidates if run_id not in existing]
        await asyncio.to_thread(self.runs_deleted, gone)
        return len(gone)


class TablePayloadStore(PayloadStore):
    """The `payloads` table (PostgreSQL): written in the transaction that references it."""

    async def put(self, conn: Any, blobs: Sequence[Blob]) -> None:
        if not blobs:
            return
        rows = [
            {"run_id": b.run_id, "key": b.key, "data": b.data} for b in {(b.run_id, b.key): b for b in blobs}.values()
        ]
        await conn.execute(pg_insert(schema.payloads).on_conflict_do_nothing(), rows)

    async def get(self, conn: Any, keys: Iterable[PayloadKey]) -> dict[PayloadKey, str]:
        wanted = set(keys)
        if not wanted:
            return {}
        p = schema.payloads
        query = sa.select(p.c.run_id, p.c.key, p.c.data).where(sa.tuple_(p.c.run_id, p.c.key).in_(list(wanted)))
        found = {(run_id, key): bytes(data) for run_id, key, data in await conn.execute(query)}
        missing = wanted - found.keys()
        if missing:
            run_id, key = sorted(missing)[0]
            raise PayloadMissing(f"Payload {key} of run {run_id} is missing from the payloads table")
        return await asyncio.to_thread(lambda: {k: v.decode() for k, v in found.items()})

    async def delete_runs(self, conn: Any, run_ids: Sequence[str]) -> None:
        p = schema.payloads
        await conn.execute(sa.delete(p).where(p.c.run_id.in_(list(run_ids))))
