"""Logs for operators: one event per meaningful thing, the request id attached, no secrets.

Two renderings of the same events, ours and those of the libraries we run (uvicorn, alembic) alike:
JSON lines for a log shipper, or aligned human-readable lines for someone watching a terminal. `auto`
(the default) picks the human one when stderr is a terminal and JSON otherwise (a file, a pipe,
journald), so a log shipper never meets a plain-text line.

Example::

    configure_logging("INFO", "auto")   # `exosphere server --log-format auto`
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Literal

import structlog

LogFormat = Literal["auto", "json", "console"]
LOG_FORMATS: tuple[LogFormat, ...] = ("auto", "json", "console")

SHARED: list[structlog.typing.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def configure_logging(level: str = "INFO", log_format: LogFormat = "auto") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*SHARED, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *_renderer(log_format)],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "alembic"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Alembic narrates every start ("Context impl …", "Will assume transactional DDL", one line per
    # migration): noise at INFO, where our own `database_migrated` event says what changed.
    logging.getLogger("alembic").setLevel(level if level == "DEBUG" else max(root.level, logging.WARNING))
    # uvicorn's own access log is replaced by ours (it cannot carry the request id).
    logging.getLogger("uvicorn.access").disabled = True
    structlog.configure(
        processors=[*SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level]),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )


def _renderer(log_format: LogFormat) -> list[structlog.typing.Processor]:
    human = log_format == "console" or (log_format == "auto" and sys.stderr.isatty())
    if human:
        # Tracebacks rendered by the console renderer itself (pretty, with rich when installed).
        return [structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty() and "NO_COLOR" not in os.environ)]
    return [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
