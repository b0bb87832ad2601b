from __future__ import annotations

import datetime as dt
import math
import re
import secrets

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from governance.accounts.authentication import TOKEN_PREFIX, hash_token
from governance.accounts.capabilities import Capability
from governance.accounts.models import ApiToken, Membership, Role, Scope, Team
from governance.accounts.permissions import (
    can,
    can_anywhere,
    require,
    require_scope,
    roles_by_team,
    token_scopes,
    token_team,
)
from governance.audit import services as audit
from governance.audit.actions import AuditAction
from governance.core.errors import Conflict, NotFound, NotPermitted, ValidationFailed

User = get_user_model()
MAX_TOKEN_DAYS = 365


def _require_superuser(actor, what: str) -> None:
    require_scope(actor, "admin")
    if not actor.is_superuser:
        raise NotPermitted(f"Only a site administrator can {what}.")


# A team's name gives its slug: it needs a letter or digit that slugify keeps (the API schema's pattern).
TEAM_NAME_PATTERN = "[A-Za-z0-9]"


def _check_team_name(name: str) -> None:
    if not re.search(TEAM_NAME_PATTERN, name):
        raise ValidationFailed("A team needs a name with at least one letter or digit (A-Z, 0-9).", code="invalid_name")


@transaction.atomic
def team_create(*, actor, name: str, description: str = "", slug: str = "") -> Team:
    _require_superuser(actor, "create teams")
    _check_team_name(name)
    slug = slug or slugify(name)
    if Team.objects.filter(name__iexact=name).exists() or Team.objects.filter(slug=slug).exists():
        raise Conflict(f"A team named '{name}' already exists.", code="duplicate_name")
    try:
        with transaction.atomic():
            team = Team.objects.create(name=name, slug=slug, description=description)
    except IntegrityError:
        raise Conflict(f"A team named '{name}' already exists.", code="duplicate_name") from None
    audit.record(action=AuditAction.TEAM_CREATE, obj=team, after=audit.snapshot(team), actor=actor)
    return team


@transaction.atomic
def team_update(*, actor, team: Team, **changes) -> Team:
    require_scope(actor, "admin")
    require(actor, Capability.TEAM_MANAGE, team_id=team.pk, what="edit this team")
    team = Team.objects.select_for_update().filter(pk=team.pk).first()
    if team is None:
        raise NotFound("This team no longer exists.")
    before = audit.snapshot(team)
    if "name" in changes:
        _check_team_name(changes["name"])
    for field in ("name", "description"):
        if field in changes:
            setattr(team, field, changes[field])
    if Team.objects.exclude(pk=team.pk).filter(name__iexact=team.name).exists():
        raise Conflict(f"A team named '{team.name}' already exists.", code="duplicate_name")
    try:
        with transaction.atomic():
            team.save()
    except IntegrityError:
        raise Conflict(f"A team named '{team.name}' already exists.", code="duplicate_name") from None
    audit.record(action=AuditAction.TEAM_UPDATE, obj=team, before=before, after=audit.snapshot(team), actor=actor)
    return team


@transaction.atomic
def membership_add(*, actor, team: Team, user, role: str) -> Membership:
    require_scope(actor, "admin")
    require(actor, Capability.TEAM_MANAGE, team_id=team.pk, what="manage members")
    if role not in Role.values:
        raise ValidationFailed(f"'{role}' is not a role. Choose one of: {', '.join(Role.values)}.", code="invalid_role")
    try:
        with transaction.atomic():
            membership = Membership.objects.create(team=team, user=user, role=role)
    except IntegrityError:
        raise Conflict(f"{user} already has the {role} role in {team}.", code="duplicate_membership") from None
    audit.record(action=AuditAction.MEMBERSHIP_ADD, obj=membership, after=audit.snapshot(membership), actor=actor)
    return membership


@transaction.atomic
def membership_remove(*, actor, membership: Membership) -> None:
    require_scope(actor, "admin")
    require(actor, Capability.TEAM_MANAGE, team_id=membership.team_id, what="manage members")
    membership = Membership.objects.select_for_update().filter(pk=membership.pk).first()
    if membership is None:  # removed by someone else meanwhile: one removal, one event
        raise NotFound("This membership no longer exists.")
    before = audit.snapshot(membership)
    audit_team = membership.team_id
    pk = membership.pk
    membership.delete()
    audit.record(
        action=AuditAction.MEMBERSHIP_REMOVE, object_type="accounts.membership", object_id=str(pk), team_id=audit_team,
        before=before, actor=actor,
    )  # fmt: skip


@transaction.atomic
def token_create(
    *, actor, name: str, scopes: list[str], team: Team | None = None, expires_in_days: int = 90
) -> tuple[ApiToken, str]:
    """Create a token and return it with its secret, which is never stored or shown again.

    Created with an API token (``actor`` authenticated by one), the new token is that token's
    child: no scope it lacks, no other team, no later expiry, and it is revoked with it.
    """
    unknown = sorted(set(scopes) - set(Scope.values))
    if not scopes or unknown:
        raise ValidationFailed(
            f"Choose at least one scope from: {', '.join(Scope.values)}."
            + (f" Unknown: {', '.join(unknown)}." if unknown else ""),
            code="invalid_scope",
        )
    if Scope.HOST in scopes and len(set(scopes)) > 1:
        raise ValidationFailed(
            "A token with the 'host' scope carries no other scope: create one token for the host agent and "
            "another for anything else.",
            code="host_scope_alone",
            fields={"scopes": ["A host agent's token has the host scope and no other: choose host alone, or not at all."]},
        )  # fmt: skip
    if not 1 <= expires_in_days <= MAX_TOKEN_DAYS:
        raise ValidationFailed(f"A token lives between 1 and {MAX_TOKEN_DAYS} days.", code="invalid_expiry")
    require_scope(actor, "admin")
    if team is not None and not actor.is_superuser and team.pk not in roles_by_team(actor):
        raise NotPermitted("You can only scope a token to a team you belong to.")
    if Scope.HOST in scopes and not (
        can(actor, Capability.HOST_REGISTER, team.pk)
        if team is not None
        else can_anywhere(actor, Capability.HOST_REGISTER)
    ):
        raise NotPermitted(
            "Only operators and admins (of the token's team, or of any team for a token without one) and site "
            "administrators may create a host token.",
            code="host_register_not_permitted",
        )
    # A token can only mint tokens no stronger than itself: no extra scopes, no wider team, no longer life.
    held = token_scopes(actor)
    now = timezone.now()
    expires_at = now + dt.timedelta(days=expires_in_days)
    parent = None
    if held is not None:
        if extra := sorted(set(scopes) - held):
            raise NotPermitted(
                f"This API token cannot grant scopes it lacks: {', '.join(extra)}.", code="token_scope_missing"
            )
        bound = token_team(actor)
        if bound is not None and (team is None or team.pk != bound):
            raise NotPermitted("A team-restricted API token can only create tokens for its own team.")
        # Locked: a revocation of the parent running now either sees this child or refuses it.
        parent = ApiToken.objects.select_for_update().filter(pk=actor._charter_token.pk).first()
        if parent is None or not parent.is_active:
            raise NotPermitted("This API token was revoked or has expired.", code="token_inactive")
        expires_at = _child_expiry(parent, days=expires_in_days, now=now)
    prefix = secrets.token_hex(6)
    raw = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    token = ApiToken.objects.create(
        user=actor, team=team, parent=parent, name=name, prefix=prefix, token_hash=hash_token(raw),
        scopes=sorted(set(scopes)), expires_at=expires_at,
    )  # fmt: skip
    audit.record(action=AuditAction.TOKEN_CREATE, obj=token, after=audit.snapshot(token), actor=actor)
    return token, raw


def _child_expiry(parent: ApiToken, *, days: int, now: dt.datetime) -> dt.datetime:
    """When a token created by ``parent`` for ``days`` days expires: never after the parent.

    Lifetimes are asked for in whole days, so the parent's last, partial day is granted (up to
    the parent's own expiry); asking for more days than the parent has left is refused.
    """
    most = max(1, math.ceil((parent.expires_at - now) / dt.timedelta(days=1)))
    if days > most:
        ends = parent.expires_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        raise NotPermitted(
            f"This API token expires at {ends}; a token it creates cannot outlive it. Ask for at most {most} "
            f"day{'s' if most != 1 else ''}, or create the token while signed in.",
            code="token_outlives_parent",
            fields={"expires_in_days": f"At most {most}."},
        )
    return min(now + dt.timedelta(days=days), parent.expires_at)


def _descendants(token: ApiToken) -> list[ApiToken]:
    """Every token created by ``token``, by those, and so on: locked, generation by generation."""
    found, generation = [], [token.pk]
    while generation:
        children = list(ApiToken.objects.select_for_update().filter(parent_id__in=generation).order_by("pk"))
        found.extend(children)
        generation = [child.pk for child in children]
    return found


@transaction.atomic
def token_revoke(*, actor, token: ApiToken) -> ApiToken:
    """Revoke a token and, with it, every token it created (transitively), each audited.

    The returned token's ``revoked_descendants`` lists the tokens revoked with it."""
    require_scope(actor, "admin")
    if token.user_id != actor.pk and not actor.is_superuser:
        raise NotPermitted("You can only revoke your own tokens.")
    token = ApiToken.objects.select_for_update().get(pk=token.pk)
    if token.revoked_at is not None:
        raise Conflict("This token is already revoked.", code="already_revoked")
    now = timezone.now()
    revoked = [(token, audit.snapshot(token))]
    revoked += [(child, audit.snapshot(child)) for child in _descendants(token) if child.revoked_at is None]
    for each, _ in revoked:
        each.revoked_at = now
        each.save(update_fields=["revoked_at"])
    for each, before in revoked:  # the chain head last, once every row is locked
        cause = {} if each is token else {"reason": "revoked with the token that created it", "revoked_with": token.pk}
        audit.record(
            action=AuditAction.TOKEN_REVOKE,
            obj=each,
            before=before,
            after=audit.snapshot(each),
            changes=cause,
            actor=actor,
        )
    token.revoked_descendants = [each for each, _ in revoked[1:]]
    return token
