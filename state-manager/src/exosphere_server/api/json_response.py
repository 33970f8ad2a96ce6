"""JSON answers that can always be sent, whatever text older versions let into the database."""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import JSONResponse


class SafeJSONResponse(JSONResponse):
    """UTF-8 JSON, or ASCII JSON with escapes when a stored string is not valid Unicode.

    Such text is refused at the door now (`engine/storable.py`), but rows written before that must
    not make a listing or a claim answer 500: `"\\ud800"` is still valid JSON that any client reads.
    """

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")
