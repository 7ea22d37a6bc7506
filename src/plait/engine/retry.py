"""How long a failed step waits before its next attempt.

Pure: the jitter comes from a :class:`random.Random` seeded from the run id, the step
key and the attempt number, so replaying the same run gives the same delays and tests
need no global random state.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

from plait.model.plan import RetryPolicy


def base_delay(policy: RetryPolicy, retry: int) -> float:
    """Seconds before retry number ``retry`` (1-based), capped at ``max_delay``, no jitter."""
    if retry < 1:
        raise ValueError(f"retry numbers start at 1, got {retry}")
    if policy.backoff == "constant":
        delay = policy.initial
    elif policy.backoff == "linear":
        delay = policy.initial * retry
    else:
        try:
            delay = policy.initial * policy.factor ** (retry - 1)
        except OverflowError:  # a large retry number: the cap applies anyway
            delay = math.inf
    return max(0.0, min(delay, policy.max_delay))


def delay_bounds(policy: RetryPolicy, retry: int) -> tuple[float, float]:
    """The smallest and largest delay :func:`retry_delay` may return for ``retry``."""
    delay = base_delay(policy, retry)
    return (delay / 2, delay) if policy.jitter else (delay, delay)


def jitter_seed(run_id: str, key: str, attempt: int) -> str:
    """A seed that is the same for the same attempt of the same step, and only then."""
    return f"{run_id}\x00{key}\x00{attempt}"


def retry_delay(policy: RetryPolicy, retry: int, *, seed: str) -> float:
    """Seconds before retry number ``retry``; jitter spreads it over ``[delay/2, delay]``."""
    delay = base_delay(policy, retry)
    if not policy.jitter or delay <= 0:
        return delay
    # str seeds are hashed with SHA-512, so they do not depend on PYTHONHASHSEED.
    return min(delay, random.Random(seed).uniform(delay / 2, delay))


#: the longest wait a ``Retry-After`` can impose (a server asking for a day is not obeyed)
MAX_RETRY_AFTER = 3600.0


def honour_retry_after(delay: float, retry_after: float | None) -> float:
    """The policy's ``delay``, lengthened to what the other side asked for (capped at
    MAX_RETRY_AFTER): retrying a 429 before its ``Retry-After`` only earns another 429,
    and uses up a retry. Nonsense values (negative, NaN) are ignored."""
    if retry_after is None or not retry_after > 0:
        return delay
    return max(delay, min(retry_after, MAX_RETRY_AFTER))


def format_time(at: float) -> str:
    """A timestamp as people read it in a reason: ``2026-01-02T03:04:05Z``."""
    try:
        return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):  # far outside the calendar: say it raw
        return f"{at:.0f}"
