"""Refresh-token rotation with reuse detection, API tokens and their scopes."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from plait.security.tokens import (
    SCOPES,
    RefreshFamily,
    RefreshRecord,
    api_token_usable,
    expand_scopes,
    hash_token,
    is_api_token,
    new_api_token,
    new_refresh_token,
    scope_allows,
    validate_scopes,
)

NOW = 1_700_000_000
DAY = 24 * 3600


class FakeStore:
    """The store's side of rotation, as the server will do it: records by hash."""

    def __init__(self) -> None:
        self.rows: dict[str, RefreshRecord] = {}

    def add(self, record: RefreshRecord) -> None:
        self.rows[record.token_hash] = record

    def revoke_family(self, family_id: str, at: int) -> None:
        for key, row in self.rows.items():
            if row.family_id == family_id:
                self.rows[key] = replace(row, revoked_at=at)

    def present(self, family: RefreshFamily, token: str, now: int) -> str | None:
        """What the refresh endpoint does; returns the new token or None."""
        record = self.rows[hash_token(token)]
        result = family.rotate(record, now)
        if result.revoke_family:
            self.revoke_family(record.family_id, now)
        if not result.ok:
            return None
        assert result.used_record is not None
        assert result.new_record is not None
        self.add(result.used_record)
        self.add(result.new_record)
        return result.token


def test_opaque_token_hash_is_sha256_hex() -> None:
    token, token_hash = new_refresh_token()
    assert token_hash == hashlib.sha256(token.encode()).hexdigest() == hash_token(token)
    assert len(token) >= 43  # 32 bytes of url-safe base64


def test_refresh_tokens_are_unique() -> None:
    assert len({new_refresh_token()[0] for _ in range(50)}) == 50


def test_start_creates_a_family() -> None:
    family = RefreshFamily(ttl=DAY, max_lifetime=7 * DAY)
    token, record = family.start("alice", NOW)
    assert record.token_hash == hash_token(token)
    assert record.subject == "alice"
    assert record.expires_at == NOW + DAY
    assert record.family_expires_at == NOW + 7 * DAY
    assert record.used_at is None
    assert record.revoked_at is None


def test_rotation_issues_next_token_in_same_family() -> None:
    family = RefreshFamily(ttl=DAY, max_lifetime=7 * DAY)
    token, record = family.start("alice", NOW)
    result = family.rotate(record, NOW + 60)
    assert result.ok
    assert result.reason == "rotated"
    assert not result.revoke_family
    assert result.token is not None
    assert result.token != token
    assert result.used_record == replace(record, used_at=NOW + 60)
    new = result.new_record
    assert new is not None
    assert new.token_hash == hash_token(result.token)
    assert new.family_id == record.family_id
    assert new.subject == "alice"
    assert new.expires_at == NOW + 60 + DAY
    assert new.family_expires_at == record.family_expires_at


def test_rotation_never_extends_past_the_family_lifetime() -> None:
    family = RefreshFamily(ttl=DAY, max_lifetime=DAY + 3600)
    _, record = family.start("alice", NOW)
    result = family.rotate(record, NOW + 7200)
    assert result.new_record is not None
    assert result.new_record.expires_at == NOW + DAY + 3600


def test_reuse_of_a_used_token_revokes_the_whole_family() -> None:
    family = RefreshFamily()
    store = FakeStore()
    first, record = family.start("alice", NOW)
    store.add(record)
    second = store.present(family, first, NOW + 10)  # the legitimate client
    assert second is not None
    third = store.present(family, second, NOW + 20)
    assert third is not None
    # An attacker replays the first token: theft detected, the session dies.
    assert store.present(family, first, NOW + 30) is None
    assert all(row.revoked_at == NOW + 30 for row in store.rows.values())
    # The legitimate client's current token no longer works either.
    assert store.present(family, third, NOW + 40) is None


def test_reuse_result_fields() -> None:
    family = RefreshFamily()
    _, record = family.start("alice", NOW)
    result = family.rotate(replace(record, used_at=NOW + 1), NOW + 2)
    assert not result.ok
    assert result.reason == "reused"
    assert result.revoke_family
    assert result.token is None
    assert result.new_record is None
    assert result.used_record is None


def test_reuse_detected_even_after_expiry() -> None:
    family = RefreshFamily(ttl=DAY, max_lifetime=2 * DAY)
    _, record = family.start("alice", NOW)
    used = replace(record, used_at=NOW + 1)
    result = family.rotate(used, NOW + 10 * DAY)
    assert result.reason == "reused"
    assert result.revoke_family


def test_other_families_are_untouched() -> None:
    family = RefreshFamily()
    store = FakeStore()
    a_token, a = family.start("alice", NOW)
    b_token, b = family.start("alice", NOW)  # a second device
    store.add(a)
    store.add(b)
    assert store.present(family, a_token, NOW + 1) is not None
    assert store.present(family, a_token, NOW + 2) is None  # reuse in family a
    assert store.present(family, b_token, NOW + 3) is not None


def test_revoked_family_refused_without_revoking_again() -> None:
    family = RefreshFamily()
    _, record = family.start("alice", NOW)
    result = family.rotate(replace(record, revoked_at=NOW + 5), NOW + 10)
    assert not result.ok
    assert result.reason == "revoked"
    assert not result.revoke_family


def test_idle_expiry() -> None:
    family = RefreshFamily(ttl=DAY, max_lifetime=30 * DAY)
    _, record = family.start("alice", NOW)
    assert family.rotate(record, NOW + DAY - 1).ok
    result = family.rotate(record, NOW + DAY)
    assert not result.ok
    assert result.reason == "expired"
    assert not result.revoke_family


def test_session_lifetime_expiry() -> None:
    family = RefreshFamily(ttl=DAY, max_lifetime=3 * DAY)
    _, record = family.start("alice", NOW)
    late = replace(record, expires_at=NOW + 10 * DAY)  # however the row was extended
    result = family.rotate(late, NOW + 3 * DAY)
    assert not result.ok
    assert result.reason == "session_expired"


def test_lost_race_reports_reuse_on_reread() -> None:
    """Two concurrent refreshes: the second's compare-and-set fails; re-read shows reuse."""
    family = RefreshFamily()
    _, record = family.start("alice", NOW)
    winner = family.rotate(record, NOW + 1)
    assert winner.ok
    assert winner.used_record is not None
    loser = family.rotate(winner.used_record, NOW + 1)
    assert loser.reason == "reused"
    assert loser.revoke_family


# --- API tokens ----------------------------------------------------------------------


def test_api_token_shape() -> None:
    token, token_hash, display = new_api_token()
    assert token.startswith("plt_")
    assert len(token) >= 4 + 43
    assert token_hash == hash_token(token)
    assert display == token[:10]
    assert token.startswith(display)
    assert is_api_token(token)


def test_api_token_custom_prefix() -> None:
    token, _, display = new_api_token(prefix="ci_")
    assert token.startswith("ci_")
    assert display == token[:9]
    assert is_api_token(token, prefix="ci_")
    assert not is_api_token(token)


def test_jwt_is_not_an_api_token() -> None:
    assert not is_api_token("eyJhbGciOiJIUzI1NiJ9.e30.sig")


def test_api_tokens_are_unique() -> None:
    assert len({new_api_token()[0] for _ in range(50)}) == 50


@pytest.mark.parametrize(
    ("expires_at", "revoked_at", "now", "usable"),
    [
        (None, None, NOW, True),
        (NOW + 1, None, NOW, True),
        (NOW, None, NOW, False),
        (NOW - 1, None, NOW, False),
        (None, NOW - 100, NOW, False),
        (NOW + DAY, NOW - 1, NOW, False),
    ],
)
def test_api_token_usable(
    expires_at: int | None, revoked_at: int | None, now: int, usable: bool
) -> None:
    assert api_token_usable(expires_at, revoked_at, now) is usable


# --- scopes --------------------------------------------------------------------------


def test_scope_vocabulary() -> None:
    assert {
        "workflows:read",
        "workflows:write",
        "runs:read",
        "runs:write",
        "runs:approve",
        "secrets:write",
        "admin",
    } <= SCOPES


@pytest.mark.parametrize(
    ("scopes", "needed", "allowed"),
    [
        (["runs:read"], "runs:read", True),
        (["runs:read"], "runs:write", False),
        (["runs:write"], "runs:read", True),
        (["runs:write"], "runs:approve", False),
        (["runs:approve"], "runs:read", True),
        (["runs:approve"], "runs:write", False),
        (["workflows:write"], "workflows:read", True),
        (["workflows:read"], "workflows:write", False),
        (["workflows:write"], "runs:write", False),
        (["secrets:write"], "secrets:read", True),
        (["secrets:read"], "secrets:write", False),
        (["events:write"], "runs:write", False),
        (["admin"], "secrets:write", True),
        (["admin"], "runs:approve", True),
        (["admin"], "admin", True),
        (["runs:write", "workflows:write", "secrets:write"], "admin", False),
        ([], "runs:read", False),
        (["runs:read"], "nonsense:scope", False),
        (["nonsense:scope"], "nonsense:scope", False),
    ],
)
def test_scope_allows(scopes: list[str], needed: str, allowed: bool) -> None:
    assert scope_allows(scopes, needed) is allowed


def test_admin_expands_to_every_scope() -> None:
    assert expand_scopes(["admin"]) == SCOPES


def test_validate_scopes_names_unknown_ones() -> None:
    assert validate_scopes(["runs:read", "workflows:write"]) == []
    problems = validate_scopes(["runs:read", "runs:delete", "root"])
    assert len(problems) == 2
    assert problems[0].startswith("unknown scope 'runs:delete' (known: admin, events:write")
    assert "'root'" in problems[1]
