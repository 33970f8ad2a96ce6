"""JSON answers that can always be sent, whatever text older versions let into the database."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from exosphere_server.jsontext import dumps_in_pieces


def render_json(content: Any) -> bytes:
    """UTF-8 JSON as Starlette writes it, or ASCII JSON with escapes when a stored string is not valid
    Unicode; long lists are encoded in pieces (`jsontext.py`).

    Such text is refused at the door now (`engine/storable.py`), but rows written before that must
    not make a listing or a claim answer 500: `"\\ud800"` is still valid JSON that any client reads.
    """
    options: dict[str, Any] = {"allow_nan": False, "separators": (",", ":")}
    try:
        return dumps_in_pieces(content, ensure_ascii=False, **options).encode("utf-8")
    except UnicodeEncodeError:
        return dumps_in_pieces(content, ensure_ascii=True, **options).encode("ascii")


class SafeJSONResponse(JSONResponse):
    """A `JSONResponse` rendered by :func:`render_json`."""

    def render(self, content: Any) -> bytes:
        return render_json(content)
