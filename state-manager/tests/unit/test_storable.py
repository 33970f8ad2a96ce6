"""The byte check that spares the walk over a body: it may only clear what the walk would clear."""

from __future__ import annotations

import json
from typing import Any

import pytest
from exosphere_server.engine.storable import raw_json_surely_storable, unstorable_at

REFUSED: list[Any] = [
    {"x": "a\x00b"},
    {"k\x00": "v"},
    {"x": "\ud800"},
    {"\udc00": "v"},
    {"n": float("nan")},
    [1, {"n": float("inf")}],
    {"n": float("-inf")},
]


@pytest.mark.parametrize("value", REFUSED, ids=repr)
def test_a_body_the_walk_refuses_is_never_cleared_by_its_bytes(value: Any) -> None:
    assert unstorable_at(value) is not None
    for ensure_ascii in (True, False):
        raw = json.dumps(value, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")
        assert not raw_json_surely_storable(raw), raw


def test_plain_bodies_are_cleared_without_a_walk() -> None:
    outputs = {"outputs": [{"x": str(i), "text": "naïve café ✓"} for i in range(1000)]}
    assert raw_json_surely_storable(json.dumps(outputs, ensure_ascii=False).encode())


@pytest.mark.parametrize(
    "raw",
    [
        b'{"x": "\\u00e9"}',  # an escape: the walk decides (and clears it)
        b'{"x": "NaN is a word"}',
        b'{"x": "\xff"}',  # not UTF-8
        '{"x": "1"}'.encode("utf-16"),  # JSON in UTF-16: NUL bytes
    ],
)
def test_anything_unusual_in_the_bytes_is_left_to_the_walk(raw: bytes) -> None:
    assert not raw_json_surely_storable(raw)
