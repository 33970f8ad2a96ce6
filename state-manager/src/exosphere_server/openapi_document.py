"""The server's OpenAPI document, built without a database: the source of `contract/openapi.json`.

`scripts/generate-contract.sh` writes it to `contract/openapi.json` (pretty-printed, keys sorted, so
a change of the wire reads as a small diff), and the TypeScript SDK's types are generated from that
file. `tests/unit/test_contract_drift.py` fails when the committed file differs from this.

Example::

    python -m exosphere_server.openapi_document contract/openapi.json
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from exosphere_server.app import create_app
from exosphere_server.config import Settings


def openapi_document() -> dict[str, Any]:
    """The document `/openapi.json` serves. The app is only built: nothing connects to its database."""
    with tempfile.TemporaryDirectory() as directory:
        settings = Settings(database_url=f"sqlite:///{directory}/openapi.db", api_key=None, secrets_key=bytes(32))
        return create_app(settings).openapi()


def render(document: dict[str, Any]) -> str:
    """The committed form: two-space indents, sorted keys, UTF-8, one final newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m exosphere_server.openapi_document OUTPUT.json", file=sys.stderr)
        return 2
    Path(argv[0]).write_text(render(openapi_document()), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
