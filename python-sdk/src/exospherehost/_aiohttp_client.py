"""The runtime's transport: aiohttp, the cheapest well-kept asyncio HTTP client measured.

It carries the runtime's hot path (claims, results, heartbeats, streamed chunks) at 3 to 10 times less
client CPU per request than httpx (``bench/client_bench.py``; why StateManager keeps httpx: see
:mod:`exospherehost._http`). It behaves as :class:`~exospherehost._httpx_client.HttpxClient` does:

* the same timeout bounds connecting, waiting for a pooled connection, and each read;
* ``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``ALL_PROXY`` / ``NO_PROXY`` are honoured, read once when the
  client opens as httpx does (aiohttp's own ``trust_env`` reads them, and ``~/.netrc``, on every
  request: a third of the client's CPU per request), and HTTPS servers are verified against the same
  certificates as httpx's (``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` when set, else certifi's bundle),
  with the context httpx itself builds;
* a failure before the connection was made is a request never sent; any later one may have been applied.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

import aiohttp
import httpx
from yarl import URL

from ._http import DEFAULT_TIMEOUT_SECONDS, Answer, ApiClient, encode_json, server_unavailable

# Failures that happen before a request is on the wire: connecting (refused, DNS, TLS handshake,
# proxy), waiting for a pooled connection, or a URL that cannot be sent at all.
_NEVER_SENT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError, aiohttp.InvalidURL)


class AiohttpClient(ApiClient):
    """An :class:`ApiClient` on aiohttp. The session is opened on first use, in the running event loop.

    Example::

        async with AiohttpClient("http://localhost:8000/v0", key="secret") as api:
            answer = await api.request("POST", "/namespace/demo/states/enqueue", json={...})
    """

    def __init__(
        self,
        base_url: str,
        key: str | None,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        max_connections: int = 16,
    ) -> None:
        super().__init__(base_url, key, timeout=timeout)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        self._proxy = _proxy_from_environment(self.base_url)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            tls: ssl.SSLContext | bool = True
            if self.base_url.startswith("https:"):
                tls = httpx.create_ssl_context()  # the trust StateManager's httpx client has
            connector = aiohttp.TCPConnector(limit=self._max_connections, ssl=tls)
            self._session = aiohttp.ClientSession(
                connector=connector, headers=self.headers, timeout=self._timeout(self.timeout), **self._proxy
            )
        return self._session

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        # One object per distinct value: the runtime sends a few (claims, heartbeats) over and over.
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            timeout = self._timeouts[seconds] = aiohttp.ClientTimeout(
                total=None, connect=seconds, sock_connect=seconds, sock_read=seconds
            )
        return timeout

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any,
        params: dict[str, Any] | None,
        timeout: float | None,
        action: str,
        content: AsyncIterator[bytes] | None,
        headers: dict[str, str] | None,
    ) -> Answer:
        data: bytes | AsyncIterator[bytes] | None = content
        if content is None and json is not None:
            data = encode_json(json)
            headers = {"content-type": "application/json", **(headers or {})}
        extra: dict[str, Any] = {} if timeout is None else {"timeout": self._timeout(timeout)}
        session = self._open()
        try:
            # encoded=True: the callers quote every path segment themselves (a state id may hold a "/").
            async with session.request(
                method,
                URL(self.url(path), encoded=True),
                data=data,
                params=params,
                headers=headers,
                **extra,
            ) as response:
                body = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            sent = not isinstance(exc, _NEVER_SENT)
            raise server_unavailable(exc, action, sent=sent, timed_out=isinstance(exc, TimeoutError)) from exc
        return Answer(response.status, body, response.reason or "", response.charset or "utf-8")


def _proxy_from_environment(base_url: str) -> dict[str, Any]:
    """The session's ``proxy`` and ``proxy_auth`` for ``base_url``, by the environment's ``*_PROXY``
    variables, as httpx reads them (``NO_PROXY`` names the hosts reached directly); empty for none."""
    parts = urlsplit(base_url)
    proxies = getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or (parts.hostname and proxy_bypass(parts.hostname)):
        return {}
    url = URL(proxy if "://" in proxy else f"http://{proxy}")
    auth = aiohttp.BasicAuth.from_url(url)
    return {"proxy": url.with_user(None), "proxy_auth": auth} if auth else {"proxy": url}
