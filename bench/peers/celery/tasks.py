"""The Celery app of the peer benchmark: the nodes of `bench/sdk_runtime.py`, written as Celery tasks.

Broker and result backend are the Redis at `$CELERY_PEER_REDIS` (`bench.py` starts one of its own).
The worker runs this module: `celery -A tasks worker ...` from this folder.

- `hop` is `Hop`: returns its input and the moment it ran (`at`), so that the benchmark can time
  every hop of a chain from the worker's side, as `make bench` does from the runtime's.
- `fan` is `Fan`: decides the width at run time and replaces itself with a chord of `hop`s whose
  callback is `gather`, as a `Fan` node's outputs become one state each and a `unites` node waits for
  them all.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery, Task, chord

app = Celery("exosphere_peer", broker=os.environ["CELERY_PEER_REDIS"], backend=os.environ["CELERY_PEER_REDIS"])
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    # Every result is kept, as every state is: the user reads the chain's results back.
    task_ignore_result=False,
)


@app.task
def hop(value: str | dict[str, Any]) -> dict[str, Any]:
    """A trivial node: `value` is the input, or the previous hop's result in a chain."""
    x = value["x"] if isinstance(value, dict) else value
    return {"x": x, "at": time.time()}


@app.task(bind=True)
def fan(self: Task, _previous: dict[str, Any], width: int) -> Any:
    """Fan out to `width` hops, decided now, joined by `gather`: the task becomes that chord."""
    return self.replace(chord([hop.s(str(i)) for i in range(width)], gather.s(width)))


@app.task
def gather(results: list[dict[str, Any]], width: int) -> dict[str, Any]:
    """The join: runs once all `width` hops have run, with their results."""
    if len(results) != width:
        raise RuntimeError(f"gather got {len(results)} results, expected {width}")
    return {"x": str(len(results))}
