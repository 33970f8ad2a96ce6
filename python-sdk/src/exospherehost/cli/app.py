"""The `exosphere` typer application: the client commands, and the commands installed packages add.

A package adds a command with an entry point in the group ``exospherehost.cli_plugins``: the entry
point's name is the command's name, its object a typer command function (or a ``typer.Typer`` for a
group of commands). The server package adds ``exosphere server`` so::

    [project.entry-points."exospherehost.cli_plugins"]
    server = "exosphere_server.cli.server:server"

The SDK never imports the server: it only loads what the entry points name.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from importlib.metadata import EntryPoint, PackageNotFoundError, entry_points, version
from typing import Any

import typer

from exospherehost._version import VERSION
from exospherehost.cli import graphs, keys, limits, render, runs, signals, states
from exospherehost.cli.errors import EXIT_USAGE, CliError

PLUGIN_GROUP = "exospherehost.cli_plugins"
BUILT_IN = ("graph", "trigger", "runs", "run", "state", "signal", "limit", "key", "audit")
# The server is on no package index: it comes with a release (`make release` builds one).
SERVER_INSTALL = f"pip install exosphere_server-{VERSION}-py3-none-any.whl from a release (docs/install.md)"
# Options of a command that cannot run are accepted, so that the answer is always the one-line reason.
ANY_ARGUMENTS: dict[str, Any] = {"allow_extra_args": True, "ignore_unknown_options": True}


def build_app(plugins: Iterable[EntryPoint] | None = None) -> typer.Typer:
    """The application with the built-in commands and those of `plugins` (default: the installed ones).

    Example::

        build_app(plugins=[])  # as if no other package were installed: `server` only says how to get it
    """
    app = typer.Typer(
        help="Exosphere: run and inspect background AI workflows.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
    )

    @app.callback()
    def _root(
        _version: bool = typer.Option(
            False, "--version", is_eager=True, callback=_print_versions, help="Print the SDK and server versions."
        ),
    ) -> None:
        """Exosphere command line."""

    # Plugins first: `exosphere --help` lists commands in the order they were added, `server` on top.
    added: set[str] = set()
    for plugin in entry_points(group=PLUGIN_GROUP) if plugins is None else plugins:
        if plugin.name not in BUILT_IN and plugin.name not in added:
            _add_plugin(app, plugin)
            added.add(plugin.name)
    if "server" not in added:
        app.command("server", context_settings=ANY_ARGUMENTS)(_server_not_installed)
    app.add_typer(graphs.app, name="graph")
    app.command("trigger")(runs.trigger)
    app.add_typer(runs.runs_app, name="runs")
    app.add_typer(runs.run_app, name="run")
    app.add_typer(states.app, name="state")
    app.add_typer(signals.app, name="signal")
    app.add_typer(limits.app, name="limit")
    app.add_typer(keys.app, name="key")
    app.command("audit")(keys.audit)
    return app


def _add_plugin(app: typer.Typer, plugin: EntryPoint) -> None:
    try:
        command = plugin.load()
    except Exception as exc:  # a broken package must not take the other commands down with it
        app.command(plugin.name, context_settings=ANY_ARGUMENTS)(_unloadable(plugin, exc))
        return
    if isinstance(command, typer.Typer):
        app.add_typer(command, name=plugin.name)
    else:
        app.command(plugin.name)(command)


def _unloadable(plugin: EntryPoint, exc: Exception) -> Callable[[], None]:
    def report() -> None:
        """(Cannot run: its package failed to load.)"""
        raise CliError(
            f"`exosphere {plugin.name}` comes from {plugin.value}, which failed to load "
            f"({type(exc).__name__}: {exc}); reinstall the package that provides it",
            EXIT_USAGE,
        )

    return report


def installed_versions() -> dict[str, str | None]:
    """The installed version of the SDK and of the server (None when the server is not installed).

    Read from the packages' metadata, so the SDK still never imports the server.

    Example::

        installed_versions()  # {"exospherehost": "0.1.0", "exosphere-server": "0.1.0"}
    """
    versions: dict[str, str | None] = {}
    for distribution in ("exospherehost", "exosphere-server"):
        try:
            versions[distribution] = version(distribution)
        except PackageNotFoundError:
            versions[distribution] = None
    return versions


def _print_versions(wanted: bool) -> None:
    if not wanted:
        return
    for distribution, number in installed_versions().items():
        typer.echo(f"{distribution} {number or 'not installed'}")
    raise typer.Exit()


def _server_not_installed() -> None:
    """Start the state manager (needs the server package, from a release: docs/install.md)."""
    raise CliError(f"`exosphere server` needs the state manager, which is not installed: {SERVER_INSTALL}", EXIT_USAGE)


def run(app: typer.Typer | None = None) -> None:
    """Run the command line (the installed application unless `app` is given); errors end as one line."""
    try:
        (app or build_app())()
    except CliError as exc:
        render.error(exc.message)
        sys.exit(exc.exit_code)
