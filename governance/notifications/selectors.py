"""Notification and webhook reads, each scoped to the user asking.

Notifications are the recipient's own. Webhooks and their deliveries are for the admins of the
webhook's team (and site administrators): a member of the team who is not an admin is refused
(403), anyone else is told there is no such webhook (404).
"""

from __future__ import annotations

from django.db.models import BooleanField, ExpressionWrapper, Q, QuerySet

from governance.accounts.capabilities import Capability
from governance.accounts.models import Team
from governance.accounts.permissions import can, team_ids_visible_to, token_team
from governance.accounts.selectors import team_list
from governance.core.errors import NotFound, NotPermitted
from governance.notifications.models import Notification, Webhook, WebhookDelivery

UNREAD_COUNT_CAP = 100  # the top bar shows "99+" beyond this; counting further buys nothing


def notification_list(*, user) -> QuerySet[Notification]:
    """The user's notifications, newest first. A team-restricted API token sees its team's only."""
    if not user.is_authenticated:
        return Notification.objects.none()
    qs = Notification.objects.filter(recipient=user)
    if (restricted_to := token_team(user)) is not None:
        qs = qs.filter(team_id=restricted_to)
    return qs.order_by("-id")


def notification_inbox(*, user) -> QuerySet[Notification]:
    """Unread first, each part newest first (the browser list)."""
    unread = ExpressionWrapper(Q(read_at__isnull=True), output_field=BooleanField())
    return notification_list(user=user).order_by(unread.desc(), "-id")


def unread_count(*, user) -> int:
    """Unread notifications, counted up to ``UNREAD_COUNT_CAP`` (an index-only count of at most that many rows)."""
    return notification_list(user=user).filter(read_at__isnull=True).order_by()[:UNREAD_COUNT_CAP].count()


def _manageable_team_ids(user) -> list[int] | None:
    ids = team_ids_visible_to(user)
    if ids is None:
        return None
    return [team_id for team_id in ids if can(user, Capability.TEAM_MANAGE, team_id)]


def webhook_list(*, user) -> QuerySet[Webhook]:
    """Webhooks of the teams the user administers."""
    ids = _manageable_team_ids(user)
    qs = Webhook.objects.all() if ids is None else Webhook.objects.filter(team_id__in=ids)
    return qs.select_related("team", "created_by").order_by("team__name", "id")


def _refuse_unless_admin(user, team_id: int) -> None:
    if not can(user, Capability.TEAM_MANAGE, team_id):
        raise NotPermitted("Only the team's admins can see and manage its webhooks.", code="permission_denied")


def webhook_get(*, user, pk) -> Webhook:
    """One webhook: 404 outside the user's teams, 403 for a member who is not an admin."""
    ids = team_ids_visible_to(user)
    qs = Webhook.objects.all() if ids is None else Webhook.objects.filter(team_id__in=ids)
    webhook = qs.select_related("team", "created_by").filter(pk=pk).first()
    if webhook is None:
        raise NotFound("No such webhook, or it is not in one of your teams.", code="webhook_not_found")
    _refuse_unless_admin(user, webhook.team_id)
    return webhook


def webhook_team(*, user, pk) -> Team:
    """The team whose webhooks the user wants to manage: 404 outside their teams, 403 if not an admin."""
    team = team_list(user=user).filter(pk=pk).first()
    if team is None:
        raise NotFound("No such team, or you are not a member of it.", code="team_not_found")
    _refuse_unless_admin(user, team.pk)
    return team


def delivery_list(*, user, webhook: Webhook | None = None, team: Team | None = None) -> QuerySet[WebhookDelivery]:
    """Deliveries of webhooks the user administers, newest first; of one webhook or one team when given."""
    ids = _manageable_team_ids(user)
    qs = WebhookDelivery.objects.all() if ids is None else WebhookDelivery.objects.filter(webhook__team_id__in=ids)
    if webhook is not None:
        qs = qs.filter(webhook=webhook)
    if team is not None:
        qs = qs.filter(webhook__team=team)
    return qs.select_related("webhook").order_by("-id")
