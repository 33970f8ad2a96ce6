"""`exosphere signal send`: wake the states of a run that wait for a signal (`WaitForSignal`)."""

from __future__ import annotations

from typing import Annotated

import typer

from exospherehost.cli import render
from exospherehost.cli.options import (
    DEFAULT_SERVER,
    JsonOption,
    KeyOption,
    NamespaceOption,
    ServerOption,
    connect,
    parse_pairs,
)

app = typer.Typer(help="Send signals to runs, for the states that wait for them (WaitForSignal).", no_args_is_help=True)


@app.command("send")
def send_signal(
    run_id: Annotated[str, typer.Argument(help="Run id (printed by `exosphere trigger`)")],
    name: Annotated[str, typer.Argument(help="The signal's name, e.g. approval")],
    pairs: Annotated[list[str] | None, typer.Argument(help="The payload, KEY=VALUE ...")] = None,
    server: ServerOption = DEFAULT_SERVER,
    key: KeyOption = None,
    namespace: NamespaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send signal NAME with a payload of KEY=VALUE pairs to a run: its states waiting for NAME run again
    with the payload, and a wait for NAME that starts later gets it at once.

    An unknown run exits 3 (not found); a run that has ended is refused (exit 3) naming its status.
    """
    payload = parse_pairs(pairs, "KEY=VALUE")
    with connect(server, key, namespace) as session:
        answer = session.run(session.sm.send_signal(run_id.strip(), name.strip(), payload))
    if as_json:
        render.print_json(answer)
    else:
        woken = answer["woken"]
        states = "state" if woken == 1 else "states"
        text = f"signal {answer['name']} sent to run {answer['run_id']}: {woken} {states} woken"
        render.out.print(text, markup=False)
