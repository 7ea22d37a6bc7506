"""Capped exponential backoff, for the loops that carry on while the database is away.

A worker, a scheduler or a listener that loses its database keeps trying: quickly at
first (a dropped connection is usually back at once), then less and less often up to a
cap, so that a long outage costs a log line every half minute rather than a busy loop.
Each delay is jittered (between half and all of it) so that many processes that lost
the same server do not all reconnect in the same millisecond when it returns.
"""

from __future__ import annotations

import random


class Backoff:
    """Delays after consecutive failures: ``base``, ``2·base``, ``4·base`` … ``cap``."""

    def __init__(self, base: float = 0.5, cap: float = 30.0) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0

    def failed(self) -> float:
        """Count a failure; how long to wait before the next try."""
        self.failures += 1
        delay = min(self.cap, self.base * 2.0 ** min(self.failures - 1, 30))
        return delay * random.uniform(0.5, 1.0)  # jitter, not security

    def succeeded(self) -> bool:
        """Reset; True when this ends a run of failures (worth a log line)."""
        recovered = self.failures > 0
        self.failures = 0
        return recovered
