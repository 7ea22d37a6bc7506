"""``Retry-After``: the engine waits at least as long as the other side asked, and the
http action reads the header in both its forms."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import format_datetime

from hypothesis import given
from hypothesis import strategies as st

from plait.actions.http import retry_after
from plait.engine.retry import MAX_RETRY_AFTER, delay_bounds, honour_retry_after
from plait.model.plan import RetryPolicy
from tests.unit.test_engine_support import T0, S, fail, machine, plan, run_step, status, step


def test_a_retry_waits_for_retry_after_when_it_is_longer_than_the_policy() -> None:
    policy = RetryPolicy(max=3, backoff="constant", initial=2)
    m = machine(plan(step("a", retry=policy)))
    m.start(T0)
    tx = run_step(m, "a", fail("429", retry_after=30))
    assert status(m, "a") is S.RETRYING
    assert m.steps["a"].available_at == T0 + 30
    assert tx.events[-1].data["delay"] == 30
    run_step(m, "a", fail("429", retry_after=0.5))  # shorter than the policy: policy wins
    assert m.steps["a"].available_at == T0 + 2
    run_step(m, "a", fail("500"))
    assert m.steps["a"].available_at == T0 + 2


def test_retry_after_does_not_make_a_step_retry_that_would_not() -> None:
    m = machine(plan(step("a", retry=1)))
    m.start(T0)
    run_step(m, "a", fail(retryable=False, retry_after=5))
    assert status(m, "a") is S.FAILED
    m = machine(plan(step("a")))  # no retries at all
    m.start(T0)
    run_step(m, "a", fail(retry_after=5))
    assert status(m, "a") is S.FAILED


def test_a_huge_retry_after_is_capped() -> None:
    m = machine(plan(step("a", retry=1)))
    m.start(T0)
    run_step(m, "a", fail(retry_after=10 * 86400))
    assert m.steps["a"].available_at == T0 + MAX_RETRY_AFTER


policies = st.builds(
    RetryPolicy,
    max=st.integers(1, 10),
    backoff=st.sampled_from(["exponential", "linear", "constant"]),
    initial=st.floats(0, 1e4, allow_nan=False),
    factor=st.floats(1, 100, allow_nan=False),
    max_delay=st.floats(0, 1e6, allow_nan=False),
    jitter=st.booleans(),
)


@given(
    policy=policies,
    retry=st.integers(1, 50),
    wait=st.none() | st.floats(allow_nan=True, allow_infinity=True),
)
def test_the_delay_is_the_longer_of_the_policy_and_retry_after(
    policy: RetryPolicy, retry: int, wait: float | None
) -> None:
    _, high = delay_bounds(policy, retry)
    delay = honour_retry_after(high, wait)
    assert delay >= high
    if wait is not None and wait > 0:
        assert delay >= min(wait, MAX_RETRY_AFTER)
        assert delay <= max(high, MAX_RETRY_AFTER)
    else:
        assert delay == high
    assert math.isfinite(delay) or math.isinf(high)


def test_retry_after_header_in_seconds_and_as_a_date() -> None:
    now = 1_700_000_000.0
    assert retry_after("120", now) == 120
    assert retry_after(" 0 ", now) == 0
    when = format_datetime(datetime.fromtimestamp(now + 90, UTC), usegmt=True)
    assert retry_after(when, now) == 90
    past = format_datetime(datetime.fromtimestamp(now - 90, UTC), usegmt=True)
    assert retry_after(past, now) == 0
    assert retry_after(None, now) is None
    assert retry_after("", now) is None
    assert retry_after("soon", now) is None
    assert retry_after("-5", now) is None
