"""Login sessions in the SQL store: what a user sees in ``GET /auth/sessions``.

A session is a refresh-token family (see :class:`~plait.security.tokens.RefreshFamily`):
it is active while one of its tokens is unrevoked and the family has not expired —
the test :meth:`AccountStore.session_active` makes on every request. Its times come
from its tokens (each refresh issues one); ``login_sessions`` adds what only the login
knew: the client's user agent and address, and which second factor was given.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, insert, select

from plait.store.lite import StoreHooks as Hooks
from plait.store.tables import login_sessions, refresh_tokens, users

#: A listing is bounded: a user with more live sessions than this has a leak to fix.
MAX_LISTED = 500


@dataclass(frozen=True, slots=True)
class LoginSession:
    """One active login session; ``id`` is its refresh family."""

    id: str
    user_id: int
    user: str
    created_at: float
    last_used_at: float
    expires_at: float
    user_agent: str | None = None
    source_ip: str | None = None
    second_factor: str | None = None


class SessionStore:
    """Details and listings of login sessions (see the module docstring)."""

    def __init__(self, hooks: Hooks) -> None:
        self._hooks = hooks

    def record(
        self,
        family_id: str,
        user_id: int,
        now: float,
        *,
        user_agent: str | None = None,
        source_ip: str | None = None,
        second_factor: str | None = None,
    ) -> None:
        """Note the details of a new session (called right after the login)."""
        row = {
            "family_id": family_id,
            "user_id": user_id,
            "created_at": now,
            "user_agent": None if user_agent is None else user_agent[:300],
            "source_ip": None if source_ip is None else source_ip[:64],
            "second_factor": second_factor,
        }
        with self._hooks.write() as conn:
            conn.execute(insert(login_sessions), row)

    def active(
        self, now: float, user_id: int | None = None, family_id: str | None = None
    ) -> list[LoginSession]:
        """Active sessions, most recently used first; of one user or one family."""
        r, s = refresh_tokens.c, login_sessions.c
        live = select(
            r.family_id,
            r.user_id,
            func.min(r.issued_at).label("first"),
            func.max(r.issued_at).label("last"),
            func.max(r.family_expires_at).label("expires"),
        ).where(r.revoked_at.is_(None), r.family_expires_at > now)
        if user_id is not None:
            live = live.where(r.user_id == user_id)
        if family_id is not None:
            live = live.where(r.family_id == family_id)
        agg = live.group_by(r.family_id, r.user_id).subquery()
        query = (
            select(agg, users.c.name, s.created_at, s.user_agent, s.source_ip, s.second_factor)
            .join_from(agg, users, users.c.id == agg.c.user_id)
            .outerjoin(login_sessions, s.family_id == agg.c.family_id)
            .order_by(agg.c.last.desc(), agg.c.family_id)
            .limit(MAX_LISTED)
        )
        with self._hooks.read() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            LoginSession(
                id=row["family_id"],
                user_id=row["user_id"],
                user=row["name"],
                created_at=row["created_at"] if row["created_at"] is not None else row["first"],
                last_used_at=row["last"],
                expires_at=row["expires"],
                user_agent=row["user_agent"],
                source_ip=row["source_ip"],
                second_factor=row["second_factor"],
            )
            for row in rows
        ]

    def get(self, family_id: str, now: float) -> LoginSession | None:
        """One active session, or None if it ended or never existed."""
        found = self.active(now, family_id=family_id)
        return found[0] if found else None
