"""Creating accounts with the policy applied: the first admin, the CLI and the API.

Every path that makes a user — ``plait users create``, ``POST /api/v1/users``, the
first start with ``PLAIT_ADMIN_USER`` / ``PLAIT_ADMIN_PASSWORD`` and the test fixtures —
goes through :func:`create_user`, so the name rules and the password policy
(:func:`plait.security.passwords.check_password`) cannot be skipped by one of them.
There is no default password anywhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from plait.errors import ConflictError, PlaitError
from plait.security.passwords import check_password, hash_password
from plait.security.rbac import ROLES
from plait.server.services import Services

ADMIN_USER_ENV = "PLAIT_ADMIN_USER"
ADMIN_PASSWORD_ENV = "PLAIT_ADMIN_PASSWORD"

# Letters, digits and . _ @ -: fits an e-mail address or a login name, and never needs
# quoting in a URL path, a shell or a log line.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,99}")
_NAMESPACE = re.compile(r"[a-z0-9][a-z0-9_-]{0,199}")


class AccountError(PlaitError):
    """A user cannot be created or changed as asked; the message says why."""


def check_username(name: str) -> list[str]:
    """Why ``name`` cannot be a user name; empty if it can."""
    if _NAME.fullmatch(name):
        return []
    return ["a user name is 1 to 100 letters, digits and . _ @ -, starting with a letter or digit"]


def check_namespace(namespace: str) -> list[str]:
    """Why ``namespace`` is not a namespace name (``[a-z0-9][a-z0-9_-]*``)."""
    if _NAMESPACE.fullmatch(namespace):
        return []
    return [f"invalid namespace {namespace!r}: use lower-case letters, digits, '-' and '_'"]


def password_problems(name: str, password: str) -> str | None:
    """One message listing everything wrong with ``password`` for user ``name``."""
    problems = check_password(password, name)
    return "the password " + "; ".join(problems) if problems else None


def create_user(
    services: Services,
    name: str,
    password: str,
    *,
    role: str | None = None,
    admin: bool = False,
    namespace: str | None = None,
    created_by: str | None = None,
) -> int:
    """Create a user (argon2id hash) and bind ``role`` (``admin=True``: ``admin``) in
    ``namespace`` or globally; returns the new user's id.

    Raises :class:`AccountError` for a bad name, role or namespace, or a weak password
    (every problem in one message), and ConflictError if the name is taken.
    """
    role = "admin" if admin else role
    problems = check_username(name)
    if role is not None and role not in ROLES:
        problems.append(f"unknown role {role!r} (known: {', '.join(ROLES)})")
    if namespace is not None:
        problems.extend(check_namespace(namespace))
    weak = password_problems(name, password)
    if weak:
        problems.append(weak)
    if problems:
        raise AccountError("; ".join(problems))
    accounts = services.accounts
    user = accounts.create_user(name, hash_password(password), now=services.clock())
    if role is not None:
        try:
            accounts.grant("user", user.id, role, namespace, created_by, now=services.clock())
        except PlaitError:
            accounts.delete_user(user.id)  # no half-made account without its role
            raise
    return user.id


def ensure_first_admin(services: Services, environ: Mapping[str, str]) -> str | None:
    """On a store without users, create the first admin from ``PLAIT_ADMIN_USER`` and
    ``PLAIT_ADMIN_PASSWORD``; return a message saying what happened (None when there
    are users already, so nothing needs saying).

    Without both variables nothing is created and the message tells how to create the
    admin; a weak password is refused with the policy's reasons, not weakened.
    """
    if services.accounts.count_users() > 0:
        return None
    name = environ.get(ADMIN_USER_ENV, "").strip()
    password = environ.get(ADMIN_PASSWORD_ENV, "")
    if not name or not password:
        return (
            "no users yet: create the first admin with `plait users create NAME --admin` "
            f"or set {ADMIN_USER_ENV} and {ADMIN_PASSWORD_ENV} before starting the server "
            "(there is no default password)"
        )
    try:
        create_user(services, name, password, admin=True, created_by="bootstrap")
    except AccountError as exc:
        return f"first admin not created from {ADMIN_USER_ENV}: {exc}"
    except ConflictError:
        return None  # another process created it first
    return f"created the first admin {name!r} from {ADMIN_USER_ENV} and {ADMIN_PASSWORD_ENV}"
