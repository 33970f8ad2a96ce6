"""Dashboard sessions: a login with an API key yields a signed token in an HttpOnly, SameSite=Strict cookie.

The cookie never holds the key itself. The token is `<issued ms>.<nonce>.<key id>.<HMAC>` signed with a
key derived from the secrets key *and* `STATE_MANAGER_SECRET`, so rotating that key ends every session.
Any key but a `runtime` one logs in; the session then has that key's role and namespace
(`api/access.py`), read from storage on every request, so revoking the key ends its sessions at once.
Tokens expire after `SESSION_TTL_MS`; logging out deletes the cookie and revokes the token on every
replica (`engine/sessions.py`: its nonce is recorded in storage until it would have expired).

Example::

    token = issue_token(settings, "key_0123456789abcdef")
    verified_token(settings, token)   # SessionToken(token_id=<nonce>, key_id='key_0123...', expires_at=...)
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import quote

from fastapi import HTTPException, Request, Response

from exosphere_server.api.access import RULES, authorize
from exosphere_server.api.auth import principal_for_key
from exosphere_server.api.deps import engine_context
from exosphere_server.api.lockout import refuse_if_locked_out
from exosphere_server.clock import now_ms
from exosphere_server.config import Settings
from exosphere_server.engine.keys import LOCAL, ROOT, Principal, key_by_id, principal_of
from exosphere_server.engine.sessions import revoke_session, session_is_revoked

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


def issue_token(settings: Settings, key_id: str, issued_ms: int | None = None) -> str:
    payload = f"{issued_ms if issued_ms is not None else now_ms()}.{secrets.token_hex(16)}.{key_id}"
    return f"{payload}.{_signature(settings, payload)}"


@dataclass(frozen=True)
class SessionToken:
    token_id: str  # the random nonce: what a logout revokes
    key_id: str  # the key that logged in: `root` for STATE_MANAGER_SECRET
    expires_at: int


def verified_token(settings: Settings, token: str | None) -> SessionToken | None:
    """The token's identity if it is signed by this installation and not expired (revocation aside)."""
    if not token or token.count(".") != 3:
        return None
    issued, nonce, key_id, signature = token.split(".")
    expected = _signature(settings, f"{issued}.{nonce}.{key_id}")
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        return None
    if not (issued.isdigit() and 0 <= now_ms() - int(issued) < SESSION_TTL_MS):
        return None
    return SessionToken(token_id=nonce, key_id=key_id, expires_at=int(issued) + SESSION_TTL_MS)


async def login_principal(request: Request, given: str) -> Principal | None:
    """Who logs in with `given`: the same keys as the API's `x-api-key`, runtime keys excepted (they
    may not read). None: refused."""
    principal = await principal_for_key(request, given)
    return principal if principal is not None and principal.role != "runtime" else None


async def session_principal(request: Request) -> Principal | None:
    """Who this browser is logged in as, or None (no session, expired, logged out, key revoked)."""
    settings: Settings = request.app.state.settings
    if settings.api_key is None:
        return LOCAL  # like the API: a loopback server without a key is open
    token = verified_token(settings, request.cookies.get(COOKIE_NAME))
    if token is None or await session_is_revoked(engine_context(request), token.token_id):
        return None
    if token.key_id == ROOT.key_id:
        return ROOT
    record = await key_by_id(engine_context(request), token.key_id)
    if record is None or record.revoked_at is not None or record.role == "runtime":
        return None
    return principal_of(record)


async def is_logged_in(request: Request) -> bool:
    return await session_principal(request) is not None


async def end_session(request: Request) -> None:
    """Logout: the cookie's token stops working on every replica, even if a copy of it is replayed."""
    token = verified_token(request.app.state.settings, request.cookies.get(COOKIE_NAME))
    if token is not None:
        await revoke_session(engine_context(request), token.token_id, token.expires_at)


def set_session_cookie(request: Request, response: Response, principal: Principal) -> None:
    response.set_cookie(
        COOKIE_NAME,
        issue_token(request.app.state.settings, principal.key_id),
        max_age=SESSION_TTL_MS // 1000,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE_NAME, path=COOKIE_PATH, httponly=True, samesite="strict")


async def require_page_session(request: Request) -> None:
    """Pages: without a session, send the browser to the login form (and back here afterwards); a page
    the session's role may not see is a 403 (`api/access.py`)."""
    refuse_if_locked_out(request)
    principal = await session_principal(request)
    if principal is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise HTTPException(status_code=303, headers={"Location": f"/dashboard/login?next={quote(target)}"})
    authorize(request, principal)


async def require_api_session(request: Request) -> None:
    """`/dashboard/api/...`: a JSON 401 without a session; writes also need the CSRF header; a 403 for
    a call the session's role may not make."""
    refuse_if_locked_out(request)
    principal = await session_principal(request)
    if principal is None:
        raise HTTPException(status_code=401, detail="Not logged in to the dashboard")
    if request.method not in ("GET", "HEAD") and request.headers.get(CSRF_HEADER) != "1":
        raise HTTPException(status_code=403, detail=f"Missing the {CSRF_HEADER} header")
    authorize(request, principal)


def session_may(request: Request, route: str) -> bool:
    """Whether the logged-in visitor's role may call `route` (a key of `api/access.RULES`), so that a
    page shows only the buttons and links its visitor may use. The namespace is the page's own."""
    principal: Principal = request.state.principal
    return principal.role in RULES[route].roles


def safe_next(target: str | None) -> str:
    """Only redirect within the dashboard after login (no open redirect)."""
    if target and target.startswith("/dashboard") and not target.startswith("//") and "\\" not in target:
        return target
    return "/dashboard/"
