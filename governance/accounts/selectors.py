from functools import cache

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import QuerySet

from governance.accounts.models import ApiToken, Membership, Team
from governance.accounts.permissions import remember_roles, team_ids_visible_to
from governance.core import sql


def team_list(*, user) -> QuerySet[Team]:
    ids = team_ids_visible_to(user)
    qs = Team.objects.all() if ids is None else Team.objects.filter(pk__in=ids)
    return qs.order_by("name")


def membership_list(*, user) -> QuerySet[Membership]:
    ids = team_ids_visible_to(user)
    qs = Membership.objects.all() if ids is None else Membership.objects.filter(team_id__in=ids)
    return qs.select_related("user", "team").order_by("team__name", "user__username", "role")


def token_list(*, user) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user).select_related("team").order_by("-created_at")


def token_by_prefix(prefix: str) -> ApiToken | None:
    """The token with this prefix, its owner (``token.user``) and the owner's roles, in one
    prepared statement: every API call authenticates, so this runs more than any other query."""
    User = get_user_model()
    with sql.cursor() as cursor:
        cursor.execute(_token_statement(), [prefix])
        row = cursor.fetchone()
    if row is None:
        return None
    split, roles = sql.width(ApiToken), row[-1]
    token = sql.load(ApiToken, row[:split])
    token.user = sql.load(User, row[split:-1])
    pairs = (pair.split(":", 1) for pair in roles.split(",")) if roles else ()
    remember_roles(token.user, ((int(team_id), role) for team_id, role in pairs))
    return token


@cache
def _token_statement() -> str:
    User = get_user_model()
    joined = (  # the owner's memberships as "team:role,team:role"
        "string_agg(m.\"team_id\"::text || ':' || m.\"role\", ',')"
        if connection.vendor == "postgresql"
        else "group_concat(m.\"team_id\" || ':' || m.\"role\", ',')"
    )
    return (
        f"SELECT {sql.columns(ApiToken, 't')}, {sql.columns(User, 'u')}, "
        f'(SELECT {joined} FROM "{Membership._meta.db_table}" m WHERE m."user_id" = t."user_id") '
        f'FROM "{ApiToken._meta.db_table}" t JOIN "{User._meta.db_table}" u ON u."id" = t."user_id" '
        'WHERE t."prefix" = %s'
    )
