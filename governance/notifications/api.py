"""REST API of the notifications app: your notifications, and your teams' webhooks."""

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view, inline_serializer
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from governance.accounts.permissions import token_team
from governance.accounts.selectors import team_list
from governance.core import filters as core_filters
from governance.core.api import errors, validated
from governance.core.errors import NotFound
from governance.core.pagination import NewestFirstCursorPagination
from governance.notifications import selectors, services
from governance.notifications.models import EventKind, Notification, Webhook, WebhookDelivery

# ``event`` and ``status`` are documented as strings, not enums: enum components are named after
# the field, and these names are common enough elsewhere in the API to collide.


class NotificationOut(serializers.ModelSerializer):
    event = serializers.CharField(read_only=True, help_text=f"One of: {', '.join(EventKind.values)}.")
    team = serializers.IntegerField(source="team_id", read_only=True, allow_null=True)
    is_read = serializers.BooleanField(read_only=True)

    class Meta:
        model = Notification
        fields = ["id", "event", "title", "body", "url", "team", "created_at", "read_at", "is_read"]


class NotificationFilter(core_filters.FilterSet):
    unread = core_filters.BooleanFilter(field_name="read_at", lookup_expr="isnull", label="Only unread (true) or read")
    team = core_filters.IdFilter(field_name="team_id")

    class Meta:
        model = Notification
        fields = ["unread", "team"]


MarkedOut = inline_serializer(
    name="NotificationsMarked", fields={"marked": serializers.IntegerField(help_text="How many were unread.")}
)


@extend_schema_view(
    list=extend_schema(summary="Your notifications, newest first"),
    retrieve=extend_schema(summary="One of your notifications", responses={200: NotificationOut, **errors(404)}),
)
class NotificationViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = NotificationOut
    filterset_class = NotificationFilter
    filter_backends = [core_filters.FilterBackend]
    pagination_class = NewestFirstCursorPagination

    def get_queryset(self):
        return selectors.notification_list(user=self.request.user)

    @extend_schema(summary="Mark a notification read", request=None, responses={200: NotificationOut, **errors(404)})
    @action(detail=True, methods=["post"])
    def read(self, request, pk=None):
        notification = services.notification_mark_read(user=request.user, notification=self.get_object())
        return Response(NotificationOut(notification).data)

    @extend_schema(summary="Mark all your notifications read", request=None, responses={200: MarkedOut})
    @action(detail=False, methods=["post"], url_path="read-all")
    def read_all(self, request):
        return Response(
            {"marked": services.notification_mark_all_read(user=request.user, team_id=token_team(request.user))}
        )


class WebhookOut(serializers.ModelSerializer):
    events = serializers.ListField(child=serializers.ChoiceField(choices=EventKind.choices), read_only=True)
    team_name = serializers.CharField(source="team.name", read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Webhook
        fields = ["id", "team", "team_name", "url", "events", "is_active", "created_by", "created_at"]
        read_only_fields = fields


class WebhookCreatedOut(WebhookOut):
    secret = serializers.CharField(
        read_only=True, help_text="Shown once: store it where your receiver verifies X-Charter-Signature."
    )

    class Meta(WebhookOut.Meta):
        fields = [*WebhookOut.Meta.fields, "secret"]
        read_only_fields = fields


_EVENTS_HELP = "Event kinds to receive (default: all). A ping from 'test' is always sent."
_SECRET_HELP = (
    f"The HMAC signing secret, {services.SECRET_MIN_LENGTH}-{services.SECRET_MAX_LENGTH} characters. "
    "Write-only: never returned after creation."
)


class WebhookIn(serializers.Serializer):
    team = serializers.IntegerField()
    url = serializers.CharField(max_length=500, help_text="http:// or https:// endpoint receiving POSTed JSON.")
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=EventKind.choices),
        required=False,
        allow_empty=False,
        min_length=1,
        help_text=_EVENTS_HELP,
    )
    secret = serializers.CharField(
        write_only=True, required=False, trim_whitespace=False, help_text=_SECRET_HELP + " Generated when omitted."
    )
    is_active = serializers.BooleanField(default=True)


class WebhookPatchIn(serializers.Serializer):
    url = serializers.CharField(max_length=500, required=False)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=EventKind.choices),
        required=False,
        allow_empty=False,
        min_length=1,
        help_text=_EVENTS_HELP,
    )
    secret = serializers.CharField(
        write_only=True, required=False, trim_whitespace=False, help_text=_SECRET_HELP + " Replaces the current one."
    )
    is_active = serializers.BooleanField(required=False)


class DeliveryOut(serializers.ModelSerializer):
    event = serializers.CharField(read_only=True, help_text=f"One of: {', '.join([*EventKind.values, 'ping'])}.")
    status = serializers.CharField(read_only=True, help_text="pending, delivered or failed.")

    class Meta:
        model = WebhookDelivery
        fields = [
            "id", "webhook", "event", "event_id", "status", "attempts", "last_status_code", "last_error",
            "next_attempt_at", "delivered_at", "created_at", "payload",
        ]  # fmt: skip


DeliveryPageOut = inline_serializer(
    name="PaginatedWebhookDeliveryList",
    fields={
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
        "results": DeliveryOut(many=True),
    },
)


@extend_schema_view(
    list=extend_schema(summary="Webhooks of the teams you administer"),
    retrieve=extend_schema(summary="One webhook (team admins)", responses={200: WebhookOut, **errors(403, 404)}),
)
class WebhookViewSet(viewsets.ReadOnlyModelViewSet):
    """Team webhooks: signed JSON POSTs on review and approval events. Team admins and site administrators only."""

    serializer_class = WebhookOut
    filterset_fields = ["team", "is_active"]
    filter_backends = [core_filters.FilterBackend]

    def get_queryset(self):
        return selectors.webhook_list(user=self.request.user)

    def get_object(self):
        return selectors.webhook_get(user=self.request.user, pk=self.kwargs["pk"])

    @extend_schema(
        summary="Create a webhook (team admins)",
        description="The response carries the signing `secret`, this once.",
        request=WebhookIn,
        responses={201: WebhookCreatedOut, **errors(400, 403, 404)},
    )
    def create(self, request):
        data = validated(WebhookIn, request.data)
        team = team_list(user=request.user).filter(pk=data.pop("team")).first()
        if team is None:
            raise NotFound("No such team, or you are not a member of it.", code="team_not_found")
        webhook, secret = services.webhook_create(actor=request.user, team=team, **data)
        return Response({**WebhookOut(webhook).data, "secret": secret}, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Edit a webhook (team admins)",
        request=WebhookPatchIn,
        responses={200: WebhookOut, **errors(400, 403, 404)},
    )
    def partial_update(self, request, pk=None):
        data = validated(WebhookPatchIn, request.data)
        webhook = services.webhook_update(actor=request.user, webhook=self.get_object(), **data)
        return Response(WebhookOut(webhook).data)

    @extend_schema(summary="Delete a webhook and its delivery log", responses={204: None, **errors(403, 404)})
    def destroy(self, request, pk=None):
        services.webhook_delete(actor=request.user, webhook=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Send a test ping",
        description="Queues a `ping` delivery, sent whatever the webhook subscribed to; follow it in `deliveries`.",
        request=None,
        responses={202: DeliveryOut, **errors(403, 404)},
    )
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        delivery = services.webhook_test(actor=request.user, webhook=self.get_object())
        return Response(DeliveryOut(delivery).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Delivery log of a webhook, newest first",
        parameters=[
            OpenApiParameter("cursor", str, description="The page, from `next` or `previous`."),
            OpenApiParameter("page_size", int, description="Deliveries per page (at most 200)."),
        ],
        responses={200: DeliveryPageOut, **errors(403, 404)},
    )
    @action(detail=True, methods=["get"])
    def deliveries(self, request, pk=None):
        paginator = NewestFirstCursorPagination()
        qs = selectors.delivery_list(user=request.user, webhook=self.get_object())
        page = paginator.paginate_queryset(qs, request, view=None)
        return paginator.get_paginated_response(DeliveryOut(page, many=True).data)


def register(router) -> None:
    """Add this app's viewsets to the /api/v1/ router."""
    router.register("notifications", NotificationViewSet, basename="notification")
    router.register("webhooks", WebhookViewSet, basename="webhook")
