"""Account lockout with backoff over real HTTP, on a clock the test moves."""

from __future__ import annotations

import httpx
import pytest

from plait.server.bootstrap import create_user
from plait.server.ratelimit import LOCKOUT_KEY, Lockout, RateLimits
from plait.store.accounts import AuditFilter

from .conftest import LiveServer

PASSWORD = "a-long-and-unusual-passphrase"
NOW = 1_900_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(sqlite_server: LiveServer) -> Clock:
    c = Clock()
    services = sqlite_server.services
    services.clock = c
    services.extras["rate_limits"] = RateLimits()  # no rate limits: the lockout alone
    create_user(services, "lou", PASSWORD, role="viewer")
    return c


def login(server: LiveServer, password: str) -> httpx.Response:
    with server.anonymous() as c:
        return c.post("/api/v1/auth/token", data={"username": "lou", "password": password})


def locked_for(server: LiveServer, clock: Clock) -> float | None:
    user = server.services.accounts.find_user("lou")
    assert user is not None
    return None if user.locked_until is None else user.locked_until - clock.now


def test_five_failures_lock_and_the_right_password_is_refused_alike(
    sqlite_server: LiveServer, clock: Clock
) -> None:
    wrong = [login(sqlite_server, "not-the-password") for _ in range(5)]
    assert all(r.status_code == 401 for r in wrong)
    assert locked_for(sqlite_server, clock) == 60
    locked = login(sqlite_server, PASSWORD)
    assert locked.status_code == 401
    assert locked.json() == wrong[0].json()  # a lock does not reveal the account
    assert locked_for(sqlite_server, clock) == 60  # refusals while locked do not extend it
    (entry,) = sqlite_server.services.accounts.audit_entries(AuditFilter(action="lockout")).items
    assert (entry.actor, entry.details["failures"]) == ("lou", 5)

    clock.now += 61
    assert login(sqlite_server, PASSWORD).status_code == 200
    user = sqlite_server.services.accounts.find_user("lou")
    assert user is not None
    assert (user.failed_logins, user.locked_until) == (0, None)


def test_the_lock_doubles_per_further_failure_up_to_the_cap(
    sqlite_server: LiveServer, clock: Clock
) -> None:
    sqlite_server.services.extras[LOCKOUT_KEY] = Lockout(after=2, seconds=10, max_seconds=30)
    seen = []
    for _ in range(5):
        login(sqlite_server, "not-the-password")
        seen.append(locked_for(sqlite_server, clock))
        clock.now += 31  # past any lock, so the next failure counts
    assert seen == [None, 10, 20, 30, 30]


def test_lockout_policy() -> None:
    policy = Lockout()
    assert [policy.lock_for(n) for n in (1, 4, 5, 6, 7, 11, 12, 500)] == [
        None, None, 60, 120, 240, 3600, 3600, 3600,
    ]  # fmt: skip
    assert Lockout(after=0).lock_for(100) is None
    assert Lockout.from_env({"PLAIT_LOCKOUT_AFTER": "3"}).lock_for(3) == 60
