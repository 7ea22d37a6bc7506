"""Rate limits: the token buckets alone, and 429 with Retry-After over real HTTP on
login, refresh and webhook floods."""

from __future__ import annotations

import httpx
import pytest

from plait.server.bootstrap import create_user
from plait.server.ratelimit import LimitSettingError, Rate, RateLimits, TokenBuckets
from plait.store.accounts import AuditFilter

from .conftest import LiveServer

PASSWORD = "a-long-and-unusual-passphrase"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rates_are_parsed() -> None:
    assert Rate.parse("10/min") == Rate(10, 60.0)
    assert Rate.parse("5/30s") == Rate(5, 30.0)
    assert Rate.parse("1000 / hour") == Rate(1000, 3600.0)
    assert Rate.parse("off") is None
    assert Rate.parse("0/min") is None
    for bad in ("ten/min", "10/fortnight", "10", "10/0s"):
        with pytest.raises(LimitSettingError):
            Rate.parse(bad)
    limits = RateLimits.from_env({"PLAIT_RATE_HOOKS": "off", "PLAIT_RATE_LOGIN": "2/s"})
    assert "hooks" not in limits.buckets
    assert limits.buckets["login"].rate == Rate(2, 1.0)
    assert limits.buckets["refresh"].rate == Rate(60, 60.0)


def test_a_bucket_allows_a_burst_then_refills() -> None:
    clock = Clock()
    buckets = TokenBuckets(Rate(3, 60), clock)
    assert [buckets.take("a") for _ in range(3)] == [None, None, None]
    first, second = buckets.take("a"), buckets.take("a")
    assert first is not None
    assert second is not None
    assert (first.retry_after, first.first, second.first) == (20, True, False)
    assert buckets.take("b") is None  # keys are independent
    clock.now += 20
    assert buckets.take("a") is None
    assert buckets.take("a") is not None


def test_the_number_of_buckets_is_bounded() -> None:
    buckets = TokenBuckets(Rate(1, 60), Clock(), max_keys=10)
    for n in range(100):
        buckets.take(str(n))
    assert len(buckets._buckets) == 10


def limit(server: LiveServer, name: str, rate: Rate) -> None:
    server.services.extras["rate_limits"] = RateLimits({name: TokenBuckets(rate)})


def assert_429(r: httpx.Response) -> None:
    assert r.status_code == 429, r.text
    assert int(r.headers["retry-after"]) >= 1
    assert r.json()["error"]["code"] == "rate_limited"


def test_a_login_flood_gets_429(sqlite_server: LiveServer) -> None:
    limit(sqlite_server, "login", Rate(3, 60))
    form = {"username": "nobody", "password": "whatever-it-is"}
    with sqlite_server.anonymous() as c:
        answers = [c.post("/api/v1/auth/token", data=form) for _ in range(6)]
    assert [r.status_code for r in answers] == [401, 401, 401, 429, 429, 429]
    assert_429(answers[3])
    refused = [
        e
        for e in sqlite_server.services.accounts.audit_entries(AuditFilter(action="login")).items
        if e.details.get("reason") == "rate limited"
    ]
    assert len(refused) == 1  # the first refusal of a flood, not every one


def test_logins_are_limited_per_user_name(sqlite_server: LiveServer) -> None:
    create_user(sqlite_server.services, "una", PASSWORD, role="viewer")
    limit(sqlite_server, "login_user", Rate(2, 60))
    with sqlite_server.anonymous() as c:
        for _ in range(2):
            c.post("/api/v1/auth/token", data={"username": "una", "password": "wrong-one-here"})
        right = c.post("/api/v1/auth/token", data={"username": "UNA", "password": PASSWORD})
        assert_429(right)
        other = c.post("/api/v1/auth/token", data={"username": "admin", "password": "x" * 12})
        assert other.status_code == 401


def test_refresh_and_webhook_floods_get_429(sqlite_server: LiveServer) -> None:
    sqlite_server.services.extras["rate_limits"] = RateLimits(
        {"refresh": TokenBuckets(Rate(2, 60)), "hooks": TokenBuckets(Rate(2, 60))}
    )
    with sqlite_server.anonymous() as c:
        refreshes = [
            c.post("/api/v1/auth/refresh", json={"refresh_token": "forged"}) for _ in range(3)
        ]
        hooks = [c.post("/api/v1/hooks/nothing-here", content=b"{}") for _ in range(3)]
    assert [r.status_code for r in refreshes] == [401, 401, 429]
    assert [r.status_code for r in hooks] == [404, 404, 429]
    assert_429(refreshes[2])
    assert_429(hooks[2])
