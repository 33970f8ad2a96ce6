"""Large values encoded in pieces read exactly as `json.dumps` writes them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from exosphere_server.jsontext import PIECE, dumps_in_pieces

VALUES: list[Any] = [
    list(range(PIECE * 2 + 1)),
    {"nodes": [{"id": i, "text": "é\ud800"} for i in range(PIECE + 1)], "name": "g", "empty": []},
    [[i] for i in range(PIECE)],
    {"small": [1, 2]},
    "plain",
]


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("options", [{}, {"separators": (",", ":"), "ensure_ascii": True}])
def test_pieces_give_the_same_text_as_json_dumps(value: Any, options: dict[str, Any]) -> None:
    assert dumps_in_pieces(value, **options) == json.dumps(value, **options)
