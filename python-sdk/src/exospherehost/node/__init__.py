"""Nodes: the unit of work, how node classes are checked, and how one state is executed.

Example::

    from pydantic import BaseModel
    from exospherehost import BaseNode

    class Greet(BaseNode):
        class Inputs(BaseModel):
            name: str

        class Outputs(BaseModel):
            greeting: str

        async def execute(self) -> Outputs:
            return self.Outputs(greeting=f"Hello {self.inputs.name}")
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ValidationError

from .._sendable import first_problem, sendable_text
from ..contract import MAX_USAGE_COST_USD, MAX_USAGE_TOKENS
from ..errors import UnsendableOutputError
from ..signals import PruneSignal, ReQueueAfterSignal, WaitForSignal


class BaseNode:
    """Base class of every node. Subclass it, describe the data with nested pydantic models, and
    implement ``execute``.

    * ``Inputs``, ``Outputs`` and ``Secrets`` are pydantic models whose fields are all ``str``
      (defaults allowed). They are empty unless a subclass defines them.
    * ``execute`` returns an ``Outputs`` instance, a list of them (a fan-out: one next branch per
      item) or ``None`` (no outputs). It may be ``async def`` or a plain ``def``; a plain ``def``
      runs in a worker thread, so blocking code does not stall the runtime.
    * ``timeout`` (seconds, optional) bounds one execution; exceeding it fails the state.
    * Raise :class:`~exospherehost.PruneSignal` or :class:`~exospherehost.ReQueueAfterSignal` to
      end the branch or to run again later, :class:`~exospherehost.WaitForSignal` to wait for a
      signal sent to the run; ``self.signal`` is then its payload when the node runs again (else None).
    * Call :meth:`report_usage` with what a model provider call used (tokens, requests, cost): it is
      added up over the attempt and sent with its result, ``executed`` or ``errored``.

    Example::

        class Fetch(BaseNode):
            timeout = 30.0

            class Inputs(BaseModel):
                url: str

            class Outputs(BaseModel):
                body: str

            class Secrets(BaseModel):
                token: str

            def execute(self) -> Outputs:  # blocking code is fine in a plain def
                return self.Outputs(body=download(self.inputs.url, self.secrets.token))
    """

    class Inputs(BaseModel):
        pass

    class Outputs(BaseModel):
        pass

    class Secrets(BaseModel):
        pass

    timeout: ClassVar[float | None] = None

    # Typed loosely on purpose: each subclass has its own Inputs/Secrets models.
    inputs: Any
    secrets: Any
    signal: dict[str, str] | None

    def __init__(self) -> None:
        self.inputs = None
        self.secrets = None
        self.signal = None

    async def execute(self) -> BaseModel | list[BaseModel] | None:
        """Do the work of one state, reading ``self.inputs`` and ``self.secrets``."""
        raise NotImplementedError(f"{type(self).__name__} must implement execute()")

    def report_usage(
        self,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        requests: int = 0,
        cost_usd: float = 0.0,
    ) -> None:
        """Add what a call to a model provider used to this attempt's usage.

        Call it once per provider call, or once with the totals: the runtime sends the sum with the
        attempt's result (``executed`` or ``errored``, since a failed attempt may have used tokens
        too), and the state manager adds it up per node and per run, checks the run's budget, and
        shows it in ``/metrics``, ``exosphere run show`` and the dashboard. A node that raises
        ``PruneSignal``, ``ReQueueAfterSignal`` or ``WaitForSignal`` sends no usage.

        Example::

            async def execute(self) -> Outputs:
                reply = await client.chat.completions.create(...)
                self.report_usage(
                    input_tokens=reply.usage.prompt_tokens,
                    output_tokens=reply.usage.completion_tokens,
                    requests=1,
                )
                return self.Outputs(answer=reply.choices[0].message.content)
        """
        self._usage = add_usage(
            getattr(self, "_usage", None),
            {"input_tokens": input_tokens, "output_tokens": output_tokens, "requests": requests, "cost_usd": cost_usd},
        )

    def reported_usage(self) -> dict[str, int | float] | None:
        """What :meth:`report_usage` added up so far in this attempt, as the wire's ``usage``; None if nothing."""
        usage: dict[str, int | float] | None = getattr(self, "_usage", None)
        return dict(usage) if usage else None


def add_usage(total: dict[str, int | float] | None, more: dict[str, Any]) -> dict[str, int | float]:
    """``total`` plus ``more`` (fields of ``contract.Usage``), checked: counts are non-negative integers and
    the cost a non-negative finite number, and no sum passes the bounds the state manager accepts."""
    summed = dict(total or {})
    for name, value in more.items():
        if name == "cost_usd":
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_USAGE_COST_USD:
                raise ValueError(f"cost_usd must be a finite number from 0 to {MAX_USAGE_COST_USD:g}, got {value!r}")
            bound: float = MAX_USAGE_COST_USD
        else:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
            bound = MAX_USAGE_TOKENS
        if value:
            summed[name] = summed.get(name, 0) + value
            if summed[name] > bound:
                raise ValueError(f"{name} of one attempt may not pass {bound:g}, it would be {summed[name]!r}")
    return summed


_SCHEMA_MODELS = ("Inputs", "Outputs", "Secrets")


def check_node_classes(nodes: Sequence[Any]) -> list[str]:
    """Return every problem with the given node classes (empty when they are all usable).

    Example::

        check_node_classes([Greet, Greet])  # ["Duplicate node class name 'Greet' ..."]
    """
    problems: list[str] = []
    seen: set[str] = set()
    for node in nodes:
        if not (inspect.isclass(node) and issubclass(node, BaseNode)):
            problems.append(f"{node!r} is not a subclass of BaseNode (pass the class itself, not an instance)")
            continue
        name = node.__name__
        if name in seen:
            problems.append(f"Duplicate node class name {name!r}: node class names must be unique in a runtime")
        seen.add(name)
        problems.extend(_check_node_class(node))
    return problems


def _check_node_class(node: type[BaseNode]) -> list[str]:
    name = node.__name__
    problems: list[str] = []
    for attr in _SCHEMA_MODELS:
        model = getattr(node, attr, None)
        if not (inspect.isclass(model) and issubclass(model, BaseModel)):
            problems.append(f"{name}.{attr} must be a pydantic BaseModel subclass, got {model!r}")
            continue
        for field_name, info in model.model_fields.items():
            if info.annotation is not str:
                shown = getattr(info.annotation, "__name__", None) or repr(info.annotation)
                problems.append(f"{name}.{attr} field {field_name!r} must be annotated `str`, got {shown}")
    if node.execute is BaseNode.execute:
        problems.append(f"{name} does not implement execute()")
    timeout = node.timeout
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0):
        problems.append(f"{name}.timeout must be a positive number of seconds or None, got {timeout!r}")
    return problems


def node_schema(node: type[BaseNode], namespace: str) -> dict[str, Any]:
    """The description of one node class sent when a runtime registers its nodes."""
    return {
        "name": node.__name__,
        "namespace": namespace,
        "inputs_schema": node.Inputs.model_json_schema(),
        "outputs_schema": node.Outputs.model_json_schema(),
        "secrets": list(node.Secrets.model_fields),
    }


@dataclass(frozen=True)
class Outcome:
    """What to tell the state manager about one execution: the endpoint and its body."""

    endpoint: Literal["executed", "errored", "prune", "re-enqueue-after", "wait-for-signal"]
    body: dict[str, Any]

    @classmethod
    def failed(cls, exc: BaseException) -> Outcome:
        return cls("errored", {"error": describe_error(exc), "traceback": describe_traceback(exc)})


def describe_error(exc: BaseException) -> str:
    """The error text reported for a failed state, e.g. ``"ValueError: bad input"``.

    Lone surrogates and NUL characters are escaped: an error about a file name that is not UTF-8
    must still reach the server, or the state would wait for its lease to expire.
    """
    return sendable_text(f"{type(exc).__name__}: {exc}")


TRACEBACK_SENT_CHARS = 65_536


def describe_traceback(exc: BaseException) -> str:
    """The error's traceback as Python prints it (with its causes), sent beside the error text.

    Only its end is sent past 64 KiB: the innermost frames and the error are there, and a runaway
    recursion's traceback must not make the report too large to send.
    """
    text = sendable_text("".join(traceback.format_exception(exc)))
    return text if len(text) <= TRACEBACK_SENT_CHARS else "[... earlier frames cut]\n" + text[-TRACEBACK_SENT_CHARS:]


async def run_node(
    node: type[BaseNode], inputs: dict[str, Any], secrets: dict[str, Any], signal: dict[str, str] | None = None
) -> Outcome:
    """Execute ``node`` once for one state and describe the result; never raises (except cancellation).

    Example::

        outcome = await run_node(Greet, {"name": "Ada"}, {})
        assert outcome == Outcome("executed", {"outputs": [{"greeting": "Hello Ada"}]})

    What the node reported with :meth:`BaseNode.report_usage` goes with an ``executed`` or ``errored``
    outcome as its ``usage``.
    """
    made: list[BaseNode] = []
    outcome = await _run_once(node, inputs, secrets, signal, made)
    usage = made[0].reported_usage() if made else None
    if usage and outcome.endpoint in ("executed", "errored"):
        return Outcome(outcome.endpoint, {**outcome.body, "usage": usage})
    return outcome


async def _run_once(
    node: type[BaseNode],
    inputs: dict[str, Any],
    secrets: dict[str, Any],
    signal: dict[str, str] | None,
    made: list[BaseNode],
) -> Outcome:
    try:
        instance = node()
        made.append(instance)
        instance.inputs = node.Inputs(**inputs)
        instance.secrets = _parse_secrets(node, secrets)
        instance.signal = dict(signal) if signal is not None else None
        result = await _execute_with_timeout(instance, node.timeout)
        outputs = dump_outputs(node, result)
        check_outputs_sendable(node, outputs)
        return Outcome("executed", {"outputs": outputs})
    except PruneSignal as signal:
        problem = first_problem(signal.data)
        if problem is not None:
            where, reason = problem
            return Outcome.failed(UnsendableOutputError(f"Prune data field {where!r} of node {node.__name__} {reason}"))
        return Outcome("prune", {"data": signal.data})
    except ReQueueAfterSignal as signal:
        return Outcome("re-enqueue-after", {"enqueue_after": signal.delay_ms})
    except WaitForSignal as wait:
        return Outcome("wait-for-signal", {"name": wait.name, "timeout_seconds": wait.timeout_seconds})
    except Exception as exc:
        return Outcome.failed(exc)


def _parse_secrets(node: type[BaseNode], secrets: dict[str, Any]) -> BaseModel:
    try:
        return node.Secrets(**secrets)
    except ValidationError as exc:
        # pydantic's own message echoes the offending values; secret values must never leave.
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        )
        raise ValueError(f"Invalid secrets for {node.__name__}: {problems}") from None


async def _execute_with_timeout(instance: BaseNode, timeout: float | None) -> Any:
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            return await _execute(instance)
    except TimeoutError:
        if not deadline.expired():
            raise  # the node's own TimeoutError, not ours
        raise TimeoutError(f"{type(instance).__name__} timed out after {timeout:g} s") from None


async def _execute(instance: BaseNode) -> Any:
    if inspect.iscoroutinefunction(type(instance).execute):
        return await instance.execute()
    result = await asyncio.to_thread(instance.execute)
    if inspect.isawaitable(result):
        return await result
    return result


def check_outputs_sendable(node: type[BaseNode], outputs: list[dict[str, Any]]) -> None:
    """Raise :class:`UnsendableOutputError` naming the first output field the state manager cannot take."""
    for index, output in enumerate(outputs):
        problem = first_problem(output)
        if problem is not None:
            where, reason = problem
            which = f" (output {index} of {len(outputs)})" if len(outputs) > 1 else ""
            raise UnsendableOutputError(f"Output field {where!r} of node {node.__name__}{which} {reason}")


def dump_outputs(node: type[BaseNode], result: Any) -> list[dict[str, Any]]:
    """Turn what ``execute`` returned into the ``outputs`` list of the wire (one dict per output)."""
    if result is None:
        return []
    items = result if isinstance(result, list | tuple) else [result]
    outputs: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, BaseModel):
            outputs.append(item.model_dump(mode="json"))
        elif isinstance(item, dict):
            outputs.append(node.Outputs.model_validate(item).model_dump(mode="json"))
        else:
            raise TypeError(
                f"{node.__name__}.execute must return {node.__name__}.Outputs, a list of them or None, "
                f"got {type(item).__name__}"
            )
    return outputs


def _keep_the_class_under_the_original_module_path() -> None:
    """Load `exospherehost.node.BaseNode` (the original SDK's module path) now, once.

    Importing a submodule sets the package attribute of the same name to the module; done here, at
    package import, the class is put back, so `from exospherehost.node import BaseNode` stays the class.
    """
    the_class = globals()["BaseNode"]
    importlib.import_module(f"{__name__}.BaseNode")
    globals()["BaseNode"] = the_class


_keep_the_class_under_the_original_module_path()
