"""A simulated model provider for tests and benchmarks: it keeps its own requests- and tokens-per-minute
budgets and answers 429 with `Retry-After` beyond them, as the large providers do.

Its budgets are token buckets that refill continuously and hold `burst_seconds` of the rate (OpenAI,
for one, enforces a per-minute limit over short windows like this). `POST /v1/call` with
`{"tokens": N}` spends one request and N tokens: `200 {"ok": true}` when both have room, else `429`
with `Retry-After` (whole seconds, rounded up) and `x-ratelimit-reset-requests` /
`x-ratelimit-reset-tokens` (`"120ms"`: exactly when there will be room). `GET /v1/stats` returns
what `stats()` does, for processes that only know the URL.

Example::

    with SimulatedProvider(requests_per_minute=600, tokens_per_minute=60_000) as provider:
        httpx.post(provider.url + "/v1/call", json={"tokens": 100})   # 200 until the budget runs out
        provider.stats()   # ProviderStats(accepted=1, rejected=0, first_at=..., last_at=...)
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class ProviderStats:
    accepted: int
    rejected: int
    first_at: float | None  # time.time() of the first accepted call
    last_at: float | None  # and of the last

    @property
    def accepted_per_minute(self) -> float | None:
        """The rate calls were accepted at, from the first to the last (None below two calls)."""
        if self.first_at is None or self.last_at is None or self.last_at <= self.first_at:
            return None
        return (self.accepted - 1) * 60 / (self.last_at - self.first_at)


class _Bucket:
    def __init__(self, per_minute: int, burst_seconds: float, now: float) -> None:
        self.rate = per_minute / 60
        self.capacity = max(1.0, self.rate * burst_seconds)
        self.level = self.capacity
        self.at = now

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.at) * self.rate)
        self.at = now

    def wait_for(self, amount: float) -> float:
        """Seconds until `amount` is there (0: now); an amount above the burst waits for a full bucket."""
        missing = min(amount, self.capacity) - self.level
        return 0.0 if missing <= 0 else missing / self.rate


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # many runtimes with many workers connect at once: refuse none of them


class SimulatedProvider:
    def __init__(self, requests_per_minute: int, tokens_per_minute: int, burst_seconds: float = 2.0) -> None:
        now = time.monotonic()
        self._requests = _Bucket(requests_per_minute, burst_seconds, now)
        self._tokens = _Bucket(tokens_per_minute, burst_seconds, now)
        self._lock = threading.Lock()
        self._accepted = 0
        self._rejected = 0
        self._first_at: float | None = None
        self._last_at: float | None = None
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: a runtime's pooled connection stays open

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))) or b"{}")
                if self.path != "/v1/call":
                    self._answer(404, {"error": "not found"})
                    return
                wait = provider._spend(int(body.get("tokens", 0)))
                if wait is None:
                    self._answer(200, {"ok": True})
                else:
                    requests_wait, tokens_wait = wait
                    headers = {
                        "Retry-After": str(max(1, math.ceil(max(wait)))),
                        "x-ratelimit-reset-requests": f"{math.ceil(requests_wait * 1000)}ms",
                        "x-ratelimit-reset-tokens": f"{math.ceil(tokens_wait * 1000)}ms",
                    }
                    self._answer(429, {"error": "rate limited"}, headers)

            def do_GET(self) -> None:
                if self.path != "/v1/stats":
                    self._answer(404, {"error": "not found"})
                    return
                self._answer(200, asdict(provider.stats()))

            def _answer(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in {"content-type": "application/json", **(headers or {})}.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: a test's output is its own."""

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _spend(self, tokens: int) -> tuple[float, float] | None:
        """None when the call fits (and is counted); else the seconds until requests and tokens have room."""
        with self._lock:
            now = time.monotonic()
            self._requests.refill(now)
            self._tokens.refill(now)
            waits = (self._requests.wait_for(1), self._tokens.wait_for(tokens))
            if max(waits) > 0:
                self._rejected += 1
                return waits
            self._requests.level -= 1
            self._tokens.level -= tokens
            self._accepted += 1
            at = time.time()
            self._first_at = at if self._first_at is None else self._first_at
            self._last_at = at
            return None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stats(self) -> ProviderStats:
        with self._lock:
            return ProviderStats(self._accepted, self._rejected, self._first_at, self._last_at)

    def __enter__(self) -> SimulatedProvider:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
