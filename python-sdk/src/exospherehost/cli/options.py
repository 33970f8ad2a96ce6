"""Options every client command shares, and parsing of what users type (`k=v`, `30s`)."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from exospherehost.cli.errors import EXIT_USAGE, CliError
from exospherehost.cli.session import Session

DEFAULT_SERVER = "http://127.0.0.1:8000"

ServerOption = Annotated[
    str, typer.Option("--server", envvar="EXOSPHERE_STATE_MANAGER_URI", help="State manager address")
]
KeyOption = Annotated[str | None, typer.Option("--key", envvar="EXOSPHERE_API_KEY", help="API key", show_default=False)]
NamespaceOption = Annotated[
    str | None,
    typer.Option("--namespace", "-n", envvar="EXOSPHERE_NAMESPACE", help="Namespace", show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts) instead of tables")]


def connect(server: str, key: str | None, namespace: str | None) -> Session:
    return Session(server, key, namespace or "")


def parse_pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    """`["a=1", "b=x=y"]` → `{"a": "1", "b": "x=y"}`; anything else is a usage error naming the flag."""
    pairs: dict[str, str] = {}
    for value in values or []:
        key, sep, rest = value.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CliError(f"invalid {flag} {value!r}: expected KEY=VALUE", EXIT_USAGE)
        if key in pairs:
            raise CliError(f"{flag} {key!r} is given twice", EXIT_USAGE)
        pairs[key] = rest
    return pairs


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str, flag: str) -> float:
    """Seconds in `500ms`, `30s`, `5m`, `1h30m`, `2d`, or a plain number of seconds."""
    cleaned = text.strip().lower()
    try:
        seconds = float(cleaned)
    except ValueError:
        parts = _DURATION_PART.findall(cleaned)
        if not cleaned or "".join(number + unit for number, unit in parts) != cleaned:
            raise CliError(f"invalid {flag} {text!r}: use e.g. 500ms, 30s, 5m, 1h30m", EXIT_USAGE) from None
        seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise CliError(f"invalid {flag} {text!r}: must be a duration of zero or more", EXIT_USAGE)
    return seconds
