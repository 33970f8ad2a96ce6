"""The committed wire contract (`contract/openapi.json`) is what the current server produces.

The TypeScript SDK's types are generated from that file, so a route or model that changes without
regenerating it fails here (the TypeScript side is checked by `scripts/test-typescript.sh`).
"""

from __future__ import annotations

import difflib
from pathlib import Path

from exosphere_server.openapi_document import openapi_document, render

COMMITTED = Path(__file__).resolve().parents[3] / "contract" / "openapi.json"


def test_the_committed_openapi_document_is_what_the_server_produces() -> None:
    produced = render(openapi_document())
    committed = COMMITTED.read_text(encoding="utf-8") if COMMITTED.exists() else ""
    if produced != committed:
        diff = "".join(
            difflib.unified_diff(
                committed.splitlines(keepends=True),
                produced.splitlines(keepends=True),
                "contract/openapi.json (committed)",
                "the server's /openapi.json",
                n=2,
            )
        )
        raise AssertionError(
            "contract/openapi.json is stale: run scripts/generate-contract.sh and commit both files it writes.\n"
            + diff[:6000]
        )


def test_every_operation_documents_its_answer() -> None:
    document = openapi_document()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            success = {code: r for code, r in operation["responses"].items() if code.startswith("2")}
            assert len(success) == 1, f"{method.upper()} {path} documents {sorted(success)}"
            [answer] = success.values()
            if "text/event-stream" in answer["content"]:
                # The run's event stream; each event's data is `exospherehost.contract.RunEvent`, which the
                # SDK parses every event with (python-sdk/tests/integration/test_watch_run.py). A state's
                # live stream: `StreamChunk` and `StreamEnd` (state-manager/tests/streams/).
                assert path.endswith(("/events", "/stream")), f"{method.upper()} {path} answers an undocumented stream"
                continue
            if "text/plain" in answer["content"]:
                # One input or output value as its own text (a large payload can be megabytes of it).
                assert path.endswith("/payload/{side}/{field}"), f"{method.upper()} {path} answers plain text"
                assert answer["content"]["text/plain"]["schema"] == {"type": "string"}
                continue
            schema = answer["content"]["application/json"]["schema"]
            assert "$ref" in schema, f"{method.upper()} {path} answers an undocumented shape: {schema}"
