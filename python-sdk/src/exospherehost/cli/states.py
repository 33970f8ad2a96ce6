"""`exosphere state show | retry`: one state of a run."""

from __future__ import annotations

import uuid
from typing import Annotated

import typer

from exospherehost.cli import render
from exospherehost.cli.errors import CliError
from exospherehost.cli.options import (
    DEFAULT_SERVER,
    JsonOption,
    KeyOption,
    NamespaceOption,
    ServerOption,
    connect,
)
from exospherehost.errors import ConflictError
from exospherehost.statuses import RETRYABLE_BY_HAND

app = typer.Typer(help="Inspect and retry states.", no_args_is_help=True)


@app.command("show")
def show(
    state_id: Annotated[str, typer.Argument(help="State id (see `exosphere run show`)")],
    server: ServerOption = DEFAULT_SERVER,
    key: KeyOption = None,
    namespace: NamespaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a state: inputs, outputs, error, attempts and timings (never secret values)."""
    with connect(server, key, namespace) as session:
        state = session.run(session.sm.get_state(state_id.strip()))
    if as_json:
        render.print_json(state)
    else:
        render.out.print(render.state_detail(state))


@app.command("retry")
def retry(
    state_id: Annotated[str, typer.Argument(help=f"Id of an {' or '.join(sorted(RETRYABLE_BY_HAND))} state")],
    server: ServerOption = DEFAULT_SERVER,
    key: KeyOption = None,
    namespace: NamespaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run a failed state again (a new state with the same inputs); prints the new state's id."""
    fanout_id = str(uuid.uuid4())  # a fresh key: each `retry` asks for one more attempt
    with connect(server, key, namespace) as session:
        try:
            answer = session.run(session.sm.retry_state(state_id.strip(), fanout_id))
        except ConflictError as exc:
            raise CliError(f"cannot retry state {state_id.strip()}: {exc.detail}") from exc
    if as_json:
        render.print_json({"retried_state_id": state_id.strip(), "state_id": answer["id"], "fanout_id": fanout_id})
    else:
        render.out.print(f"retry of {state_id.strip()} created: state {answer['id']}", markup=False)
