"""Roles, permissions and the checks every endpoint makes.

Four roles in a strict hierarchy, each including everything below it::

    viewer  ⊂  operator  ⊂  editor  ⊂  admin
    read       + run,         + deploy,     + users, roles,
               cancel,        rollback,     tokens, audit
               retry,         secrets
               approve

Editors may also run, as in n8n (a project editor executes the workflows it edits) and
Kestra (its editor role includes executions): whoever can deploy a workflow can give it
a webhook or a schedule and so run it anyway, and withholding the button only adds
friction. A linear hierarchy also makes "a role above one's own" well defined, which
the escalation guard :func:`can_grant` relies on.

Editors write secrets in their namespace: workflows need credentials, and an editor
could read any secret the namespace holds by deploying a step that uses it, so keeping
the write away from them would protect nothing.

A binding applies in one namespace or, with ``namespace=None``, everywhere. Namespaces
are flat names (``[a-z0-9][a-z0-9_-]*``), so a namespace binding covers exactly that
namespace. Resources that belong to no namespace (users, the audit log, the role list)
are checked with ``namespace=None`` and need a global binding.

A token adds two limits: its scopes (``effective = role permissions ∩ scopes``) and,
when the token has bindings of its own, those of its owner — so a token never exceeds
what its owner may do today, even after the owner lost a role. ``tokens:manage`` means
managing other users' tokens; managing one's own is always allowed, since such tokens
cannot exceed their owner.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from plait.security.tokens import scope_allows

ROLES: tuple[str, ...] = ("viewer", "operator", "editor", "admin")
RANK: dict[str, int] = {role: rank for rank, role in enumerate(ROLES)}

# The lowest role that holds each permission, and the token scope that covers it.
_PERMISSIONS: dict[str, tuple[str, str]] = {
    "workflows:read": ("viewer", "workflows:read"),
    "runs:read": ("viewer", "runs:read"),
    "logs:read": ("viewer", "runs:read"),
    "runs:start": ("operator", "runs:write"),
    "runs:cancel": ("operator", "runs:write"),
    "runs:retry": ("operator", "runs:write"),
    "runs:approve": ("operator", "runs:approve"),
    "events:publish": ("operator", "events:write"),
    "workflows:deploy": ("editor", "workflows:write"),
    "workflows:rollback": ("editor", "workflows:write"),
    "secrets:list": ("editor", "secrets:read"),
    "secrets:write": ("editor", "secrets:write"),
    "users:manage": ("admin", "admin"),
    "tokens:manage": ("admin", "admin"),
    "roles:manage": ("admin", "admin"),
    "audit:read": ("admin", "admin"),
}
PERMISSIONS: frozenset[str] = frozenset(_PERMISSIONS)

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    role: frozenset(p for p, (lowest, _) in _PERMISSIONS.items() if RANK[lowest] <= rank)
    for role, rank in RANK.items()
}


@dataclass(frozen=True, slots=True)
class RoleBinding:
    """``subject`` (a user or token id) holds ``role`` in ``namespace`` (None: all)."""

    subject: str
    role: str
    namespace: str | None = None

    def covers(self, namespace: str | None) -> bool:
        """True if this binding applies to a resource in ``namespace``."""
        return self.namespace is None or self.namespace == namespace

    def where(self) -> str:
        return "globally" if self.namespace is None else f"in namespace {self.namespace!r}"


def required_role(permission: str) -> str:
    """The lowest role holding ``permission``; ``KeyError`` for an unknown permission."""
    return _PERMISSIONS[permission][0]


def required_scope(permission: str) -> str:
    """The token scope that covers ``permission``."""
    return _PERMISSIONS[permission][1]


def role_allows(role: str, permission: str) -> bool:
    """True if ``role`` holds ``permission``; unknown roles hold nothing."""
    return permission in ROLE_PERMISSIONS.get(role, frozenset())


def highest_role(bindings: Iterable[RoleBinding], namespace: str | None) -> str | None:
    """The highest known role the bindings give in ``namespace``, or None."""
    ranks = [RANK[b.role] for b in bindings if b.role in RANK and b.covers(namespace)]
    return ROLES[max(ranks)] if ranks else None


def _roles_allow(bindings: Iterable[RoleBinding], permission: str, namespace: str | None) -> bool:
    return any(b.covers(namespace) and role_allows(b.role, permission) for b in bindings)


def allowed(
    bindings: Iterable[RoleBinding],
    permission: str,
    namespace: str | None,
    *,
    scopes: Iterable[str] | None = None,
    owner_bindings: Iterable[RoleBinding] | None = None,
) -> bool:
    """True if a principal with ``bindings`` may do ``permission`` in ``namespace``.

    ``scopes`` is None for an interactive session and the token's scopes for an API
    token; ``owner_bindings`` are the token owner's bindings when the token has its own.
    An unknown permission is refused (fail closed), never an error.
    """
    if permission not in _PERMISSIONS:
        return False
    if not _roles_allow(bindings, permission, namespace):
        return False
    if owner_bindings is not None and not _roles_allow(owner_bindings, permission, namespace):
        return False
    return scopes is None or scope_allows(scopes, required_scope(permission))


def explain(
    bindings: Iterable[RoleBinding],
    permission: str,
    namespace: str | None,
    *,
    scopes: Iterable[str] | None = None,
    owner_bindings: Iterable[RoleBinding] | None = None,
) -> str:
    """Why :func:`allowed` answers as it does, in words fit for a 403 message."""
    bindings = list(bindings)
    where = "globally" if namespace is None else f"in namespace {namespace!r}"
    if permission not in _PERMISSIONS:
        return f"{permission!r} is not a known permission"
    need = required_role(permission)
    if not _roles_allow(bindings, permission, namespace):
        return f"{permission!r} {where} needs role {need!r} or higher; {_held(bindings)}"
    if owner_bindings is not None:
        owner = list(owner_bindings)
        if not _roles_allow(owner, permission, namespace):
            return (
                f"{permission!r} {where} needs role {need!r} or higher, and the token's "
                f"owner no longer has it; the owner {_held(owner)}"
            )
    if scopes is not None:
        scopes = sorted(set(scopes))
        scope = required_scope(permission)
        if not scope_allows(scopes, scope):
            shown = ", ".join(scopes) or "none"
            return f"{permission!r} needs token scope {scope!r}; the token has: {shown}"
    role = highest_role(bindings, namespace)
    return f"{permission!r} {where} is allowed by role {role!r}"


def _held(bindings: list[RoleBinding]) -> str:
    if not bindings:
        return "you have no roles"
    held = ", ".join(f"{b.role!r} {b.where()}" for b in bindings)
    return f"you have {held}"


def namespaces_allowed(bindings: Iterable[RoleBinding], permission: str) -> frozenset[str] | None:
    """The namespaces where ``permission`` is held; None means every namespace.

    For list endpoints: filter the listing by this set instead of checking each row.
    """
    found: set[str] = set()
    for b in bindings:
        if not role_allows(b.role, permission):
            continue
        if b.namespace is None:
            return None
        found.add(b.namespace)
    return frozenset(found)


def can_grant(granter_bindings: Iterable[RoleBinding], role: str, namespace: str | None) -> bool:
    """True if the granter may bind ``role`` in ``namespace`` (None: globally).

    Only holders of ``roles:manage`` grant: a global admin anywhere, a namespace admin
    only within that namespace (never globally, never elsewhere). Nobody grants a role
    ranked above their own highest role there — implied by the first rule today, kept as
    its own check so a future role between editor and admin cannot open a hole.
    Revoking a binding follows the same rule as granting it.
    """
    if role not in RANK:
        return False
    bindings = list(granter_bindings)
    if not _roles_allow(bindings, "roles:manage", namespace):
        return False
    own = highest_role(bindings, namespace)
    return own is not None and RANK[role] <= RANK[own]


def validate_binding(binding: RoleBinding) -> list[str]:
    """Messages for a binding that names an unknown role or an empty subject."""
    problems: list[str] = []
    if binding.role not in RANK:
        problems.append(f"unknown role {binding.role!r} (known: {', '.join(ROLES)})")
    if not binding.subject:
        problems.append("a role binding needs a subject")
    if binding.namespace == "":
        problems.append("namespace must be a name, or absent for a global binding")
    return problems
