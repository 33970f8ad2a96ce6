"""`exosphere server`: start the state manager (a command of the SDK's `exosphere`, added by entry point)."""

from __future__ import annotations

import typer

from exosphere_server.config import ConfigError, load_settings
from exosphere_server.logs import LOG_FORMATS, configure_logging


def server(
    host: str = typer.Option("127.0.0.1", help="Address to listen on"),
    port: int = typer.Option(8000, help="Port to listen on"),
    database_url: str | None = typer.Option(
        None, "--database-url", help="sqlite:///PATH or postgresql://USER:PW@HOST/DB (default: SQLite in the data dir)"
    ),
    api_key: str | None = typer.Option(None, "--api-key", help="API key (default: $STATE_MANAGER_SECRET)"),
    log_level: str = typer.Option("INFO", help="DEBUG, INFO, WARNING or ERROR"),
    log_format: str = typer.Option(
        "auto",
        envvar="EXOSPHERE_LOG_FORMAT",
        help="auto (human-readable on a terminal, JSON lines otherwise), json or console",
    ),
) -> None:
    """Start the state manager."""
    if log_format not in LOG_FORMATS:
        typer.echo(
            f"exosphere server: --log-format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}", err=True
        )
        raise typer.Exit(2)
    configure_logging(log_level.upper(), log_format)
    try:
        settings = load_settings(host=host, port=port, database_url=database_url, api_key=api_key)
    except ConfigError as exc:
        typer.echo(f"exosphere server: {exc}", err=True)
        raise typer.Exit(2) from exc
    # Imported here so that the client commands start without loading the server stack.
    from exosphere_server.engine.secrets_key import SecretsKeyMismatch
    from exosphere_server.serve import serve

    try:
        serve(settings, log_level)
    except SecretsKeyMismatch as exc:
        typer.echo(f"exosphere server: {exc}", err=True)
        raise typer.Exit(2) from exc
