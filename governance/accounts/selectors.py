from functools import cache

from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from governance.accounts.models import ApiToken, Membership, Team
from governance.accounts.permissions import team_ids_visible_to
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
    """The token with this prefix and its owner (``token.user``), in one prepared statement:
    every API call authenticates, so this runs more than any other query."""
    User = get_user_model()
    with sql.cursor() as cursor:
        cursor.execute(_token_statement(), [prefix])
        row = cursor.fetchone()
    if row is None:
        return None
    split = sql.width(ApiToken)
    token = sql.load(ApiToken, row[:split])
    token.user = sql.load(User, row[split:])
    return token


@cache
def _token_statement() -> str:
    User = get_user_model()
    return (
        f"SELECT {sql.columns(ApiToken, 't')}, {sql.columns(User, 'u')} "
        f'FROM "{ApiToken._meta.db_table}" t JOIN "{User._meta.db_table}" u ON u."id" = t."user_id" '
        'WHERE t."prefix" = %s'
    )
