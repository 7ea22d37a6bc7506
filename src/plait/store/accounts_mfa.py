"""The second factor in the SQL store: a user's TOTP secret and recovery codes.

The secret is sealed with the store's keyring (AES-256-GCM), since the server needs it
in the clear to check a code; recovery codes are kept as SHA-256 hashes only. The
checks themselves (:mod:`plait.security.totp`) belong to the caller; this module
stores, and applies the two compare-and-sets that make codes single-use across
processes: a time step is taken only if it is later than the last one taken, and a
recovery code is marked used only if it was unused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, delete, func, insert, or_, select, update

from plait.errors import ConflictError, StoreError
from plait.store.base import Sealer
from plait.store.lite import StoreHooks as Hooks
from plait.store.tables import mfa_recovery_codes, user_mfa


@dataclass(frozen=True, slots=True)
class MfaState:
    """A user's second factor: ``active`` once confirmed, pending before."""

    user_id: int
    secret: str
    active: bool
    created_at: float
    activated_at: float | None
    last_step: int | None
    recovery_left: int


class MfaStore:
    """TOTP secrets and recovery codes of users (see the module docstring)."""

    def __init__(self, hooks: Hooks, sealer: Sealer | None) -> None:
        self._hooks = hooks
        self._sealer = sealer

    def _seal(self, secret: str) -> bytes:
        if self._sealer is None:
            raise StoreError("the store has no keyring: a TOTP secret cannot be stored")
        return self._sealer.seal(secret.encode())

    def get(self, user_id: int) -> MfaState | None:
        """The user's second factor (secret unsealed), or None if never enrolled."""
        m, r = user_mfa.c, mfa_recovery_codes.c
        left = (
            select(func.count()).where(r.user_id == user_id, r.used_at.is_(None)).scalar_subquery()
        )
        with self._hooks.read() as conn:
            row = conn.execute(select(user_mfa, left.label("left")).where(m.user_id == user_id))
            found = row.mappings().first()
        if found is None:
            return None
        if self._sealer is None:
            raise StoreError("the store has no keyring: the TOTP secret cannot be read")
        return MfaState(
            user_id=user_id,
            secret=self._sealer.unseal(found["sealed_secret"]).decode(),
            active=bool(found["active"]),
            created_at=found["created_at"],
            activated_at=found["activated_at"],
            last_step=found["last_step"],
            recovery_left=int(found["left"] or 0),
        )

    def is_active(self, user_id: int) -> bool:
        """True if the user must give a second factor to log in (no unsealing)."""
        m = user_mfa.c
        with self._hooks.read() as conn:
            row = conn.execute(select(m.active).where(m.user_id == user_id)).first()
        return row is not None and bool(row[0])

    def start(self, user_id: int, secret: str, now: float) -> None:
        """Store a pending secret, replacing a pending one; an active one is kept."""
        sealed = self._seal(secret)
        m = user_mfa.c
        with self._hooks.write() as conn:
            conn.execute(delete(user_mfa).where(m.user_id == user_id, m.active.is_(False)))
            if conn.execute(select(m.user_id).where(m.user_id == user_id)).first() is not None:
                raise ConflictError("the second factor is already active; disable it first")
            conn.execute(
                insert(user_mfa).values(
                    user_id=user_id, sealed_secret=sealed, active=False, created_at=now
                )
            )

    def activate(self, user_id: int, step: int, recovery_hashes: Sequence[str], now: float) -> bool:
        """Make the pending secret active, taking ``step`` as used and storing new
        recovery code hashes; False if there was no pending secret (a race lost)."""
        m = user_mfa.c
        with self._hooks.write() as conn:
            done = conn.execute(
                update(user_mfa)
                .where(m.user_id == user_id, m.active.is_(False))
                .values(active=True, activated_at=now, last_step=step)
            )
            if done.rowcount != 1:
                return False
            self._replace_codes(conn, user_id, recovery_hashes)
        return True

    def take_step(self, user_id: int, step: int) -> bool:
        """Record ``step`` as used if it is later than the last one: False is a replay."""
        m = user_mfa.c
        query = (
            update(user_mfa)
            .where(m.user_id == user_id, or_(m.last_step.is_(None), m.last_step < step))
            .values(last_step=step)
        )
        with self._hooks.write() as conn:
            return bool(conn.execute(query).rowcount == 1)

    def unused_codes(self, user_id: int) -> list[str]:
        """Hashes of the user's unused recovery codes."""
        r = mfa_recovery_codes.c
        query = select(r.code_hash).where(r.user_id == user_id, r.used_at.is_(None))
        with self._hooks.read() as conn:
            return [str(h) for h in conn.execute(query.order_by(r.code_hash)).scalars()]

    def use_code(self, user_id: int, code_hash: str, now: float) -> bool:
        """Mark a recovery code used; False if it was used already (or never existed)."""
        r = mfa_recovery_codes.c
        query = (
            update(mfa_recovery_codes)
            .where(r.user_id == user_id, r.code_hash == code_hash, r.used_at.is_(None))
            .values(used_at=now)
        )
        with self._hooks.write() as conn:
            return bool(conn.execute(query).rowcount == 1)

    def remove(self, user_id: int) -> bool:
        """Turn the second factor off; False if there was none."""
        with self._hooks.write() as conn:
            conn.execute(delete(mfa_recovery_codes).where(mfa_recovery_codes.c.user_id == user_id))
            gone = conn.execute(delete(user_mfa).where(user_mfa.c.user_id == user_id))
        return bool(gone.rowcount)

    @staticmethod
    def _replace_codes(conn: Connection, user_id: int, hashes: Sequence[str]) -> None:
        conn.execute(delete(mfa_recovery_codes).where(mfa_recovery_codes.c.user_id == user_id))
        if hashes:
            rows = [{"user_id": user_id, "code_hash": h, "used_at": None} for h in hashes]
            conn.execute(insert(mfa_recovery_codes), rows)
