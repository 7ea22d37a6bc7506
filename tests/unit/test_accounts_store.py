"""The account store on SQLite and on a fresh PostgreSQL database: users, tokens,
refresh rotation with its compare-and-set, role bindings, and the audit chain under
concurrent appends."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from plait.errors import ConflictError, NotFound, StoreError
from plait.security.audit import AuditEvent, verify_chain
from plait.security.rbac import RoleBinding
from plait.security.tokens import RefreshFamily, hash_token
from plait.store.accounts import AccountStore, AuditFilter
from plait.store.migrate import open_store
from tests.pg import fresh_database

NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def postgres_db() -> Iterator[str]:
    with fresh_database("plait_acct") as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def accounts(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AccountStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'plait.db'}"
    else:
        url = request.getfixturevalue("postgres_db")
        engine = sa.create_engine(url, poolclass=sa.NullPool)
        with engine.begin() as conn:  # a clean schema per test in the module's database
            conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        engine.dispose()
    store = open_store(url)
    try:
        yield AccountStore(store)
    finally:
        store.close()


def test_users(accounts: AccountStore) -> None:
    ann = accounts.create_user("ann", "hash-1", now=NOW)
    with pytest.raises(ConflictError, match="already exists"):
        accounts.create_user("ann", "hash-2")
    assert accounts.find_user("ann") == ann
    assert accounts.find_user("nobody") is None
    accounts.set_password(ann.id, "hash-3")
    assert accounts.record_login_failure(ann.id) == 1
    assert accounts.record_login_failure(ann.id, locked_until=NOW + 60) == 2
    assert accounts.get_user(ann.id).locked_until == NOW + 60
    accounts.record_login_success(ann.id, NOW)
    user = accounts.get_user(ann.id)
    assert (user.password_hash, user.failed_logins, user.last_login_at) == ("hash-3", 0, NOW)
    with pytest.raises(NotFound):
        accounts.set_password(9999, "x")


def test_user_pages_and_ids_are_not_reused(accounts: AccountStore) -> None:
    made = [accounts.create_user(f"u{i}", "h") for i in range(5)]
    first = accounts.list_users(limit=2)
    second = accounts.list_users(first.next_cursor, limit=2)
    third = accounts.list_users(second.next_cursor, limit=2)
    assert [u.name for u in first.items + second.items + third.items] == [u.name for u in made]
    assert third.next_cursor is None
    with pytest.raises(StoreError, match="invalid cursor"):
        accounts.list_users("not-a-cursor")
    accounts.delete_user(made[-1].id)
    assert accounts.create_user("again", "h").id > made[-1].id


def test_api_tokens(accounts: AccountStore) -> None:
    ann = accounts.create_user("ann", "h")
    token = accounts.create_api_token(
        ann.id, "ci", hash_token("plt_x"), "plt_x", ["runs:read", "runs:read"], None, now=NOW
    )
    assert token.scopes == ("runs:read",)
    assert token.user == "ann"
    assert accounts.find_api_token_by_hash(hash_token("plt_x")) == token
    assert accounts.find_api_token_by_hash(hash_token("plt_y")) is None
    accounts.touch_api_token(token.id, NOW + 5)
    assert accounts.get_api_token(token.id).last_used_at == NOW + 5
    assert accounts.revoke_api_token(token.id, now=NOW) is True
    assert accounts.revoke_api_token(token.id, now=NOW) is False
    with pytest.raises(NotFound):
        accounts.revoke_api_token(4242)
    assert [t.id for t in accounts.list_api_tokens(ann.id).items] == [token.id]
    assert accounts.list_api_tokens(ann.id + 1).items == []


def test_refresh_rotation_and_reuse(accounts: AccountStore) -> None:
    ann = accounts.create_user("ann", "h")
    rules = RefreshFamily(ttl=100, max_lifetime=1000)
    token, record = rules.start(str(ann.id), NOW)
    accounts.save_refresh(record)
    assert accounts.session_active(record.family_id, NOW)
    first = accounts.rotate_refresh(hash_token(token), NOW + 1, rules)
    assert first.ok
    assert first.token is not None
    second = accounts.rotate_refresh(hash_token(first.token), NOW + 2, rules)
    assert second.ok
    reused = accounts.rotate_refresh(hash_token(token), NOW + 3, rules)
    assert (reused.ok, reused.reason) == (False, "reused")
    assert not accounts.session_active(record.family_id, NOW + 3)
    assert second.token is not None
    after = accounts.rotate_refresh(hash_token(second.token), NOW + 4, rules)
    assert after.reason == "revoked"
    assert accounts.rotate_refresh("nope", NOW, rules).reason == "unknown"


def test_concurrent_rotation_has_one_winner(accounts: AccountStore) -> None:
    ann = accounts.create_user("ann", "h")
    rules = RefreshFamily()
    token, record = rules.start(str(ann.id), NOW)
    accounts.save_refresh(record)
    results = []
    barrier = threading.Barrier(4)

    def rotate() -> None:
        barrier.wait()
        results.append(accounts.rotate_refresh(hash_token(token), NOW + 1, rules))

    threads = [threading.Thread(target=rotate) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.ok for r in results) == 1


def test_revoking_sessions_and_families(accounts: AccountStore) -> None:
    ann = accounts.create_user("ann", "h")
    rules = RefreshFamily()
    families = []
    for _ in range(2):
        _, record = rules.start(str(ann.id), NOW)
        accounts.save_refresh(record)
        families.append(record.family_id)
    assert accounts.revoke_family(families[0], NOW) == 1
    assert accounts.session_active(families[1], NOW)
    accounts.disable_user(ann.id, now=NOW)
    assert not accounts.session_active(families[1], NOW)
    assert accounts.get_user(ann.id).disabled


def test_role_bindings(accounts: AccountStore) -> None:
    ann = accounts.create_user("ann", "h")
    token = accounts.create_api_token(ann.id, "t", "hash", "plt_", ["admin"], None)
    admin = accounts.grant("user", ann.id, "admin", None, "test")
    accounts.grant("user", ann.id, "operator", "ops", "test")
    accounts.grant("token", token.id, "viewer", "ops", "test")
    with pytest.raises(ConflictError):
        accounts.grant("user", ann.id, "admin", None, "test")
    assert accounts.bindings_for("user", ann.id) == [
        RoleBinding("user:ann", "admin", None),
        RoleBinding("user:ann", "operator", "ops"),
    ]
    assert [b.subject for b in accounts.list_bindings(namespace="ops")] == [
        "user:ann",
        f"token:{token.id}",
    ]
    assert accounts.global_admins() == [ann.id]
    identity = accounts.token_identity("hash")
    assert identity is not None
    assert identity.token_bindings == [RoleBinding(f"token:{token.id}", "viewer", "ops")]
    assert len(identity.owner_bindings) == 2
    accounts.revoke(admin.id)
    with pytest.raises(NotFound):
        accounts.revoke(admin.id)
    accounts.delete_user(ann.id)
    assert accounts.list_bindings() == []
    assert accounts.token_identity("hash") is None


def _event(i: int, actor: str = "ann", outcome: str = "success") -> AuditEvent:
    return AuditEvent(
        at=NOW + i,
        actor=actor,
        action=f"POST /api/v1/things/{i}",
        resource=f"/api/v1/things/{i}",
        outcome=outcome,
        details={"n": i, "text": "ü"},
    )


def test_audit_chain_stays_linear_under_concurrent_appends(accounts: AccountStore) -> None:
    def append(start: int) -> None:
        for i in range(start, start + 10):
            accounts.append_audit(_event(i))

    threads = [threading.Thread(target=append, args=(k * 10,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    chain = list(accounts.export_audit())
    assert [e.seq for e in chain] == list(range(1, 41))
    assert verify_chain(chain).ok


def test_audit_filters_and_pages(accounts: AccountStore) -> None:
    for i in range(6):
        accounts.append_audit(_event(i, actor="ann" if i % 2 else "bob", outcome="denied"))
    page = accounts.audit_entries(AuditFilter(actor="ann"), limit=2)
    assert [e.details["n"] for e in page.items] == [5, 3]
    rest = accounts.audit_entries(AuditFilter(actor="ann"), page.next_cursor, limit=2)
    assert [e.details["n"] for e in rest.items] == [1]
    assert rest.next_cursor is None
    timed = accounts.audit_entries(AuditFilter(since=NOW + 2, until=NOW + 4))
    assert [e.seq for e in timed.items] == [4, 3]
    prefix = accounts.audit_entries(AuditFilter(action="POST /api/v1/things/1"))
    assert [e.seq for e in prefix.items] == [2]
    assert accounts.audit_entries(AuditFilter(outcome="success")).items == []


def test_keyed_audit_chain(accounts: AccountStore) -> None:
    keyed = AccountStore(accounts._sql, audit_key=b"k" * 32)
    for i in range(3):
        keyed.append_audit(_event(i))
    chain = list(keyed.export_audit())
    assert verify_chain(chain, b"k" * 32).ok
    assert not verify_chain(chain).ok
