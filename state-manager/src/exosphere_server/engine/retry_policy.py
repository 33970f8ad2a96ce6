"""Delay before an automatic retry (PROTOCOL §7.2).

Example::

    retry_delay_ms(RetryPolicyModel(), retry_count=3)  # 8000 (2000 * 2**2)
"""

from __future__ import annotations

import random

from exospherehost.models import RetryPolicyModel, RetryStrategyEnum

# A policy is user input with no bound on max_retries, so the exponential base can outgrow any
# column or JSON number. No realistic policy comes near ten years; clamping there keeps
# ``enqueue_after`` inside int64 and inside JavaScript's safe integers.
MAX_RETRY_DELAY_MS = 10 * 365 * 24 * 60 * 60 * 1000

_EXPONENTIAL = {
    RetryStrategyEnum.EXPONENTIAL,
    RetryStrategyEnum.EXPONENTIAL_FULL_JITTER,
    RetryStrategyEnum.EXPONENTIAL_EQUAL_JITTER,
}
_LINEAR = {RetryStrategyEnum.LINEAR, RetryStrategyEnum.LINEAR_FULL_JITTER, RetryStrategyEnum.LINEAR_EQUAL_JITTER}
_FULL_JITTER = {
    RetryStrategyEnum.EXPONENTIAL_FULL_JITTER,
    RetryStrategyEnum.LINEAR_FULL_JITTER,
    RetryStrategyEnum.FIXED_FULL_JITTER,
}
_EQUAL_JITTER = {
    RetryStrategyEnum.EXPONENTIAL_EQUAL_JITTER,
    RetryStrategyEnum.LINEAR_EQUAL_JITTER,
    RetryStrategyEnum.FIXED_EQUAL_JITTER,
}


def retry_delay_ms(policy: RetryPolicyModel, retry_count: int, rng: random.Random | None = None) -> int:
    """Milliseconds to wait before the retry whose ``retry_count`` is given (1 for the first retry).

    ``rng`` makes the jitter strategies reproducible in tests; the module's generator is used otherwise.
    """
    if retry_count < 1:
        raise ValueError(f"retry_count of a retry must be at least 1, got {retry_count}")
    base = _base_delay(policy, retry_count)
    cap = min(policy.max_delay, MAX_RETRY_DELAY_MS) if policy.max_delay is not None else MAX_RETRY_DELAY_MS
    if policy.strategy in _FULL_JITTER or policy.strategy in _EQUAL_JITTER:
        if base > cap * 2**20:
            # Jitter over such a base lands above the cap with probability at least 1 - 2**-20, and the
            # base may be too large for a float.
            return cap
        draw = rng.uniform if rng is not None else random.uniform
        base = int(draw(0, base)) if policy.strategy in _FULL_JITTER else int(base / 2 + draw(0, base / 2))
    return min(base, cap)


def _base_delay(policy: RetryPolicyModel, retry_count: int) -> int:
    if policy.strategy in _EXPONENTIAL:
        growth: int = policy.exponent ** (retry_count - 1)  # retry_count >= 1, so an int, never a float
        return policy.backoff_factor * growth
    if policy.strategy in _LINEAR:
        return policy.backoff_factor * retry_count
    return policy.backoff_factor
