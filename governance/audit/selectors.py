from django.db.models import Q, QuerySet

from governance.accounts.permissions import team_ids_visible_to
from governance.audit.models import AuditEvent


def event_list(*, user) -> QuerySet[AuditEvent]:
    """Events of the user's teams, plus the user's own team-less events (logins); everything for superusers."""
    ids = team_ids_visible_to(user)
    qs = AuditEvent.objects.all()
    if ids is not None:
        qs = qs.filter(Q(team_id__in=ids) | Q(team_id__isnull=True, actor_id=user.pk))
    return qs.order_by("-seq")


def object_trail(*, user, obj) -> QuerySet[AuditEvent]:
    return event_list(user=user).filter(object_type=obj._meta.label_lower, object_id=str(obj.pk))


def objects_trail(*, user, object_type: str, object_ids) -> QuerySet[AuditEvent]:
    """Events of many objects of one type; ``object_ids`` is a list or a subquery of string ids."""
    return event_list(user=user).filter(object_type=object_type, object_id__in=object_ids)
