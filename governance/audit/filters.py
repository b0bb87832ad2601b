import django_filters

from governance.audit import actions
from governance.audit.models import AuditEvent
from governance.core.filters import FilterSet, IdFilter, IsoDateTimeFilter


class AuditEventFilter(FilterSet):
    """The audit log's filters: the browser page and ``/api/v1/audit-events/`` share them."""

    object_type = django_filters.CharFilter()
    object_id = django_filters.CharFilter()
    actor = IdFilter(field_name="actor_id")
    actor_label = django_filters.CharFilter(field_name="actor_label")
    action = django_filters.ChoiceFilter(
        choices=actions.filter_choices(),
        method="filter_action",
        help_text="An action code, e.g. `version.transition`, or every action of one domain, e.g. `review.*`.",
    )
    action_prefix = django_filters.CharFilter(
        field_name="action",
        lookup_expr="startswith",
        help_text="Actions whose code starts with this text, e.g. `model.` (prefer `action=model.*`).",
    )
    source = django_filters.CharFilter()
    request_id = django_filters.CharFilter()
    team = IdFilter(field_name="team_id")
    seq_from = IdFilter(
        field_name="seq", lookup_expr="gte", help_text="Events from this sequence number on (inclusive)."
    )
    seq_to = IdFilter(field_name="seq", lookup_expr="lte", help_text="Events up to this sequence number (inclusive).")
    since = IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["object_type", "object_id", "actor", "action", "source", "request_id", "team"]

    def filter_action(self, queryset, name, value: str):
        # ``review.*`` is the registry's review codes as an equality list, not ``LIKE 'review.%'``:
        # equality uses the (action, -seq) index under any database collation, LIKE only under "C"
        if value.endswith(actions.PREFIX_SUFFIX):
            return queryset.filter(action__in=actions.under(value))
        return queryset.filter(action=value)
