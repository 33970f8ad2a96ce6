"""The `exosphere` command line: `server` runs the state manager; the other commands talk to one over HTTP.

Example::

    exosphere graph apply pipeline.yaml -n demo
    exosphere trigger pipeline -n demo --store text="a b c" --wait
"""

from __future__ import annotations

import sys

import typer

from exosphere_server.cli import graphs, render, runs, states
from exosphere_server.cli.client import CliError
from exosphere_server.cli.server import server

app = typer.Typer(
    help="Exosphere: run and inspect background AI workflows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Exosphere command line."""


app.command()(server)
app.add_typer(graphs.app, name="graph")
app.command("trigger")(runs.trigger)
app.command("runs")(runs.list_runs)
app.add_typer(runs.run_app, name="run")
app.add_typer(states.app, name="state")


def main() -> None:
    """Run the command line. Failures this CLI detects end as one `error: ...` line on stderr and an
    exit code (docs/cli.md); typer reports unknown options and missing arguments itself (exit 2)."""
    try:
        app()
    except CliError as exc:
        render.error(exc.message)
        sys.exit(exc.exit_code)


__all__ = ["app", "main"]
