"""A real runtime (the Python SDK) whose node code opens spans of its own, exported with the OpenTelemetry
SDK over OTLP as any user's would be: Plan, then Split fans out to Work, Merge unites Plan.

Each Work opens a `model-call` span: it stands for an instrumented client (httpx, an LLM SDK), which
opens its spans the same way, under whatever span is current.
"""

from __future__ import annotations

import os

from exospherehost import BaseNode, Runtime
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from pydantic import BaseModel

tracer = trace.get_tracer("traced-runtime")


class Plan(BaseNode):
    class Inputs(BaseModel):
        text: str

    class Outputs(BaseModel):
        text: str

    async def execute(self) -> BaseModel:
        return self.Outputs(text=self.inputs.text)


class Split(BaseNode):
    class Inputs(BaseModel):
        text: str

    class Outputs(BaseModel):
        item: str

    async def execute(self) -> list[BaseModel]:
        return [self.Outputs(item=char) for char in self.inputs.text]


class Work(BaseNode):
    class Inputs(BaseModel):
        item: str

    class Outputs(BaseModel):
        done: str

    async def execute(self) -> BaseModel:
        with tracer.start_as_current_span("model-call", attributes={"item": self.inputs.item}):
            return self.Outputs(done=self.inputs.item.upper())


class Merge(BaseNode):
    class Inputs(BaseModel):
        text: str

    class Outputs(BaseModel):
        summary: str

    async def execute(self) -> BaseModel:
        return self.Outputs(summary=f"merged {self.inputs.text}")


if __name__ == "__main__":
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: "traced-runtime"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))  # each span sent as it ends
    trace.set_tracer_provider(provider)
    Runtime(
        namespace=os.environ["EXOSPHERE_NAMESPACE"], name="traced-runtime", nodes=[Plan, Split, Work, Merge]
    ).start()
