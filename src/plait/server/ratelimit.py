"""Abuse limits: token-bucket rate limits for the anonymous entry points, and the
backoff of the account lockout.

Rate limits hold per client address on ``POST /auth/token``, ``POST /auth/refresh`` and
``POST /hooks/{workflow}``, and per user name on ``POST /auth/token`` (so spreading a
guessing attack over many addresses does not help). Over a limit the answer is 429 in
the JSON error shape with ``Retry-After`` in whole seconds. Each route takes a limit by
adding the dependency ``rate_limit("login")`` (``refresh``, ``hooks``); the name-keyed
login limit is checked by the login route itself, with :func:`take`.

The buckets live in the API process, not in the database: a refused request must cost
almost nothing, and a bucket in the store would turn every request of a flood into a
write on the database the limit protects (SQLite has one writer). With several API
replicas each keeps its own buckets, so the effective limit is the configured one times
the replicas; the account lockout, which is the real bound on password guessing, is in
the database and holds across replicas. The number of buckets is bounded (the least
recently used are forgotten), so a flood from many addresses cannot exhaust memory.

Limits come from the environment as ``COUNT/PERIOD`` (period ``s``, ``sec``, ``min``,
``h``, ``hour``, ``day``) or ``off``: ``PLAIT_RATE_LOGIN`` (default ``30/min`` per
address), ``PLAIT_RATE_LOGIN_USER`` (``10/min`` per user name), ``PLAIT_RATE_REFRESH``
(``60/min``) and ``PLAIT_RATE_HOOKS`` (``600/min``). A burst of ``COUNT`` is allowed,
then requests are admitted at ``COUNT`` per period. The client address is the peer's
(``request.client``): behind a reverse proxy, run uvicorn with ``--forwarded-allow-ips``
for that proxy, or every client shares the proxy's bucket.

The lockout (:class:`Lockout`): after ``PLAIT_LOCKOUT_AFTER`` (5) failed logins in a
row an account is locked for ``PLAIT_LOCKOUT_SECONDS`` (60), doubling with each further
failure up to ``PLAIT_LOCKOUT_MAX_SECONDS`` (3600). A successful login resets it.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from plait.errors import PlaitError
from plait.server import audit
from plait.server.errors import ApiError
from plait.server.services import Services, get_services
from plait.store.accounts import User

EXTRAS_KEY = "rate_limits"
LOCKOUT_KEY = "lockout"
MAX_KEYS = 10_000
_PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600,
            "hour": 3600, "d": 86400, "day": 86400}  # fmt: skip
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*$")

#: name -> (environment variable, default)
LIMITS: dict[str, tuple[str, str]] = {
    "login": ("PLAIT_RATE_LOGIN", "30/min"),
    "login_user": ("PLAIT_RATE_LOGIN_USER", "10/min"),
    "refresh": ("PLAIT_RATE_REFRESH", "60/min"),
    "hooks": ("PLAIT_RATE_HOOKS", "600/min"),
}
#: Limits whose refusals are audited (the first of each run of refusals).
AUDITED = {"login": ("login", "/api/v1/auth/token"), "refresh": ("refresh", "/api/v1/auth/refresh")}


class LimitSettingError(PlaitError):
    """A rate or lockout setting in the environment that cannot be read."""


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` requests per ``period`` seconds, in bursts of up to ``count``."""

    count: int
    period: float

    @classmethod
    def parse(cls, text: str) -> Rate | None:
        """``"10/min"``, ``"5/30s"``, ``"1000/hour"``; ``"off"`` (or ``0/…``) is None."""
        if text.strip().lower() in ("off", "none", "0", ""):
            return None
        found = _RATE.match(text.lower())
        if found is None or found.group(3) not in _PERIODS:
            raise LimitSettingError(f"bad rate {text!r}: expected COUNT/PERIOD such as 10/min")
        count, times = int(found.group(1)), int(found.group(2) or 1)
        if count == 0:
            return None
        if times == 0:
            raise LimitSettingError(f"bad rate {text!r}: the period must not be zero")
        return cls(count, float(times * _PERIODS[found.group(3)]))


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float
    refused: bool = False


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request over its limit: wait ``retry_after`` seconds. ``first`` marks the first
    refusal after an admitted request (the one worth an audit entry)."""

    retry_after: int
    first: bool
    limit: str

    def error(self) -> ApiError:
        return ApiError(
            429,
            f"too many requests: retry in {self.retry_after} s",
            details={"limit": self.limit, "retry_after": self.retry_after},
            headers={"Retry-After": str(self.retry_after)},
        )


class TokenBuckets:
    """One token bucket per key, at ``rate``; thread-safe, bounded to ``max_keys``."""

    def __init__(
        self, rate: Rate, clock: Callable[[], float] = time.monotonic, max_keys: int = MAX_KEYS
    ) -> None:
        self.rate = rate
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str) -> Refusal | None:
        """Admit one request for ``key`` (None) or say how long to wait."""
        per_second = self.rate.count / self.rate.period
        with self._lock:
            now = self._clock()
            bucket = self._buckets.pop(key, None) or _Bucket(float(self.rate.count), now)
            self._buckets[key] = bucket  # most recently used last
            if len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
            elapsed = max(0.0, now - bucket.at)
            bucket.tokens = min(float(self.rate.count), bucket.tokens + elapsed * per_second)
            bucket.at = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                bucket.refused = False
                return None
            first, bucket.refused = not bucket.refused, True
            wait = max(1, math.ceil((1.0 - bucket.tokens) / per_second))
        return Refusal(retry_after=wait, first=first, limit="")


@dataclass
class RateLimits:
    """The limits of one API process, by name (see :data:`LIMITS`); a missing one is
    off. Tests put their own in ``services.extras["rate_limits"]``."""

    buckets: dict[str, TokenBuckets] = field(default_factory=dict)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, clock: Callable[[], float] = time.monotonic
    ) -> RateLimits:
        env = os.environ if environ is None else environ
        found: dict[str, TokenBuckets] = {}
        for name, (variable, default) in LIMITS.items():
            rate = Rate.parse(env.get(variable, default))
            if rate is not None:
                found[name] = TokenBuckets(rate, clock)
        return cls(found)

    def take(self, name: str, key: str) -> Refusal | None:
        limiter = self.buckets.get(name)
        refusal = None if limiter is None else limiter.take(key)
        if refusal is None:
            return None
        return Refusal(refusal.retry_after, refusal.first, name)


@dataclass(frozen=True, slots=True)
class Lockout:
    """Failed logins before a lock, its first length and its cap, in seconds."""

    after: int = 5
    seconds: float = 60.0
    max_seconds: float = 3600.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Lockout:
        env = os.environ if environ is None else environ
        try:
            return cls(
                after=int(env.get("PLAIT_LOCKOUT_AFTER", "5")),
                seconds=float(env.get("PLAIT_LOCKOUT_SECONDS", "60")),
                max_seconds=float(env.get("PLAIT_LOCKOUT_MAX_SECONDS", "3600")),
            )
        except ValueError as exc:
            raise LimitSettingError(f"bad lockout setting: {exc}") from None

    def lock_for(self, failures: int) -> float | None:
        """Seconds to lock after ``failures`` in a row: None below the threshold, then
        ``seconds`` doubling per further failure, capped (``after`` 0 turns it off)."""
        if self.after <= 0 or failures < self.after:
            return None
        doublings = min(failures - self.after, 32)  # 2**32 minutes is past any cap
        return float(min(self.seconds * 2**doublings, self.max_seconds))


def limits(services: Services) -> RateLimits:
    """The process's rate limits, made from the environment on first use."""
    found = services.extras.get(EXTRAS_KEY)
    if not isinstance(found, RateLimits):
        found = services.extras.setdefault(EXTRAS_KEY, RateLimits.from_env())
    assert isinstance(found, RateLimits)
    return found


def lockout(services: Services) -> Lockout:
    """The lockout policy, from ``services.extras`` or the environment."""
    found = services.extras.get(LOCKOUT_KEY)
    return found if isinstance(found, Lockout) else Lockout.from_env()


def record_failure(
    services: Services, request: Request, user: User, now: float, reason: str
) -> float | None:
    """Count a failed password or code for ``user`` under the lockout policy; when it
    locks the account, audit the lockout. Returns the lock's end, if any."""
    count, until = services.accounts.fail_login(user.id, now, lockout(services).lock_for)
    if until is not None:
        details = {"reason": reason, "failures": count, "locked_until": until}
        resource = request.url.path
        audit.record(services, request, "lockout", resource, "success", details, actor=user.name)
    return until


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def take(services: Services, name: str, key: str) -> Refusal | None:
    """Admit one request under limit ``name`` for ``key``, or the refusal."""
    return limits(services).take(name, key)


def rate_limit(name: str) -> Callable[[Request], Awaitable[None]]:
    """A route dependency limiting requests per client address under limit ``name``."""
    if name not in LIMITS:
        raise ValueError(f"unknown rate limit {name!r}")

    async def dependency(request: Request) -> None:
        services = await get_services(request)
        refusal = take(services, name, client_address(request))
        if refusal is None:
            return
        if refusal.first and name in AUDITED:
            action, resource = AUDITED[name]
            details = {"reason": "rate limited", "limit": name}
            await run_in_threadpool(
                audit.record, services, request, action, resource, "denied", details
            )
        raise refusal.error()

    dependency.__name__ = f"rate_limit_{name}"
    return dependency
