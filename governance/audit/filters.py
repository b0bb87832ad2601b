import django_filters

from governance.audit.models import AuditEvent


class AuditEventFilter(django_filters.FilterSet):
    object_type = django_filters.CharFilter()
    object_id = django_filters.CharFilter()
    actor = django_filters.NumberFilter(field_name="actor_id")
    actor_label = django_filters.CharFilter(field_name="actor_label")
    action = django_filters.CharFilter()
    action_prefix = django_filters.CharFilter(field_name="action", lookup_expr="startswith")
    source = django_filters.CharFilter()
    request_id = django_filters.CharFilter()
    team = django_filters.NumberFilter(field_name="team_id")
    since = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["object_type", "object_id", "actor", "action", "source", "request_id", "team"]
