from django.db.models import QuerySet

from governance.accounts.models import ApiToken, Membership, Team
from governance.accounts.permissions import team_ids_visible_to


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
