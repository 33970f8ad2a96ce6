from datetime import UTC, datetime, timedelta, timezone

import pytest
from exosphere_server.engine.cron import CronExpressionError, next_occurrence, validate_expression


def at(hour: int, minute: int = 0, second: int = 0, day: int = 1) -> datetime:
    return datetime(2025, 1, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize("expr", ["*/5 * * * *", "0 9 * * 1-5", "@daily", "0 0 29 2 *", "0 * * * * 30"])
def test_valid_expressions_are_accepted(expr):
    assert validate_expression(expr, now=at(0)) is None


@pytest.mark.parametrize("expr", ["", "   ", "foo", "* * *", "61 * * * *", "R * * * *"])
def test_invalid_syntax_is_reported(expr):
    assert validate_expression(expr, now=at(0)) is not None


def test_impossible_date_is_reported_as_never_firing():
    assert "never fires" in (validate_expression("0 0 31 2 *", now=at(0)) or "")


def test_expression_whose_year_has_passed_never_fires():
    assert "never fires" in (validate_expression("0 0 1 1 * 0 2020", now=at(0)) or "")


def test_next_occurrence_is_strictly_after():
    assert next_occurrence("*/5 * * * *", at(0, 5)) == at(0, 10)
    assert next_occurrence("*/5 * * * *", at(0, 4, 59)) == at(0, 5)


def test_next_occurrence_is_utc_whatever_the_input_zone():
    plus_five = datetime(2025, 1, 1, 5, 30, tzinfo=timezone(timedelta(hours=5)))  # 00:30 UTC
    result = next_occurrence("0 * * * *", plus_five)
    assert result == at(1) and result.utcoffset() == timedelta(0)


def test_sixth_field_is_seconds_so_it_fires_once_per_minute_at_that_second():
    assert next_occurrence("* * * * * 30", at(0)) == at(0, 0, 30)
    assert next_occurrence("* * * * * 30", at(0, 0, 30)) == at(0, 1, 30)


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        next_occurrence("* * * * *", datetime(2025, 1, 1))


def test_next_occurrence_of_impossible_date_raises():
    with pytest.raises(CronExpressionError):
        next_occurrence("0 0 31 2 *", at(0))
