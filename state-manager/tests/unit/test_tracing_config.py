"""Traces cost nothing when no OTLP endpoint is configured (the OpenTelemetry SDK is not imported), and a
configuration the server cannot honour is refused at start with what to change."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from exosphere_server.config import ConfigError, load_settings
from exosphere_server.tracing import attempt_span_ids, run_span_id, trace_id_of

NO_OTEL = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}


def test_without_an_endpoint_the_server_imports_no_opentelemetry_sdk(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from exosphere_server.app import create_app\n"
        "from exosphere_server.config import load_settings\n"
        f"app = create_app(load_settings(database_url='sqlite:///{tmp_path}/x.db'))\n"
        "assert not app.state.ctx.tracing.enabled\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk', 'opentelemetry.exporter')))\n"
        "print(loaded)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env=NO_OTEL, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_an_endpoint_turns_traces_on_and_grpc_is_refused_with_what_to_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path}/x.db"
    for name in [k for k in os.environ if k.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    assert load_settings(database_url=url).tracing is False
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert load_settings(database_url=url).tracing is True
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert load_settings(database_url=url).tracing is False
    monkeypatch.delenv("OTEL_SDK_DISABLED")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    with pytest.raises(ConfigError, match="use http/protobuf"):
        load_settings(database_url=url)


def test_span_ids_are_derived_from_the_run_and_the_claim_and_never_zero() -> None:
    assert trace_id_of("run-1") == trace_id_of("run-1") != trace_id_of("run-2")
    assert 0 < trace_id_of("run-1") < 2**128 and 0 < run_span_id("run-1") < 2**64
    first, again, second = attempt_span_ids("s", 1), attempt_span_ids("s", 1), attempt_span_ids("s", 2)
    assert first == again and len(set(first) | set(second)) == 6  # a new claim is a new attempt
