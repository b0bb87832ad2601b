import json

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from governance.accounts.permissions import can_anywhere, require_scope
from governance.audit import selectors, services
from governance.audit.filters import AuditEventFilter
from governance.audit.models import AuditEvent
from governance.core.api import errors
from governance.core.errors import NotPermitted
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


def paginated_trail(view, obj):
    """The audit events of one object, paged newest first: used by every object's ``audit`` action."""
    paginator = AuditCursorPagination()
    # view=None: the trail keeps its own newest-first order whatever ordering the parent viewset declares
    page = paginator.paginate_queryset(selectors.object_trail(user=view.request.user, obj=obj), view.request, view=None)
    return paginator.get_paginated_response(AuditEventSerializer(page, many=True).data)


VerifyOut = inline_serializer(
    name="AuditVerifyResult",
    fields={
        "ok": serializers.BooleanField(),
        "events_checked": serializers.IntegerField(),
        "head_seq": serializers.IntegerField(),
        "first_broken_seq": serializers.IntegerField(allow_null=True),
        "first_broken_id": serializers.IntegerField(allow_null=True),
        "reason": serializers.CharField(),
    },
)


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    """The append-only audit log. Filter by object, actor, action, request id and time range."""

    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilter
    filter_backends = [DjangoFilterBackend]
    pagination_class = AuditCursorPagination

    def get_queryset(self):
        return selectors.event_list(user=self.request.user)

    @extend_schema(
        summary="Verify the whole hash chain (auditors and admins)",
        request=None,
        responses={200: VerifyOut, **errors(403)},
    )
    @action(detail=False, methods=["post"])
    def verify(self, request):
        require_scope(request.user, "read")
        if not can_anywhere(request.user, "audit.verify"):
            raise NotPermitted("Only auditors and admins can verify the audit chain.")
        return Response(services.verify().as_dict())
