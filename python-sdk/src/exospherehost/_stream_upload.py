"""Sends what a node streams (`BaseNode.stream`) to the server: one attempt's chunks, in order, durably.

Chunks go in long requests: a request opens when the node streams while none is open, and its body
(one JSON string per line) is written as the node streams, each chunk on the wire at once, for up to
`REQUEST_SECONDS`; then the answer confirms every chunk of it as stored. So a node streaming fast
costs about one request a second, and a chunk reaches readers in milliseconds.

A request that fails is sent again from the first chunk it carried: the server keeps a chunk already
stored at its offset, so nothing is stored twice. `close` sends what is left and returns once the
server has it all (the runtime calls it before it reports the attempt's result), or once the lease is
lost, which ends the stream: the attempt is over.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable

from ._http import ApiClient, Backoff
from .contract import StreamAppendResponse
from .errors import ApiError, ConflictError, NotFoundError

logger = logging.getLogger("exospherehost.runtime")
REQUEST_SECONDS = 1.0  # how long one request stays open for more chunks
_END = object()


def _line(text: str) -> bytes:
    return json.dumps(text, ensure_ascii=False).encode() + b"\n"


class StreamUpload:
    """The stream of one attempt, on its way to ``path`` (``.../state/{state_id}/stream``).

    Example::

        upload = StreamUpload(api, "/namespace/ns/state/s1/stream", lease_id, give_up=lambda: False)
        await upload.append("Hello ")
        await upload.append("world")
        await upload.close()   # both chunks are stored on the server now
    """

    def __init__(self, api: ApiClient, path: str, lease_id: str, give_up: Callable[[], bool]) -> None:
        self._api = api
        self._path = path
        self._lease_id = lease_id
        self._give_up = give_up
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._confirmed = 0  # chunks the server has stored
        self._unconfirmed: list[str] = []  # sent (or being sent) in the open request, not yet confirmed
        self._ended = False  # `close` was called, or the lease is lost

    async def append(self, text: str) -> None:
        """Queue one chunk; it is sent at once when a request is open, else opens one."""
        if not isinstance(text, str):
            raise TypeError(f"stream() takes text (str), got {type(text).__name__}")
        if self._ended:
            raise RuntimeError("This attempt's stream is closed: stream() only works while execute() runs")
        if not text:
            return
        self._queue.put_nowait(text)
        if self._task is None:
            self._task = asyncio.create_task(self._send_all(), name=f"stream-upload-{self._path}")

    async def close(self) -> None:
        """Send what is left and wait until the server has stored it (or the lease is lost)."""
        self._ended = True
        if self._task is None:
            return
        self._queue.put_nowait(_END)
        await self._task

    def cancel(self) -> None:
        """Stop sending at once (the attempt was given up): chunks not confirmed yet are dropped."""
        self._ended = True
        if self._task is not None:
            self._task.cancel()

    async def _send_all(self) -> None:
        backoff = Backoff(initial=0.1, maximum=2.0)
        closing = False
        while True:
            if not self._unconfirmed:
                if closing:
                    return
                first = await self._queue.get()
                if first is _END:
                    return
                self._unconfirmed.append(str(first))
            state = {"closing": closing}
            try:
                answer = await self._api.request(
                    "POST",
                    self._path,
                    params={"lease_id": self._lease_id, "offset": self._confirmed},
                    content=self._body(state),
                    headers={"content-type": "application/x-ndjson"},
                    answer=StreamAppendResponse,
                    action=f"Streaming from {self._path}",
                )
            except (ConflictError, NotFoundError) as exc:
                logger.warning("Stream ended early: %s", exc.detail)  # the lease is lost: the attempt is over
                self._ended = True
                return
            except ApiError as exc:
                if not exc.retryable or self._give_up():
                    logger.error("Stream chunks %d and later not stored: %s", self._confirmed, exc)
                    return
                closing = closing or bool(state["closing"])
                await asyncio.sleep(backoff.next_delay())
                continue
            backoff.reset()
            closing = closing or bool(state["closing"])
            self._confirmed = answer.next_offset
            self._unconfirmed = []

    async def _body(self, state: dict[str, bool]) -> AsyncIterator[bytes]:
        """The request's lines: the unconfirmed chunks, then new ones as they come, for `REQUEST_SECONDS`."""
        yield b"".join(_line(text) for text in self._unconfirmed)
        if state["closing"]:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REQUEST_SECONDS
        while (remaining := deadline - loop.time()) > 0:
            try:
                item = await asyncio.wait_for(self._queue.get(), remaining)
            except TimeoutError:
                return
            items = [item]
            while not self._queue.empty():
                items.append(self._queue.get_nowait())
            texts = [str(i) for i in items if i is not _END]
            self._unconfirmed.extend(texts)
            if texts:
                yield b"".join(_line(text) for text in texts)
            if len(texts) < len(items):
                state["closing"] = True
                return
