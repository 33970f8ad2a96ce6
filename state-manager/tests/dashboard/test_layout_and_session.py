"""Without a browser: the template drawing and the session token."""

from __future__ import annotations

import base64

from exosphere_server.clock import now_ms
from exosphere_server.config import Settings
from exosphere_server.dashboard import session
from exosphere_server.dashboard.layout import NODE_HEIGHT, NODE_WIDTH, layout_template


def template_node(identifier: str, *next_nodes: str, unites: str | None = None) -> dict[str, object]:
    return {
        "identifier": identifier,
        "node_name": identifier.upper(),
        "namespace": "ns",
        "next_nodes": list(next_nodes),
        "unites": {"identifier": unites, "strategy": "ALL_SUCCESS"} if unites else None,
    }


def test_nodes_are_layered_by_longest_path_and_never_overlap() -> None:
    drawn = layout_template(
        [
            template_node("a", "b", "c", "d"),
            template_node("b", "d"),
            template_node("c"),
            template_node("d", "e"),
            template_node("e", unites="a"),
        ]
    )
    depth = {n.identifier: n.depth for n in drawn.nodes}
    assert depth == {"a": 0, "b": 1, "c": 1, "d": 2, "e": 3}
    boxes = [(n.x, n.y) for n in drawn.nodes]
    for i, (x1, y1) in enumerate(boxes):
        for x2, y2 in boxes[i + 1 :]:
            assert abs(x1 - x2) >= NODE_WIDTH or abs(y1 - y2) >= NODE_HEIGHT
    assert all(n.x + NODE_WIDTH <= drawn.width and n.y + NODE_HEIGHT <= drawn.height for n in drawn.nodes)
    kinds = {(e.source, e.target): e.kind for e in drawn.edges}
    assert kinds[("a", "d")] == "next" and kinds[("a", "e")] == "unites" and len(kinds) == 6


def settings(api_key: str | None = "the-key") -> Settings:
    return Settings(database_url="sqlite:///x", api_key=api_key, secrets_key=base64.b64decode(b"A" * 44))


def test_a_session_token_is_signed_expires_and_ends_with_the_api_key() -> None:
    token = session.issue_token(settings(), "key_0123456789abcdef")
    verified = session.verified_token(settings(), token)
    assert verified is not None and verified.key_id == "key_0123456789abcdef"
    assert "the-key" not in token
    issued, nonce, key_id, signature = token.split(".")
    assert session.verified_token(settings(), f"{int(issued) + 1}.{nonce}.{key_id}.{signature}") is None  # tampered
    assert session.verified_token(settings(), f"{issued}.{nonce}.root.{signature}") is None  # another key's session
    assert session.verified_token(settings("rotated-key"), token) is None  # a new API key ends old sessions
    stale = session.issue_token(settings(), "root", issued_ms=now_ms() - session.SESSION_TTL_MS - 1)
    assert session.verified_token(settings(), stale) is None
    assert session.verified_token(settings(), None) is None and session.verified_token(settings(), "garbage") is None


def test_login_only_redirects_inside_the_dashboard() -> None:
    assert session.safe_next("/dashboard/ns/a/runs?page=2") == "/dashboard/ns/a/runs?page=2"
    for target in ("//evil.example/dashboard", "https://evil.example/", "/v0/namespaces", "/dashboard\\..", None):
        assert session.safe_next(target) == "/dashboard/"
