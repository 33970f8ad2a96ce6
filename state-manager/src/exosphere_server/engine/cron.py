"""Cron math in UTC for graph triggers (PROTOCOL §10.2, with D18–D19 fixed).

Every datetime in and out is timezone-aware UTC, whatever the host's local time (D19).
Expressions follow croniter: 5 fields (minute hour day month weekday), ``@daily``-style aliases,
and croniter's 6-field form whose **last** field is seconds (``"0 * * * * 30"`` = every minute at
second 30), optionally a 7th field for the year. Random ``R`` fields are refused: replicas must agree
on every occurrence, since an occurrence's time is part of the key that makes it fire once.

Example::

    next_occurrence("*/5 * * * *", datetime(2025, 1, 1, 0, 2, tzinfo=UTC))   # 00:05 UTC
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from croniter import CroniterError, croniter

_RANDOM_FIELD = re.compile(r"\bR\b", re.IGNORECASE)


class CronExpressionError(ValueError):
    """The expression is not valid cron syntax or never fires."""


def validate_expression(expr: str, *, now: datetime | None = None) -> str | None:
    """None when ``expr`` is usable, else a message saying what is wrong.

    Syntax alone is not enough: ``0 0 31 2 *`` (Feb 31) parses but never fires, and upstream only
    found out later with an "unexpected error" (D18). So the next occurrence after ``now``
    (default: the current time) must exist.
    """
    if not expr.strip():
        return "Cron expression cannot be empty"
    if _RANDOM_FIELD.search(expr) or not croniter.is_valid(expr):
        return f"Invalid cron expression '{expr}'"
    try:
        _next(expr, _as_utc(now) if now is not None else datetime.now(UTC))
    except CroniterError:
        return f"Cron expression '{expr}' never fires: no date matches it"
    return None


def next_occurrence(expr: str, after: datetime) -> datetime:
    """The first occurrence strictly after ``after``; raise :class:`CronExpressionError` if there is none."""
    try:
        return _next(expr, _as_utc(after))
    except CroniterError as exc:
        raise CronExpressionError(f"Cron expression '{expr}' has no occurrence after {after.isoformat()}") from exc


def _next(expr: str, after: datetime) -> datetime:
    result: datetime = croniter(expr, after).get_next(datetime)
    return result.astimezone(UTC)


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"Cron math needs a timezone-aware datetime, got naive {moment.isoformat()}")
    return moment.astimezone(UTC)
