import random

import pytest
from exosphere_server.engine.retry_policy import MAX_RETRY_DELAY_MS, retry_delay_ms
from exospherehost.models import RetryPolicyModel, RetryStrategyEnum


def policy(strategy: str = "EXPONENTIAL", **fields: int | None) -> RetryPolicyModel:
    return RetryPolicyModel(strategy=RetryStrategyEnum(strategy), **fields)


def test_default_policy_waits_2_4_8_seconds():
    assert [retry_delay_ms(RetryPolicyModel(), n) for n in (1, 2, 3)] == [2000, 4000, 8000]


def test_max_delay_caps_the_delay():
    capped = policy(max_delay=5000)
    assert [retry_delay_ms(capped, n) for n in (1, 2, 3, 4)] == [2000, 4000, 5000, 5000]


def test_linear_grows_by_the_backoff_factor():
    assert [retry_delay_ms(policy("LINEAR", backoff_factor=500), n) for n in (1, 2, 3)] == [500, 1000, 1500]


def test_fixed_always_waits_the_backoff_factor():
    assert {retry_delay_ms(policy("FIXED", backoff_factor=700), n) for n in (1, 5, 9)} == {700}


def test_exponent_is_configurable():
    assert retry_delay_ms(policy(backoff_factor=100, exponent=3), 3) == 900


@pytest.mark.parametrize("prefix, base", [("EXPONENTIAL", 8000), ("LINEAR", 6000), ("FIXED", 2000)])
def test_full_jitter_stays_between_zero_and_base(prefix, base):
    rng = random.Random(7)
    delays = [retry_delay_ms(policy(f"{prefix}_FULL_JITTER"), 3, rng) for _ in range(500)]
    assert all(0 <= d < base for d in delays)
    assert min(delays) < base / 4 and max(delays) > base * 3 / 4


@pytest.mark.parametrize("prefix, base", [("EXPONENTIAL", 8000), ("LINEAR", 6000), ("FIXED", 2000)])
def test_equal_jitter_stays_between_half_base_and_base(prefix, base):
    rng = random.Random(7)
    delays = [retry_delay_ms(policy(f"{prefix}_EQUAL_JITTER"), 3, rng) for _ in range(500)]
    assert all(base / 2 <= d < base for d in delays)


def test_jitter_is_truncated_toward_zero_and_reproducible_with_a_seed():
    expected = int(random.Random(1).uniform(0, 8000))
    assert retry_delay_ms(policy("EXPONENTIAL_FULL_JITTER"), 3, random.Random(1)) == expected


def test_jitter_is_capped_after_drawing():
    rng = random.Random(3)
    delays = [retry_delay_ms(policy("EXPONENTIAL_EQUAL_JITTER", max_delay=5000), 3, rng) for _ in range(100)]
    assert all(4000 <= d <= 5000 for d in delays)
    assert delays.count(5000) > 50  # every draw above the cap becomes the cap


def test_huge_retry_counts_stay_within_storable_delays():
    assert retry_delay_ms(RetryPolicyModel(), 5000) == MAX_RETRY_DELAY_MS
    assert retry_delay_ms(policy("EXPONENTIAL_FULL_JITTER"), 5000, random.Random(0)) == MAX_RETRY_DELAY_MS
    assert MAX_RETRY_DELAY_MS < 2**53


def test_retry_count_starts_at_one():
    with pytest.raises(ValueError, match="at least 1"):
        retry_delay_ms(RetryPolicyModel(), 0)
