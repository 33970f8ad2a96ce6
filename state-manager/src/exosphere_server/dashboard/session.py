"""Dashboard sessions: a login with the API key yields a signed token in an HttpOnly, SameSite=Strict cookie.

The cookie never holds the key itself. The token is `<issued ms>.<nonce>.<HMAC>` signed with a key
derived from the secrets key *and* the API key, so rotating the API key ends every session. Tokens
are stateless (any replica can check them) and expire after `SESSION_TTL_MS`; logging out deletes the
cookie.

Example::

    token = issue_token(settings)
    token_is_valid(settings, token)   # True for the next 12 hours
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import quote

from fastapi import HTTPException, Request, Response

from exosphere_server.config import Settings
from exosphere_server.storage.base import now_ms

COOKIE_NAME = "exosphere_session"
COOKIE_PATH = "/dashboard"
SESSION_TTL_MS = 12 * 3600 * 1000
# State-changing JSON calls must carry this header: a cross-site form cannot set it (CSRF, besides SameSite).
CSRF_HEADER = "x-exosphere-dashboard"


def _signing_key(settings: Settings) -> bytes:
    material = b"exosphere-dashboard-session\x00" + (settings.api_key or "").encode()
    return hmac.new(settings.secrets_key, material, hashlib.sha256).digest()


def _signature(settings: Settings, payload: str) -> str:
    return hmac.new(_signing_key(settings), payload.encode(), hashlib.sha256).hexdigest()


def issue_token(settings: Settings, issued_ms: int | None = None) -> str:
    payload = f"{issued_ms if issued_ms is not None else now_ms()}.{secrets.token_hex(16)}"
    return f"{payload}.{_signature(settings, payload)}"


def token_is_valid(settings: Settings, token: str | None) -> bool:
    if not token or token.count(".") != 2:
        return False
    issued, nonce, signature = token.split(".")
    expected = _signature(settings, f"{issued}.{nonce}")
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        return False
    return issued.isdigit() and 0 <= now_ms() - int(issued) < SESSION_TTL_MS


def key_matches(settings: Settings, given: str) -> bool:
    """The login check: the same constant-time comparison as the API's `x-api-key`."""
    if settings.api_key is None:
        return True
    return hmac.compare_digest(given.encode(), settings.api_key.encode())


def is_logged_in(request: Request) -> bool:
    settings: Settings = request.app.state.settings
    if settings.api_key is None:
        return True  # like the API: a loopback server without a key is open
    return token_is_valid(settings, request.cookies.get(COOKIE_NAME))


def set_session_cookie(request: Request, response: Response) -> None:
    response.set_cookie(
        COOKIE_NAME,
        issue_token(request.app.state.settings),
        max_age=SESSION_TTL_MS // 1000,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE_NAME, path=COOKIE_PATH, httponly=True, samesite="strict")


async def require_page_session(request: Request) -> None:
    """Pages: without a session, send the browser to the login form (and back here afterwards)."""
    if not is_logged_in(request):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise HTTPException(status_code=303, headers={"Location": f"/dashboard/login?next={quote(target)}"})


async def require_api_session(request: Request) -> None:
    """`/dashboard/api/...`: a JSON 401 without a session; writes also need the CSRF header."""
    if not is_logged_in(request):
        raise HTTPException(status_code=401, detail="Not logged in to the dashboard")
    if request.method not in ("GET", "HEAD") and request.headers.get(CSRF_HEADER) != "1":
        raise HTTPException(status_code=403, detail=f"Missing the {CSRF_HEADER} header")


def safe_next(target: str | None) -> str:
    """Only redirect within the dashboard after login (no open redirect)."""
    if target and target.startswith("/dashboard") and not target.startswith("//") and "\\" not in target:
        return target
    return "/dashboard/"
