"""Delivering `executed` results together: results that finish while a call is in flight share the next call.

One HTTP request and one server transaction then carry many results, which is what lets a busy
runtime go past a few hundred states per second. A server without the batch endpoint (an older
Exosphere or the original ExosphereHost) answers 404/405 once, and the runtime falls back to one call
per result.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._http import ApiClient
from .contract import ClaimedState, ExecutedItemRefused, ExecutedManyResponse
from .errors import ApiError, AuthenticationError, UnexpectedAnswerError, error_for_status

logger = logging.getLogger("exospherehost")

MAX_BATCH = 200


class BatchUnsupportedError(Exception):
    """The server has no batch endpoint; deliver this result on its own."""


@dataclass(frozen=True)
class EagerClaims:
    """Where a batch gets the ``claim`` it sends along (eager dispatch) and hands the claimed states.

    ``reserve()`` gives the ``claim`` field of the next call, its slots reserved, or None;
    ``settle(claim, states)`` gives the reservation back and takes the states the answer carried.
    """

    reserve: Callable[[], dict[str, Any] | None]
    settle: Callable[[dict[str, Any] | None, list[ClaimedState]], None]


class ResultBatcher:
    def __init__(self, api: ApiClient, path: str, claims: EagerClaims | None = None) -> None:
        self._api = api
        self._path = path
        self._claims = claims
        self._pending: list[tuple[dict[str, Any], str, asyncio.Future[None]]] = []
        self._sender: asyncio.Task[None] | None = None
        self.supported = True

    async def deliver(self, item: dict[str, Any], action: str) -> None:
        """Deliver one result; raises the item's own ApiError (named by `action`), or BatchUnsupportedError."""
        if not self.supported:
            raise BatchUnsupportedError
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, action, future))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_all())
        await future

    async def _send_all(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            claim = self._claims.reserve() if self._claims is not None else None
            body: dict[str, Any] = {"results": [item for item, _, _ in batch]}
            if claim is not None:
                body["claim"] = claim
            claimed: list[ClaimedState] = []
            try:
                answer = await self._api.request_with_retry(
                    "POST",
                    self._path,
                    answer=ExecutedManyResponse,
                    json=body,
                    action=f"Reporting {len(batch)} result(s)",
                )
                claimed = answer.states
            except UnexpectedAnswerError as exc:
                # The results may well have been applied; sent again one by one, each gets its own
                # answer (a repeated result is answered as the first time).
                logger.warning("%s; reporting each result on its own", exc)
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(BatchUnsupportedError())
                continue
            except ApiError as exc:
                if exc.status_code in (404, 405):
                    self.supported = False
                # A refusal of the whole call (say a 422 for one bad item) must not fail the other
                # results in it: each is then sent on its own and gets its own answer.
                alone = not isinstance(exc, AuthenticationError)
                for _, action, future in batch:
                    if not future.done():
                        refusal = error_for_status(exc.status_code or 0, exc.detail, action)
                        future.set_exception(BatchUnsupportedError() if alone else refusal)
                continue
            except Exception as exc:
                # Never leave a result waiting for an answer that will not come (the runtime would hang).
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            finally:
                # States claimed by an answer that never arrived are not lost: their leases expire.
                if self._claims is not None:
                    self._claims.settle(claim, claimed)
            results = answer.results
            for (_, action, future), result in zip(batch, results, strict=False):
                if future.done():
                    continue
                if isinstance(result, ExecutedItemRefused):
                    future.set_exception(error_for_status(result.status_code, result.detail, action))
                else:
                    future.set_result(None)
            for _, _, future in batch[len(results) :]:
                if not future.done():
                    future.set_exception(BatchUnsupportedError())
