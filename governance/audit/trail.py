"""One object's audit trail in the API: the serializer of an event and the paged trail that every
object's ``audit`` action returns (the registry's models and versions, the audit log itself), so
that no app's API imports another app's."""

import json

from rest_framework import serializers

from governance.audit.models import AuditEvent
from governance.core.pagination import NewestFirstCursorPagination


class AuditCursorPagination(NewestFirstCursorPagination):
    ordering = "-seq"


class AuditEventSerializer(serializers.ModelSerializer):
    changes = serializers.SerializerMethodField()

    class Meta:
        model = AuditEvent
        fields = [
            "id", "seq", "created_at", "actor", "actor_label", "source", "request_id", "action", "object_type",
            "object_id", "team_id", "changes", "prev_hash", "hash",
        ]  # fmt: skip

    def get_changes(self, obj) -> dict:
        return json.loads(obj.changes)


def paginated_trail(view, events):
    """A trail (``selectors.model_trail``, ``version_trail``, ``object_trail``), paged newest first: what
    every object's ``audit`` action answers. The action declares ``filter_backends=[]`` and
    ``pagination_class=AuditCursorPagination``, so that its schema lists what it reads (``cursor``,
    ``page_size``) and none of its viewset's list filters."""
    paginator = AuditCursorPagination()
    # view=None: the trail keeps its own newest-first order whatever ordering the parent viewset declares
    page = paginator.paginate_queryset(events, view.request, view=None)
    return paginator.get_paginated_response(AuditEventSerializer(page, many=True).data)
