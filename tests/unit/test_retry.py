"""Retry delays: the documented shapes, the cap, and jitter that stays in bounds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plait.engine.retry import base_delay, delay_bounds, jitter_seed, retry_delay
from plait.model.plan import RetryPolicy


@pytest.mark.parametrize(
    ("backoff", "expected"),
    [
        ("constant", [2, 2, 2, 2]),
        ("linear", [2, 4, 6, 8]),
        ("exponential", [2, 6, 18, 20]),  # 54 is capped at max_delay
    ],
)
def test_backoff_shapes(backoff: str, expected: list[float]) -> None:
    policy = RetryPolicy(max=4, backoff=backoff, initial=2, factor=3, max_delay=20)  # type: ignore[arg-type]
    assert [base_delay(policy, n) for n in range(1, 5)] == expected


def test_jitter_is_deterministic_per_attempt_and_varies_between_attempts() -> None:
    policy = RetryPolicy(max=5, initial=100, factor=1, jitter=True)
    first = retry_delay(policy, 1, seed=jitter_seed("run", "step", 1))
    assert first == retry_delay(policy, 1, seed=jitter_seed("run", "step", 1))
    others = {retry_delay(policy, 1, seed=jitter_seed("run", "step", a)) for a in range(2, 12)}
    assert len(others | {first}) > 1


def test_retry_numbers_start_at_one() -> None:
    with pytest.raises(ValueError, match="start at 1"):
        base_delay(RetryPolicy(), 0)


policies = st.builds(
    RetryPolicy,
    max=st.integers(0, 10),
    backoff=st.sampled_from(["exponential", "linear", "constant"]),
    initial=st.floats(0, 1e4, allow_nan=False),
    factor=st.floats(1, 100, allow_nan=False),
    max_delay=st.floats(0, 1e6, allow_nan=False),
    jitter=st.booleans(),
)


@given(policy=policies, retry=st.integers(1, 5_000), seed=st.text(max_size=20))
def test_delays_stay_within_the_policy_bounds(policy: RetryPolicy, retry: int, seed: str) -> None:
    low, high = delay_bounds(policy, retry)
    delay = retry_delay(policy, retry, seed=seed)
    assert 0 <= low <= delay <= high <= policy.max_delay
    if policy.jitter:
        assert low == high / 2
    else:
        assert delay == base_delay(policy, retry)


@given(policy=policies, retry=st.integers(1, 200))
def test_delays_never_shrink_from_one_retry_to_the_next(policy: RetryPolicy, retry: int) -> None:
    assert base_delay(policy, retry) <= base_delay(policy, retry + 1)
