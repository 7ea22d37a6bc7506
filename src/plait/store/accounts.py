"""Accounts in the SQL store: users, API tokens, refresh tokens, role bindings, audit.

One SQLAlchemy Core code path for SQLite and PostgreSQL, on the transactions of the
:class:`~plait.store.sql.SqlStore` it is built on (so SQLite keeps its single writer).
The rules — password policy, token rotation, who may grant what — live in
:mod:`plait.security` and the server; this module only stores and fetches, in domain
words, and applies the compare-and-set the refresh rotation needs.

Subjects of role bindings are users or API tokens, stored as ``(kind, id)``. A global
binding is stored with namespace ``""`` (not NULL, so the unique constraint also holds
for global bindings on both databases) and comes back as ``None``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, delete, func, select, update

from plait.errors import ConflictError, NotFound
from plait.security.audit import AuditEntry, AuditEvent
from plait.security.rbac import RoleBinding
from plait.security.tokens import RefreshFamily, RefreshRecord, RotateResult
from plait.store.accounts_audit import AuditFilter, AuditLog, Page, decode_cursor, encode_cursor
from plait.store.accounts_mfa import MfaState, MfaStore
from plait.store.accounts_records import (
    ApiToken,
    Binding,
    SubjectKind,
    TokenIdentity,
    User,
    binding_from_row,
    refresh_from_row,
    refresh_row,
    token_from_row,
    user_from_row,
)
from plait.store.accounts_sessions import LoginSession, SessionStore
from plait.store.sql import SqlStore
from plait.store.tables import (
    api_tokens,
    login_sessions,
    mfa_recovery_codes,
    refresh_tokens,
    role_bindings,
    user_mfa,
    users,
)

__all__ = [
    "AccountStore",
    "ApiToken",
    "AuditFilter",
    "Binding",
    "LoginSession",
    "MfaState",
    "Page",
    "SubjectKind",
    "TokenIdentity",
    "User",
]


_TOKEN_QUERY = select(api_tokens, users.c.name.label("user_name")).join_from(
    api_tokens, users, api_tokens.c.user_id == users.c.id
)


class AccountStore:
    """Users, credentials, role bindings and the audit log, on a :class:`SqlStore`.

    ``audit_key`` makes the audit chain an HMAC chain (see :mod:`plait.security.audit`);
    without it the chain is plain SHA-256.
    """

    def __init__(self, sql_store: SqlStore, audit_key: bytes | None = None) -> None:
        self._sql = sql_store
        self._hooks = sql_store._hooks
        self._audit = AuditLog(self._hooks, audit_key)
        self.audit_key = audit_key
        #: second factors, sealed with the store's keyring
        self.mfa = MfaStore(self._hooks, sql_store._sealer)
        #: login session details and listings
        self.sessions = SessionStore(self._hooks)

    # -- users ---------------------------------------------------------------------
    def create_user(self, name: str, password_hash: str, now: float | None = None) -> User:
        """A new enabled user; ConflictError if the name is taken."""
        row: dict[str, Any] = {
            "name": name,
            "password_hash": password_hash,
            "disabled": False,
            "created_at": time.time() if now is None else now,
            "failed_logins": 0,
        }
        try:
            with self._hooks.write() as conn:
                user_id = conn.execute(users.insert().returning(users.c.id), row).scalar_one()
        except ConflictError as exc:
            raise ConflictError(f"user {name!r} already exists") from exc.__cause__
        return User(id=user_id, **row)

    def find_user(self, name: str) -> User | None:
        """The user called ``name``, or None."""
        with self._hooks.read() as conn:
            row = conn.execute(select(users).where(users.c.name == name)).mappings().first()
        return None if row is None else user_from_row(row)

    def get_user(self, user_id: int) -> User:
        """The user with ``user_id``; NotFound if there is none."""
        with self._hooks.read() as conn:
            row = conn.execute(select(users).where(users.c.id == user_id)).mappings().first()
        if row is None:
            raise NotFound(f"user {user_id} not found")
        return user_from_row(row)

    def count_users(self) -> int:
        with self._hooks.read() as conn:
            count: int = conn.execute(select(func.count()).select_from(users)).scalar_one()
        return count

    def list_users(self, cursor: str | None = None, limit: int = 100) -> Page[User]:
        """Users in creation order, ``limit`` per page."""
        query = select(users).order_by(users.c.id).limit(limit + 1)
        if cursor:
            query = query.where(users.c.id > decode_cursor(cursor))
        with self._hooks.read() as conn:
            rows = conn.execute(query).mappings().all()
        items = [user_from_row(r) for r in rows[:limit]]
        more = len(rows) > limit and items
        return Page(items, encode_cursor(items[-1].id) if more else None)

    def set_password(self, user_id: int, password_hash: str) -> None:
        """Replace the password hash; the caller revokes sessions if the change demands."""
        self._update_user(user_id, password_hash=password_hash)

    def disable_user(self, user_id: int, disabled: bool = True, now: float | None = None) -> None:
        """Disable (or enable) a user; disabling also ends every login session."""
        self._update_user(user_id, disabled=disabled)
        if disabled:
            self.revoke_sessions(user_id, now)

    def record_login_success(self, user_id: int, now: float) -> None:
        """Note the login and reset the failure count (lockout uses it)."""
        self._update_user(user_id, last_login_at=now, failed_logins=0, locked_until=None)

    def record_login_failure(self, user_id: int, locked_until: float | None = None) -> int:
        """Count a failed password for ``user_id``; returns the failures in a row.

        ``locked_until`` lets a lockout policy (the caller's) refuse logins until then.
        """
        c = users.c
        values: dict[str, Any] = {"failed_logins": c.failed_logins + 1}
        if locked_until is not None:
            values["locked_until"] = locked_until
        with self._hooks.write() as conn:
            count = conn.execute(
                update(users).where(c.id == user_id).values(**values).returning(c.failed_logins)
            ).scalar()
        if count is None:
            raise NotFound(f"user {user_id} not found")
        return int(count)

    def fail_login(
        self, user_id: int, now: float, lock_for: Callable[[int], float | None]
    ) -> tuple[int, float | None]:
        """Count a failed login and, if ``lock_for(failures in a row)`` gives seconds,
        lock the account until ``now`` plus that, in one transaction (so concurrent
        failures each see their own count). Returns the count and the lock's end."""
        c = users.c
        with self._hooks.write() as conn:
            count = conn.execute(
                update(users)
                .where(c.id == user_id)
                .values(failed_logins=c.failed_logins + 1)
                .returning(c.failed_logins)
            ).scalar()
            if count is None:
                raise NotFound(f"user {user_id} not found")
            seconds = lock_for(int(count))
            until = None if seconds is None else now + seconds
            if until is not None:
                conn.execute(update(users).where(c.id == user_id).values(locked_until=until))
        return int(count), until

    def unlock(self, user_id: int) -> None:
        """Lift a lockout and forget the failures (an administrator's decision)."""
        self._update_user(user_id, failed_logins=0, locked_until=None)

    def delete_user(self, user_id: int) -> None:
        """Delete the user with their tokens, sessions and every binding of either."""
        with self._hooks.write() as conn:
            token_ids = select(api_tokens.c.id).where(api_tokens.c.user_id == user_id)
            b = role_bindings.c
            conn.execute(
                delete(role_bindings).where(
                    ((b.subject_kind == "user") & (b.subject_id == user_id))
                    | ((b.subject_kind == "token") & b.subject_id.in_(token_ids))
                )
            )
            conn.execute(delete(api_tokens).where(api_tokens.c.user_id == user_id))
            conn.execute(delete(refresh_tokens).where(refresh_tokens.c.user_id == user_id))
            for table in (login_sessions, mfa_recovery_codes, user_mfa):
                conn.execute(delete(table).where(table.c.user_id == user_id))
            if conn.execute(delete(users).where(users.c.id == user_id)).rowcount != 1:
                raise NotFound(f"user {user_id} not found")

    def _update_user(self, user_id: int, **values: Any) -> None:
        with self._hooks.write() as conn:
            if conn.execute(update(users).where(users.c.id == user_id).values(**values)).rowcount:
                return
        raise NotFound(f"user {user_id} not found")

    # -- API tokens ----------------------------------------------------------------
    def create_api_token(
        self,
        user_id: int,
        name: str,
        token_hash: str,
        prefix: str,
        scopes: Sequence[str],
        expires_at: float | None,
        now: float | None = None,
    ) -> ApiToken:
        """Store a new token (its hash only); the caller shows the token once."""
        row = {
            "name": name,
            "token_hash": token_hash,
            "prefix": prefix,
            "user_id": user_id,
            "scopes": sorted(set(scopes)),
            "expires_at": expires_at,
            "created_at": time.time() if now is None else now,
        }
        with self._hooks.write() as conn:
            token_id = conn.execute(
                api_tokens.insert().returning(api_tokens.c.id), row
            ).scalar_one()
        return self.get_api_token(token_id)

    def get_api_token(self, token_id: int) -> ApiToken:
        with self._hooks.read() as conn:
            row = conn.execute(_TOKEN_QUERY.where(api_tokens.c.id == token_id)).mappings().first()
        if row is None:
            raise NotFound(f"API token {token_id} not found")
        return token_from_row(row)

    def find_api_token_by_hash(self, token_hash: str) -> ApiToken | None:
        with self._hooks.read() as conn:
            query = _TOKEN_QUERY.where(api_tokens.c.token_hash == token_hash)
            row = conn.execute(query).mappings().first()
        return None if row is None else token_from_row(row)

    def list_api_tokens(
        self, user_id: int | None = None, cursor: str | None = None, limit: int = 100
    ) -> Page[ApiToken]:
        """Tokens of ``user_id`` (None: everyone's), revoked ones included, oldest first."""
        query = _TOKEN_QUERY.order_by(api_tokens.c.id).limit(limit + 1)
        if user_id is not None:
            query = query.where(api_tokens.c.user_id == user_id)
        if cursor:
            query = query.where(api_tokens.c.id > decode_cursor(cursor))
        with self._hooks.read() as conn:
            rows = conn.execute(query).mappings().all()
        items = [token_from_row(r) for r in rows[:limit]]
        more = len(rows) > limit and items
        return Page(items, encode_cursor(items[-1].id) if more else None)

    def revoke_api_token(self, token_id: int, now: float | None = None) -> bool:
        """Revoke a token; False if it was already revoked. NotFound if it never existed."""
        at = time.time() if now is None else now
        c = api_tokens.c
        with self._hooks.write() as conn:
            query = update(api_tokens).where(c.id == token_id, c.revoked_at.is_(None))
            if conn.execute(query.values(revoked_at=at)).rowcount == 1:
                return True
            if conn.execute(select(c.id).where(c.id == token_id)).first() is None:
                raise NotFound(f"API token {token_id} not found")
        return False

    def touch_api_token(self, token_id: int, now: float) -> None:
        """Record a use (callers throttle this: it is a write on a read path)."""
        with self._hooks.write() as conn:
            conn.execute(
                update(api_tokens).where(api_tokens.c.id == token_id).values(last_used_at=now)
            )

    # -- refresh tokens ------------------------------------------------------------
    def save_refresh(self, record: RefreshRecord) -> None:
        """Store the first token of a new family (a login)."""
        with self._hooks.write() as conn:
            conn.execute(refresh_tokens.insert(), refresh_row(record))

    def find_refresh(self, token_hash: str) -> RefreshRecord | None:
        with self._hooks.read() as conn:
            row = (
                conn.execute(
                    select(refresh_tokens).where(refresh_tokens.c.token_hash == token_hash)
                )
                .mappings()
                .first()
            )
        return None if row is None else refresh_from_row(row)

    def rotate_refresh(self, token_hash: str, now: float, rules: RefreshFamily) -> RotateResult:
        """Exchange a refresh token by ``rules``: mark it used and store the next one, or
        revoke its family when it was used before. An unknown token is ``unknown``.

        The mark is a compare-and-set (``used_at IS NULL``): when two requests present
        the same token at once, one wins; the loser re-reads the now used record and so
        reports reuse, which revokes the family — two holders of one token is the theft
        signal the rotation exists to catch.
        """
        for _ in range(2):
            with self._hooks.write() as conn:
                result = self._rotate_once(conn, token_hash, now, rules)
            if result is not None:
                return result
        return RotateResult(ok=False, reason="conflict")

    def _rotate_once(
        self, conn: Connection, token_hash: str, now: float, rules: RefreshFamily
    ) -> RotateResult | None:
        r = refresh_tokens.c
        row = conn.execute(select(refresh_tokens).where(r.token_hash == token_hash))
        found = row.mappings().first()
        if found is None:
            return RotateResult(ok=False, reason="unknown")
        result = rules.rotate(refresh_from_row(found), now)
        if result.revoke_family:
            self._revoke_family(conn, found["family_id"], now)
        if not result.ok or result.used_record is None or result.new_record is None:
            return result
        marked = conn.execute(
            update(refresh_tokens)
            .where(r.token_hash == token_hash, r.used_at.is_(None), r.revoked_at.is_(None))
            .values(used_at=result.used_record.used_at)
        )
        if marked.rowcount != 1:
            return None
        conn.execute(refresh_tokens.insert(), refresh_row(result.new_record))
        return result

    def revoke_family(self, family_id: str, now: float | None = None) -> int:
        """Revoke every token of a login session (logout, theft); returns rows changed."""
        with self._hooks.write() as conn:
            return self._revoke_family(conn, family_id, time.time() if now is None else now)

    def revoke_sessions(self, user_id: int, now: float | None = None) -> int:
        """Revoke every login session of a user (disabled, password changed)."""
        r = refresh_tokens.c
        query = update(refresh_tokens).where(r.user_id == user_id, r.revoked_at.is_(None))
        with self._hooks.write() as conn:
            result = conn.execute(query.values(revoked_at=time.time() if now is None else now))
        return int(result.rowcount)

    @staticmethod
    def _revoke_family(conn: Connection, family_id: str, now: float) -> int:
        r = refresh_tokens.c
        query = update(refresh_tokens).where(r.family_id == family_id, r.revoked_at.is_(None))
        return int(conn.execute(query.values(revoked_at=now)).rowcount)

    def session_active(self, family_id: str, now: float) -> bool:
        """True while a login session has a token neither revoked nor past the session's
        end: access tokens of a logged-out session are refused with this."""
        r = refresh_tokens.c
        query = select(r.token_hash).where(
            r.family_id == family_id, r.revoked_at.is_(None), r.family_expires_at > now
        )
        with self._hooks.read() as conn:
            return conn.execute(query.limit(1)).first() is not None

    # -- role bindings -------------------------------------------------------------
    def bindings_for(self, kind: SubjectKind, subject_id: int) -> list[RoleBinding]:
        """The roles held by one user or token, for the authorisation checks."""
        with self._hooks.read() as conn:
            return [b.rbac() for b in self._bindings(conn, kind, subject_id)]

    def list_bindings(
        self,
        kind: SubjectKind | None = None,
        subject_id: int | None = None,
        namespace: str | None = None,
        *,
        global_only: bool = False,
    ) -> list[Binding]:
        """Stored bindings, filtered; bounded by the number of users and tokens."""
        with self._hooks.read() as conn:
            found = self._bindings(conn, kind, subject_id)
        if global_only:
            return [b for b in found if b.namespace is None]
        if namespace is not None:
            return [b for b in found if b.namespace == namespace]
        return found

    def get_binding(self, binding_id: int) -> Binding:
        with self._hooks.read() as conn:
            found = self._bindings(conn, None, None, binding_id)
        if not found:
            raise NotFound(f"role binding {binding_id} not found")
        return found[0]

    def grant(
        self,
        kind: SubjectKind,
        subject_id: int,
        role: str,
        namespace: str | None,
        created_by: str | None,
        now: float | None = None,
    ) -> Binding:
        """Bind ``role`` to the subject; ConflictError if the same binding exists."""
        row = {
            "subject_kind": kind,
            "subject_id": subject_id,
            "role": role,
            "namespace": namespace or "",
            "created_at": time.time() if now is None else now,
            "created_by": created_by,
        }
        where = "globally" if namespace is None else f"in namespace {namespace!r}"
        try:
            with self._hooks.write() as conn:
                query = role_bindings.insert().returning(role_bindings.c.id)
                binding_id = conn.execute(query, row).scalar_one()
        except ConflictError as exc:
            raise ConflictError(f"{kind} {subject_id} already has role {role!r} {where}") from (
                exc.__cause__
            )
        return self.get_binding(binding_id)

    def revoke(self, binding_id: int) -> None:
        """Remove a role binding; NotFound if there is none."""
        with self._hooks.write() as conn:
            gone = conn.execute(delete(role_bindings).where(role_bindings.c.id == binding_id))
            if gone.rowcount != 1:
                raise NotFound(f"role binding {binding_id} not found")

    def global_admins(self) -> list[int]:
        """Ids of enabled users holding ``admin`` globally (the last one is protected)."""
        b, u = role_bindings.c, users.c
        query = (
            select(u.id)
            .join_from(users, role_bindings, (b.subject_kind == "user") & (b.subject_id == u.id))
            .where(b.role == "admin", b.namespace == "", u.disabled.is_(False))
        )
        with self._hooks.read() as conn:
            return [int(i) for i in conn.execute(query).scalars()]

    def _bindings(
        self,
        conn: Connection,
        kind: SubjectKind | None,
        subject_id: int | None,
        binding_id: int | None = None,
    ) -> list[Binding]:
        b = role_bindings.c
        query = select(role_bindings, users.c.name.label("user_name")).outerjoin(
            users, (b.subject_kind == "user") & (b.subject_id == users.c.id)
        )
        if kind is not None:
            query = query.where(b.subject_kind == kind)
        if subject_id is not None:
            query = query.where(b.subject_id == subject_id)
        if binding_id is not None:
            query = query.where(b.id == binding_id)
        return [binding_from_row(r) for r in conn.execute(query.order_by(b.id)).mappings()]

    # -- authentication in one read ------------------------------------------------
    def user_with_bindings(self, user_id: int) -> tuple[User, list[RoleBinding]] | None:
        """The user and their roles in one transaction (the per-request check)."""
        with self._hooks.read() as conn:
            row = conn.execute(select(users).where(users.c.id == user_id)).mappings().first()
            if row is None:
                return None
            bound = self._bindings(conn, "user", user_id)
        return user_from_row(row), [b.rbac() for b in bound]

    def token_identity(self, token_hash: str) -> TokenIdentity | None:
        """An API token, its owner and both sets of roles, in one transaction."""
        with self._hooks.read() as conn:
            query = _TOKEN_QUERY.where(api_tokens.c.token_hash == token_hash)
            row = conn.execute(query).mappings().first()
            if row is None:
                return None
            owner = conn.execute(select(users).where(users.c.id == row["user_id"]))
            owner_row = owner.mappings().one()
            token_bound = self._bindings(conn, "token", row["id"])
            owner_bound = self._bindings(conn, "user", row["user_id"])
        return TokenIdentity(
            token=token_from_row(row),
            owner=user_from_row(owner_row),
            token_bindings=[b.rbac() for b in token_bound],
            owner_bindings=[b.rbac() for b in owner_bound],
        )

    # -- audit ---------------------------------------------------------------------
    def append_audit(self, event: AuditEvent) -> AuditEntry:
        """Seal ``event`` into the hash chain (serialised across processes)."""
        return self._audit.append(event)

    def audit_entries(
        self, filter: AuditFilter | None = None, cursor: str | None = None, limit: int = 100
    ) -> Page[AuditEntry]:
        """Audit entries, newest first, filtered and paged."""
        return self._audit.entries(filter or AuditFilter(), cursor, limit)

    def export_audit(self, after_seq: int = 0) -> Iterator[AuditEntry]:
        """Every audit entry in chain order, streamed (export and verification)."""
        return self._audit.export(after_seq)
