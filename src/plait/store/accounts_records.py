"""The records the account store hands out, and how they are read from rows.

Frozen dataclasses: the server turns them into pydantic response models at the edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import RowMapping

from plait.security.rbac import RoleBinding
from plait.security.tokens import RefreshRecord

SubjectKind = Literal["user", "token"]


@dataclass(frozen=True, slots=True)
class User:
    """A user account; ``password_hash`` is argon2id and never leaves the server."""

    id: int
    name: str
    password_hash: str
    disabled: bool
    created_at: float
    last_login_at: float | None = None
    failed_logins: int = 0
    locked_until: float | None = None


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A stored API token: only its hash is kept, ``prefix`` tells tokens apart."""

    id: int
    name: str
    prefix: str
    user_id: int
    user: str
    scopes: tuple[str, ...]
    expires_at: float | None
    revoked_at: float | None
    created_at: float
    last_used_at: float | None = None


@dataclass(frozen=True, slots=True)
class Binding:
    """A stored role binding; ``subject`` is ``user:NAME`` or ``token:ID``."""

    id: int
    subject_kind: SubjectKind
    subject_id: int
    subject: str
    role: str
    namespace: str | None
    created_at: float
    created_by: str | None

    def rbac(self) -> RoleBinding:
        """The binding as the authorisation checks in :mod:`plait.security.rbac` take it."""
        return RoleBinding(self.subject, self.role, self.namespace)


@dataclass(frozen=True, slots=True)
class TokenIdentity:
    """Everything one request authenticated by an API token needs, read together."""

    token: ApiToken
    owner: User
    token_bindings: list[RoleBinding]
    owner_bindings: list[RoleBinding]


def user_from_row(row: RowMapping) -> User:
    return User(
        id=row["id"],
        name=row["name"],
        password_hash=row["password_hash"],
        disabled=bool(row["disabled"]),
        created_at=row["created_at"],
        last_login_at=row["last_login_at"],
        failed_logins=row["failed_logins"],
        locked_until=row["locked_until"],
    )


def token_from_row(row: RowMapping) -> ApiToken:
    return ApiToken(
        id=row["id"],
        name=row["name"],
        prefix=row["prefix"],
        user_id=row["user_id"],
        user=row["user_name"],
        scopes=tuple(row["scopes"] or ()),
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
    )


def refresh_from_row(row: RowMapping) -> RefreshRecord:
    def whole(value: float | None) -> int | None:
        return None if value is None else int(value)

    return RefreshRecord(
        token_hash=row["token_hash"],
        family_id=row["family_id"],
        subject=str(row["user_id"]),
        issued_at=int(row["issued_at"]),
        expires_at=int(row["expires_at"]),
        family_expires_at=int(row["family_expires_at"]),
        used_at=whole(row["used_at"]),
        revoked_at=whole(row["revoked_at"]),
    )


def refresh_row(record: RefreshRecord) -> dict[str, Any]:
    return {
        "token_hash": record.token_hash,
        "family_id": record.family_id,
        "user_id": int(record.subject),
        "issued_at": record.issued_at,
        "expires_at": record.expires_at,
        "family_expires_at": record.family_expires_at,
        "used_at": record.used_at,
        "revoked_at": record.revoked_at,
    }


def binding_from_row(row: RowMapping) -> Binding:
    kind: SubjectKind = "user" if row["subject_kind"] == "user" else "token"
    label = row["user_name"] if kind == "user" else None
    return Binding(
        id=row["id"],
        subject_kind=kind,
        subject_id=row["subject_id"],
        subject=f"{kind}:{label if label is not None else row['subject_id']}",
        role=row["role"],
        namespace=row["namespace"] or None,
        created_at=row["created_at"],
        created_by=row["created_by"],
    )
