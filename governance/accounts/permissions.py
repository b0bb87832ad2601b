"""Who may do what: roles per team, the capabilities they hold (``capabilities.Capability``), scopes per token."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Q

from governance.accounts.capabilities import ALL_ROLES, Capability, capability, roles_for
from governance.accounts.models import Membership, Scope
from governance.core import sql
from governance.core.errors import NotPermitted


def roles_by_team(user) -> dict[int, frozenset[str]]:
    """All of a user's roles, loaded once per user object (at most one query per request)."""
    if not user.is_authenticated:
        return {}
    cached = getattr(user, "_charter_roles", None)
    if cached is None:
        with sql.cursor() as cursor:  # on every request, so a prepared statement rather than the ORM
            cursor.execute(
                f'SELECT "team_id", "role" FROM "{Membership._meta.db_table}" WHERE "user_id" = %s', [user.pk]
            )
            cached = remember_roles(user, cursor.fetchall())
    return cached


def remember_roles(user, memberships: Iterable[tuple[int, str]]) -> dict[int, frozenset[str]]:
    """Keep the user's (team id, role) pairs on the user object for ``roles_by_team``
    (API token authentication loads them with the token)."""
    found: dict[int, set[str]] = {}
    for team_id, role in memberships:
        found.setdefault(team_id, set()).add(role)
    user._charter_roles = {team_id: frozenset(roles) for team_id, roles in found.items()}
    return user._charter_roles


def token_team(user) -> int | None:
    """The one team a team-restricted API token may act in, whoever owns it."""
    token = getattr(user, "_charter_token", None)
    return token.team_id if token is not None else None


def team_ids_visible_to(user) -> list[int] | None:
    """Team ids the user may read; ``None`` means every team (superusers, unless a token narrows it)."""
    restricted_to = token_team(user)
    if user.is_authenticated and user.is_superuser:
        return None if restricted_to is None else [restricted_to]
    ids = list(roles_by_team(user))
    if restricted_to is not None:
        ids = [i for i in ids if i == restricted_to]
    return ids


def team_filter(user, field: str) -> Q:
    """A ``Q`` keeping the rows whose ``field`` (a team id) the user may read; everything for those who
    read every team."""
    ids = team_ids_visible_to(user)
    return Q() if ids is None else Q(**{f"{field}__in": ids})


def roles_in(user, team_id: int) -> frozenset[str]:
    restricted_to = token_team(user)
    if restricted_to is not None and restricted_to != team_id:
        return frozenset()
    if user.is_authenticated and user.is_superuser:
        return ALL_ROLES
    return roles_by_team(user).get(team_id, frozenset())


def token_scopes(user) -> frozenset[str] | None:
    """The scopes of the token a request authenticated with; ``None`` for a session (unscoped)."""
    token = getattr(user, "_charter_token", None)
    return None if token is None else frozenset(token.scopes)


def can_anywhere(user, cap: Capability) -> bool:
    """Whether the user holds the capability in at least one team (site administrators always do)."""
    needed = roles_for(cap)
    if not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    return any(roles & needed for roles in roles_by_team(user).values())


def _has_any_role(user, team_id: int, roles: Iterable[str]) -> bool:
    return bool(roles_in(user, team_id) & set(roles))


def can(user, cap: Capability, team_id: int) -> bool:
    return _has_any_role(user, team_id, roles_for(cap))


def require(user, cap: Capability, *, team_id: int, what: str = "") -> None:
    """Raise ``NotPermitted`` unless the user holds one of the roles the capability needs in that team."""
    _require(user, roles_for(cap), team_id=team_id, what=what or capability(cap).value)


def require_roles(user, roles: frozenset[str], *, team_id: int, what: str) -> None:
    """``require`` for a lifecycle step, whose roles the transition table carries
    (``governance.registry.models.TRANSITIONS``, built with ``capabilities.transition_roles``)."""
    _require(user, roles, team_id=team_id, what=what)


def _require(user, needed: frozenset[str], *, team_id: int, what: str) -> None:
    if not _has_any_role(user, team_id, needed):
        names = ", ".join(sorted(needed))
        raise NotPermitted(f"You need one of these roles in the owning team to {what}: {names}.")


def require_scope(user, scope: str) -> None:
    """A token-authenticated request may only do what its scopes allow; sessions are unscoped."""
    token = getattr(user, "_charter_token", None)
    if token is not None and scope not in token.scopes:
        raise NotPermitted(
            f"This API token lacks the '{scope}' scope ({Scope(scope).label}).", code="token_scope_missing"
        )
