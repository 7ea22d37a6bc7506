"""Roles and permissions: the full table, namespaces, token scopes, escalation guards."""

from __future__ import annotations

import itertools

import pytest

from plait.security.rbac import (
    PERMISSIONS,
    ROLE_PERMISSIONS,
    ROLES,
    RoleBinding,
    allowed,
    can_grant,
    explain,
    highest_role,
    namespaces_allowed,
    required_role,
    required_scope,
    validate_binding,
)
from plait.security.tokens import SCOPES

# The table written out by hand, so a change to the module's table shows up here.
VIEWER = {"workflows:read", "runs:read", "logs:read"}
OPERATOR = VIEWER | {"runs:start", "runs:cancel", "runs:retry", "runs:approve", "events:publish"}
EDITOR = OPERATOR | {"workflows:deploy", "workflows:rollback", "secrets:list", "secrets:write"}
ADMIN = EDITOR | {"users:manage", "tokens:manage", "roles:manage", "audit:read"}
EXPECTED = {"viewer": VIEWER, "operator": OPERATOR, "editor": EDITOR, "admin": ADMIN}

ALL_PERMISSIONS = sorted(ADMIN)


def bind(role: str, namespace: str | None = None, subject: str = "u1") -> RoleBinding:
    return RoleBinding(subject=subject, role=role, namespace=namespace)


def test_permission_vocabulary_is_the_documented_one() -> None:
    assert frozenset(ALL_PERMISSIONS) == PERMISSIONS
    assert set(ROLES) == set(EXPECTED)


def test_role_table_matches() -> None:
    assert {role: set(perms) for role, perms in ROLE_PERMISSIONS.items()} == EXPECTED


def test_hierarchy_is_strict() -> None:
    for lower, higher in itertools.pairwise(ROLES):
        assert ROLE_PERMISSIONS[lower] < ROLE_PERMISSIONS[higher]


@pytest.mark.parametrize(
    ("role", "permission"), list(itertools.product(sorted(EXPECTED), ALL_PERMISSIONS))
)
def test_every_role_and_permission(role: str, permission: str) -> None:
    expected = permission in EXPECTED[role]
    # A global binding applies everywhere, including to global resources.
    assert allowed([bind(role)], permission, None) is expected
    assert allowed([bind(role)], permission, "prod") is expected
    # A namespace binding applies to its namespace only.
    assert allowed([bind(role, "prod")], permission, "prod") is expected
    assert allowed([bind(role, "prod")], permission, "staging") is False
    assert allowed([bind(role, "prod")], permission, None) is False


def test_no_bindings_no_access() -> None:
    for permission in ALL_PERMISSIONS:
        assert not allowed([], permission, None)
        assert not allowed([], permission, "prod")


def test_unknown_permission_and_role_fail_closed() -> None:
    assert not allowed([bind("admin")], "workflows:delete_everything", None)
    assert not allowed([bind("superuser")], "runs:read", None)
    assert not allowed([bind("Admin")], "runs:read", None)


def test_bindings_combine() -> None:
    bindings = [bind("viewer"), bind("editor", "dev"), bind("operator", "prod")]
    assert allowed(bindings, "workflows:deploy", "dev")
    assert not allowed(bindings, "workflows:deploy", "prod")
    assert allowed(bindings, "runs:approve", "prod")
    assert not allowed(bindings, "runs:start", "staging")
    assert allowed(bindings, "runs:read", "staging")
    assert highest_role(bindings, "dev") == "editor"
    assert highest_role(bindings, "staging") == "viewer"
    assert highest_role([bind("editor", "dev")], None) is None


def test_namespace_admin_cannot_use_global_administration() -> None:
    bindings = [bind("admin", "team-a")]
    assert allowed(bindings, "roles:manage", "team-a")
    assert not allowed(bindings, "users:manage", None)
    assert not allowed(bindings, "audit:read", None)


def test_required_role_and_scope() -> None:
    assert required_role("runs:approve") == "operator"
    assert required_role("workflows:deploy") == "editor"
    assert required_scope("runs:start") == "runs:write"
    assert required_scope("logs:read") == "runs:read"
    assert required_scope("users:manage") == "admin"
    for permission in ALL_PERMISSIONS:
        assert required_scope(permission) in SCOPES


# --- tokens: effective = role permissions ∩ scopes -----------------------------------


@pytest.mark.parametrize(
    ("role", "scopes", "permission", "expected"),
    [
        ("admin", ["runs:read"], "runs:read", True),
        ("admin", ["runs:read"], "logs:read", True),
        ("admin", ["runs:read"], "runs:start", False),
        ("admin", ["runs:read"], "users:manage", False),
        ("admin", ["admin"], "users:manage", True),
        ("viewer", ["admin"], "runs:start", False),  # scopes never add permissions
        ("viewer", ["admin"], "users:manage", False),
        ("operator", ["runs:write"], "runs:start", True),
        ("operator", ["runs:write"], "runs:approve", False),
        ("operator", ["runs:approve"], "runs:approve", True),
        ("operator", ["workflows:write"], "workflows:deploy", False),
        ("editor", ["workflows:write"], "workflows:deploy", True),
        ("editor", ["workflows:write"], "workflows:read", True),
        ("editor", ["workflows:read"], "workflows:rollback", False),
        ("editor", ["secrets:write"], "secrets:list", True),
        ("editor", ["secrets:read"], "secrets:write", False),
        ("operator", ["events:write"], "events:publish", True),
        ("operator", ["runs:write"], "events:publish", False),
        ("editor", [], "workflows:read", False),
    ],
)
def test_scopes_restrict_a_token(
    role: str, scopes: list[str], permission: str, expected: bool
) -> None:
    assert allowed([bind(role)], permission, "prod", scopes=scopes) is expected


def test_no_scopes_means_an_interactive_session() -> None:
    assert allowed([bind("editor")], "workflows:deploy", "prod", scopes=None)


def test_token_never_exceeds_its_owner() -> None:
    token_bindings = [bind("admin", subject="tok1")]
    owner_now = [bind("viewer", subject="alice")]  # alice was demoted after making it
    assert allowed(token_bindings, "runs:read", "prod", owner_bindings=owner_now)
    assert not allowed(token_bindings, "runs:start", "prod", owner_bindings=owner_now)
    assert not allowed(token_bindings, "users:manage", None, owner_bindings=owner_now)
    # The token's own bindings limit it too.
    owner_admin = [bind("admin", subject="alice")]
    narrow = [bind("operator", "prod", subject="tok1")]
    assert not allowed(narrow, "workflows:deploy", "prod", owner_bindings=owner_admin)
    assert not allowed(narrow, "runs:start", "dev", owner_bindings=owner_admin)
    assert allowed(narrow, "runs:start", "prod", owner_bindings=owner_admin)


def test_namespaces_allowed_for_listings() -> None:
    bindings = [bind("viewer", "a"), bind("operator", "b"), bind("editor", "c")]
    assert namespaces_allowed(bindings, "runs:read") == frozenset({"a", "b", "c"})
    assert namespaces_allowed(bindings, "runs:start") == frozenset({"b", "c"})
    assert namespaces_allowed(bindings, "workflows:deploy") == frozenset({"c"})
    assert namespaces_allowed(bindings, "users:manage") == frozenset()
    assert namespaces_allowed([*bindings, bind("viewer")], "runs:read") is None
    assert namespaces_allowed([*bindings, bind("viewer")], "runs:start") == frozenset({"b", "c"})


# --- explain -------------------------------------------------------------------------


def test_explain_missing_role() -> None:
    text = explain([bind("viewer", "prod")], "workflows:deploy", "prod")
    assert text == (
        "'workflows:deploy' in namespace 'prod' needs role 'editor' or higher; "
        "you have 'viewer' in namespace 'prod'"
    )


def test_explain_global_resource_and_no_roles() -> None:
    assert explain([], "audit:read", None) == (
        "'audit:read' globally needs role 'admin' or higher; you have no roles"
    )


def test_explain_scope() -> None:
    text = explain([bind("admin")], "runs:start", "prod", scopes=["runs:read", "audit"])
    assert text == "'runs:start' needs token scope 'runs:write'; the token has: audit, runs:read"


def test_explain_owner() -> None:
    text = explain(
        [bind("admin", subject="t")], "runs:start", "prod", owner_bindings=[bind("viewer")]
    )
    assert "token's owner no longer has it" in text
    assert "'viewer' globally" in text


def test_explain_allowed_for_a_token_within_its_owner_and_scopes() -> None:
    text = explain(
        [bind("operator", "prod", subject="t")],
        "runs:start",
        "prod",
        scopes=["runs:write"],
        owner_bindings=[bind("admin")],
    )
    assert text == "'runs:start' in namespace 'prod' is allowed by role 'operator'"


def test_explain_allowed_and_unknown() -> None:
    assert explain([bind("operator", "prod")], "runs:cancel", "prod") == (
        "'runs:cancel' in namespace 'prod' is allowed by role 'operator'"
    )
    assert explain([bind("admin")], "nope", None) == "'nope' is not a known permission"


def test_explain_agrees_with_allowed() -> None:
    cases = [
        ([bind("viewer")], "runs:start", "p", None),
        ([bind("editor")], "runs:start", "p", ["runs:read"]),
        ([bind("editor")], "runs:start", "p", ["runs:write"]),
    ]
    for bindings, permission, namespace, scopes in cases:
        verdict = allowed(bindings, permission, namespace, scopes=scopes)
        text = explain(bindings, permission, namespace, scopes=scopes)
        assert ("is allowed by" in text) is verdict


# --- granting: privilege escalation guards -------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_global_admin_grants_anything_anywhere(role: str) -> None:
    assert can_grant([bind("admin")], role, None)
    assert can_grant([bind("admin")], role, "prod")


@pytest.mark.parametrize("role", ROLES)
def test_namespace_admin_grants_only_in_its_namespace(role: str) -> None:
    granter = [bind("admin", "prod")]
    assert can_grant(granter, role, "prod")
    assert not can_grant(granter, role, "staging")
    assert not can_grant(granter, role, None)


@pytest.mark.parametrize(
    ("granter_role", "role"), list(itertools.product(["viewer", "operator", "editor"], ROLES))
)
def test_non_admins_grant_nothing(granter_role: str, role: str) -> None:
    assert not can_grant([bind(granter_role)], role, None)
    assert not can_grant([bind(granter_role)], role, "prod")
    assert not can_grant([bind(granter_role, "prod")], role, "prod")


def test_global_editor_with_namespace_admin_still_cannot_grant_globally() -> None:
    granter = [bind("editor"), bind("admin", "prod")]
    assert can_grant(granter, "editor", "prod")
    assert not can_grant(granter, "editor", None)
    assert not can_grant(granter, "viewer", "dev")


def test_nobody_grants_above_their_own_role(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rank guard on its own: were editors ever allowed to manage roles, they still
    could not hand out admin."""
    from plait.security import rbac

    widened = rbac.ROLE_PERMISSIONS["editor"] | {"roles:manage"}
    monkeypatch.setitem(rbac.ROLE_PERMISSIONS, "editor", widened)
    granter = [bind("editor", "prod")]
    assert can_grant(granter, "editor", "prod")
    assert can_grant(granter, "viewer", "prod")
    assert not can_grant(granter, "admin", "prod")


def test_unknown_role_cannot_be_granted() -> None:
    assert not can_grant([bind("admin")], "root", None)
    assert not can_grant([bind("admin")], "", "prod")


def test_validate_binding() -> None:
    assert validate_binding(bind("editor", "prod")) == []
    assert validate_binding(RoleBinding("", "god", "")) == [
        "unknown role 'god' (known: viewer, operator, editor, admin)",
        "a role binding needs a subject",
        "namespace must be a name, or absent for a global binding",
    ]
