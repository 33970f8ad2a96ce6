"""The `exosphere` command line: graphs, runs and states of a state manager, through `StateManager`.

It needs the ``cli`` extra (``pip install "exospherehost[cli]"``: typer, rich, pyyaml); without it,
`exosphere` says so in one line. `exosphere server` comes with the server package
(its wheel from a release, docs/install.md), which adds it through an entry point (see `app.py`).

Example::

    exosphere graph apply pipeline.yaml -n demo
    exosphere trigger pipeline -n demo --store text="a b c" --wait
"""

from __future__ import annotations

import sys

from exospherehost.cli.errors import EXIT_USAGE

# The distributions of the `cli` extra, by the module name each is imported as.
EXTRA_MODULES = {"typer": "typer", "click": "typer", "rich": "rich", "yaml": "pyyaml"}


def main() -> None:
    """Run the command line. Failures this CLI detects end as one `error: ...` line on stderr and an
    exit code (docs/cli.md); typer reports unknown options and missing arguments itself (exit 2)."""
    try:
        from exospherehost.cli.app import run
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing not in EXTRA_MODULES:
            raise
        sys.stderr.write(
            f"error: the exosphere command line needs {EXTRA_MODULES[missing]}, which is not installed: "
            'pip install "exospherehost[cli]"\n'
        )
        sys.exit(EXIT_USAGE)
    run()


__all__ = ["main"]
