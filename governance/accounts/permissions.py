"""Who may do what: roles per team, capabilities per role, scopes per token."""

from __future__ import annotations

from collections.abc import Iterable

from governance.accounts.models import Membership, Role, Scope
from governance.core.errors import NotPermitted

ALL_ROLES = frozenset(Role.values)

# Capabilities that are not lifecycle transitions (those carry their roles in the transition table).
CAPABILITIES: dict[str, frozenset[str]] = {
    "view": ALL_ROLES,
    "model.create": frozenset({Role.AUTHOR, Role.ADMIN}),
    "model.update": frozenset({Role.AUTHOR, Role.ADMIN}),
    "model.delete": frozenset({Role.ADMIN}),
    "version.create": frozenset({Role.AUTHOR, Role.ADMIN}),
    "version.update": frozenset({Role.AUTHOR, Role.ADMIN}),
    "card.edit": frozenset({Role.AUTHOR, Role.ADMIN}),
    "team.manage": frozenset({Role.ADMIN}),
    "audit.verify": frozenset({Role.AUDITOR, Role.ADMIN}),
}


def roles_by_team(user) -> dict[int, frozenset[str]]:
    """All of a user's roles, loaded once per user object (one query per request)."""
    if not user.is_authenticated:
        return {}
    cached = getattr(user, "_charter_roles", None)
    if cached is None:
        found: dict[int, set[str]] = {}
        for team_id, role in Membership.objects.filter(user=user).values_list("team_id", "role"):
            found.setdefault(team_id, set()).add(role)
        cached = {team_id: frozenset(roles) for team_id, roles in found.items()}
        user._charter_roles = cached
    return cached


def team_ids_visible_to(user) -> list[int] | None:
    """Team ids the user may read; ``None`` means every team (superusers)."""
    if user.is_authenticated and user.is_superuser:
        return None
    token = getattr(user, "_charter_token", None)
    ids = list(roles_by_team(user))
    if token is not None and token.team_id is not None:
        ids = [i for i in ids if i == token.team_id]
    return ids


def roles_in(user, team_id: int) -> frozenset[str]:
    if user.is_authenticated and user.is_superuser:
        return ALL_ROLES
    token = getattr(user, "_charter_token", None)
    if token is not None and token.team_id not in (None, team_id):
        return frozenset()
    return roles_by_team(user).get(team_id, frozenset())


def has_any_role(user, team_id: int, roles: Iterable[str]) -> bool:
    return bool(roles_in(user, team_id) & set(roles))


def can(user, capability: str, team_id: int) -> bool:
    return has_any_role(user, team_id, CAPABILITIES[capability])


def require(user, capability: str, *, team_id: int, roles: Iterable[str] | None = None, what: str = "") -> None:
    """Raise ``NotPermitted`` unless the user holds one of the roles the capability needs in that team."""
    needed = frozenset(roles) if roles is not None else CAPABILITIES[capability]
    if not has_any_role(user, team_id, needed):
        names = ", ".join(sorted(needed))
        raise NotPermitted(f"You need one of these roles in the owning team to {what or capability}: {names}.")


def require_scope(user, scope: str) -> None:
    """A token-authenticated request may only do what its scopes allow; sessions are unscoped."""
    token = getattr(user, "_charter_token", None)
    if token is not None and scope not in token.scopes:
        raise NotPermitted(
            f"This API token lacks the '{scope}' scope ({Scope(scope).label}).", code="token_scope_missing"
        )
