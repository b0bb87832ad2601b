"""REST API of the serving app: backends and environments (site administrators), what is live where
(and what was, at any instant), deployment actions for operators and CI, and a version's probe request."""

from __future__ import annotations

from django.urls import path
from django.utils import timezone
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from governance.core import filters as core_filters
from governance.core.api import described, errors, validated
from governance.core.errors import NotFound, ValidationFailed
from governance.core.jsoninput import JSONField
from governance.core.pagination import NewestFirstCursorPagination
from governance.registry import selectors as registry_selectors
from governance.serving import selectors, services
from governance.serving.models import (
    ActionKind,
    ActionStatus,
    BackendKind,
    Deployment,
    DeploymentAction,
    DeploymentState,
    Environment,
    ServingBackend,
)

OIP_SCHEMA = {
    "type": "object",
    "description": 'An Open Inference Protocol v2 request body: {"inputs": [{"name", "shape", "datatype", "data"}]}.',
    "required": ["inputs"],
    "properties": {
        "inputs": {
            "type": "array", "minItems": 1,
            "items": {
                "type": "object", "required": ["name", "shape", "datatype", "data"],
                "properties": {
                    "name": {"type": "string"}, "shape": {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 1}},
                    "datatype": {"type": "string"}, "data": {"type": "array"},
                },
            },
        }
    },
}  # fmt: skip
ProbeField = described(JSONField, OIP_SCHEMA)
ConfigField = described(JSONField, {"type": "object", "additionalProperties": True})


class BackendOut(serializers.ModelSerializer):
    has_credentials = serializers.SerializerMethodField()

    class Meta:
        model = ServingBackend
        fields = ["id", "name", "kind", "url", "config", "has_credentials", "created_at"]

    def get_has_credentials(self, obj) -> bool:
        return bool(obj.credentials_encrypted)


NAME_HELP = "Lowercase letters, digits and hyphens, starting and ending with a letter or digit (at most 60)."


class BackendIn(serializers.Serializer):
    name = serializers.RegexField(services.NAME_RE.pattern, max_length=60, help_text=NAME_HELP)
    kind = serializers.ChoiceField(choices=BackendKind.choices)
    url = serializers.URLField(max_length=300)
    config = ConfigField(required=False, default=dict)
    credentials = serializers.CharField(required=False, allow_blank=True, default="", max_length=20000,
                                        write_only=True, help_text="Stored encrypted; never shown again.")  # fmt: skip

    def validate_config(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("A JSON object.")
        return value


class EnvironmentOut(serializers.ModelSerializer):
    backend_name = serializers.CharField(source="backend.name")
    backend_kind = serializers.CharField(source="backend.kind")
    probe_payload = ProbeField(allow_null=True)

    class Meta:
        model = Environment
        fields = [
            "id", "name", "description", "backend", "backend_name", "backend_kind", "position", "probe_payload",
            "max_error_rate", "max_p95_ms", "observation_seconds", "min_requests", "canary_percent", "canary_auto_promote",
            "created_at",
        ]  # fmt: skip


class EnvironmentPatchIn(serializers.Serializer):
    description = serializers.CharField(max_length=300, required=False, allow_blank=True)
    position = serializers.IntegerField(min_value=0, max_value=1000, required=False)
    probe_payload = ProbeField(required=False, allow_null=True)
    max_error_rate = serializers.FloatField(min_value=0, max_value=1, required=False)
    max_p95_ms = serializers.IntegerField(min_value=1, max_value=600_000, required=False)
    observation_seconds = serializers.IntegerField(min_value=0, max_value=3600, required=False)
    min_requests = serializers.IntegerField(min_value=1, max_value=1_000_000, required=False)
    canary_percent = serializers.IntegerField(min_value=1, max_value=99, required=False)
    canary_auto_promote = serializers.BooleanField(
        required=False, help_text="Promote a canary by itself once it met the health policy over its window."
    )


class EnvironmentIn(EnvironmentPatchIn):
    name = serializers.RegexField(services.NAME_RE.pattern, max_length=60, help_text=NAME_HELP)
    backend = serializers.IntegerField(min_value=1, max_value=core_filters.MAX_ID)


@extend_schema_view(
    list=extend_schema(summary="List serving backends"),
    retrieve=extend_schema(summary="One serving backend (credentials are never shown)",
                           responses={200: BackendOut, **errors(404)}),
)  # fmt: skip
class BackendViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = BackendOut

    def get_queryset(self):
        return selectors.backend_list(user=self.request.user)

    @extend_schema(summary="Register a serving backend (site administrators)", request=BackendIn,
                   responses={201: BackendOut, **errors(400, 403, 409)})  # fmt: skip
    def create(self, request):
        data = validated(BackendIn, request.data)
        backend = services.backend_create(actor=request.user, **data)
        return Response(BackendOut(backend).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    list=extend_schema(summary="List environments (staging, production, ...) with their health policies"),
    retrieve=extend_schema(summary="One environment", responses={200: EnvironmentOut, **errors(404)}),
)  # fmt: skip
class EnvironmentViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = EnvironmentOut

    def get_queryset(self):
        return selectors.environment_list(user=self.request.user)

    @extend_schema(summary="Create an environment bound to a backend (site administrators)", request=EnvironmentIn,
                   responses={201: EnvironmentOut, **errors(400, 403, 404, 409)})  # fmt: skip
    def create(self, request):
        data = validated(EnvironmentIn, request.data)
        backend = selectors.backend_list(user=request.user).filter(pk=data.pop("backend")).first()
        if backend is None:
            raise NotFound("No such serving backend.", code="backend_not_found")
        name = data.pop("name")
        environment = services.environment_create(actor=request.user, name=name, backend=backend, **data)
        return Response(EnvironmentOut(environment).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Change an environment's description or health policy (site administrators; not its name or backend)",
        request=EnvironmentPatchIn, responses={200: EnvironmentOut, **errors(400, 403, 404)},
    )  # fmt: skip
    def partial_update(self, request, pk=None):
        data = validated(EnvironmentPatchIn, request.data)
        environment = services.environment_update(actor=request.user, environment=self.get_object(), **data)
        return Response(EnvironmentOut(environment).data)


class FiguresOut(serializers.Serializer):
    requests = serializers.IntegerField()
    errors = serializers.IntegerField()
    error_rate = serializers.FloatField(allow_null=True)
    latency_ms = serializers.FloatField(allow_null=True)
    latency_kind = serializers.ChoiceField(choices=["p95", "mean"], allow_null=True)
    read_at = serializers.DateTimeField()


class CanaryOut(serializers.Serializer):
    verdict = serializers.ChoiceField(choices=["watching", "met", "breached", "not_judged"])
    sentence = serializers.CharField()
    decision = described(JSONField, {"type": "object", "nullable": True})(allow_null=True)


class DeploymentOut(serializers.ModelSerializer):
    environment_name = serializers.CharField(source="environment.name")
    model_name = serializers.CharField(source="model.name")
    version_number = serializers.IntegerField(source="version.number")
    requested_by = serializers.CharField(source="action.requested_by.username", default=None)
    policy = serializers.SerializerMethodField()
    figures = serializers.SerializerMethodField(
        help_text="Requests served since Charter's watch first read the backend's metrics (while current)."
    )
    canary = serializers.SerializerMethodField(help_text="A current canary's health verdict; null otherwise.")

    class Meta:
        model = Deployment
        fields = [
            "id", "environment", "environment_name", "model", "model_name", "version", "version_number", "state",
            "traffic_percent", "since", "until", "action", "ended_by_action", "approval_request", "policy",
            "requested_by", "figures", "canary",
        ]  # fmt: skip

    def get_policy(self, obj) -> str | None:
        revision = obj.policy_revision
        return f"{revision.policy.name} r{revision.number}" if revision is not None else None

    @extend_schema_field(FiguresOut(allow_null=True))
    def get_figures(self, obj) -> dict | None:
        window = selectors.figures(obj)
        return window.as_dict() | {"read_at": obj.stats_at} if window is not None else None

    @extend_schema_field(CanaryOut(allow_null=True))
    def get_canary(self, obj) -> dict | None:
        if obj.state != DeploymentState.CANARY or obj.until is not None:
            return None
        verdict = selectors.canary_verdict(obj, now=timezone.now())
        return {"verdict": verdict.state, "sentence": verdict.sentence, "decision": (obj.stats or {}).get("decision")}


class DeploymentFilter(core_filters.FilterSet):
    environment = core_filters.IdFilter(field_name="environment_id")
    model = core_filters.IdFilter(field_name="model_id")
    version = core_filters.IdFilter(field_name="version_id")
    state = filters.ChoiceFilter(choices=DeploymentState.choices)
    current = core_filters.BooleanFilter(field_name="until", lookup_expr="isnull")
    at = core_filters.IsoDateTimeFilter(method="live_at", help_text="What was live at this instant (ISO 8601).")

    class Meta:
        model = Deployment
        fields = ["environment", "model", "version", "state", "current", "at"]

    def live_at(self, queryset, name, value):
        return selectors.at(queryset, value)


@extend_schema_view(
    list=extend_schema(summary="What is live where: current and past deployments; ?at= for any instant"),
    retrieve=extend_schema(summary="One deployment", responses={200: DeploymentOut, **errors(404)}),
)  # fmt: skip
class DeploymentViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = DeploymentOut
    filterset_class = DeploymentFilter
    pagination_class = NewestFirstCursorPagination

    def get_queryset(self):
        return selectors.deployment_list(user=self.request.user)


class StepOut(serializers.Serializer):
    at = serializers.DateTimeField()
    step = serializers.CharField()
    status = serializers.CharField()
    message = serializers.CharField()


class ActionOut(serializers.ModelSerializer):
    environment_name = serializers.CharField(source="environment.name")
    model_name = serializers.CharField(source="model.name")
    version_number = serializers.IntegerField(source="version.number")
    requested_by = serializers.CharField(source="requested_by.username", default=None)
    steps = StepOut(many=True)
    gate = described(JSONField, {"type": "object", "nullable": True})(allow_null=True)

    class Meta:
        model = DeploymentAction
        fields = [
            "id", "kind", "environment", "environment_name", "model", "model_name", "version", "version_number",
            "status", "reason", "requested_by", "requested_at", "started_at", "finished_at", "attempts", "steps",
            "gate", "artifact_sha256", "error_code", "error_message", "rolled_back_to", "automatic",
        ]  # fmt: skip


class ActionIn(serializers.Serializer):
    kind = serializers.ChoiceField(choices=ActionKind.choices)
    environment = serializers.IntegerField(min_value=1, max_value=core_filters.MAX_ID)
    version = serializers.IntegerField(min_value=1, max_value=core_filters.MAX_ID)
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class ActionFilter(core_filters.FilterSet):
    environment = core_filters.IdFilter(field_name="environment_id")
    model = core_filters.IdFilter(field_name="model_id")
    version = core_filters.IdFilter(field_name="version_id")
    kind = filters.ChoiceFilter(choices=ActionKind.choices)
    status = filters.ChoiceFilter(choices=ActionStatus.choices)

    class Meta:
        model = DeploymentAction
        fields = ["environment", "model", "version", "kind", "status"]


IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
    description="A retried request with the same key (same requester, action, environment and version) returns "
    "the first action with HTTP 200 instead of queuing another.",
)  # fmt: skip


@extend_schema_view(
    list=extend_schema(summary="Deployment actions, newest first"),
    retrieve=extend_schema(summary="One action: status, step-by-step log, the gate the worker saw",
                           responses={200: ActionOut, **errors(404)}),
)  # fmt: skip
class ActionViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = ActionOut
    filterset_class = ActionFilter
    pagination_class = NewestFirstCursorPagination

    def get_queryset(self):
        return selectors.action_list(user=self.request.user)

    @extend_schema(
        summary="Deploy, canary, promote, roll back or retire a version in an environment (operators; token scope "
        "'deploy')",
        description="Checked now (role, gate, probe, what is live) and again by the worker when it acts. A second "
        "action for the same model and environment while one is in flight is a 409 action_in_progress.",
        parameters=[IDEMPOTENCY_KEY], request=ActionIn, responses={201: ActionOut, 200: ActionOut,
                                                                  **errors(400, 403, 404, 409)},
    )  # fmt: skip
    def create(self, request):
        data = validated(ActionIn, request.data)
        key = request.headers.get("Idempotency-Key", "")
        if len(key) > 200:
            raise ValidationFailed("An Idempotency-Key is at most 200 characters.", code="invalid_idempotency_key")
        environment = selectors.environment_list(user=request.user).filter(pk=data["environment"]).first()
        if environment is None:
            raise NotFound("No such environment.", code="environment_not_found")
        version = registry_selectors.version_list(user=request.user).filter(pk=data["version"]).first()
        if version is None:
            raise NotFound("No such version, or you cannot see it.", code="version_not_found")
        made = services.action_request(
            actor=request.user, environment=environment, version=version, kind=data["kind"], reason=data["reason"],
            idempotency_key=key,
        )  # fmt: skip
        body = ActionOut(self.get_queryset().get(pk=made.action.pk)).data
        return Response(body, status=status.HTTP_201_CREATED if made.created else status.HTTP_200_OK)


class ProbeIn(serializers.Serializer):
    payload = ProbeField()


class ProbeOut(serializers.Serializer):
    version = serializers.IntegerField(source="version_id")
    payload = ProbeField()
    updated_at = serializers.DateTimeField()


class ProbeView(APIView):
    @extend_schema(summary="The probe request a version's deployments are checked with",
                   responses={200: ProbeOut, **errors(404)})  # fmt: skip
    def get(self, request, pk: int):
        probe = getattr(self._version(request, pk), "probe", None)
        if probe is None:
            raise NotFound("This version has no probe request.", code="probe_not_found")
        return Response(ProbeOut(probe).data)

    @extend_schema(summary="Set the probe request of a version (authors and operators)", request=ProbeIn,
                   responses={200: ProbeOut, **errors(400, 403, 404)})  # fmt: skip
    def put(self, request, pk: int):
        data = validated(ProbeIn, request.data)
        probe = services.probe_set(actor=request.user, version=self._version(request, pk), payload=data["payload"])
        return Response(ProbeOut(probe).data)

    def _version(self, request, pk: int):
        version = registry_selectors.version_list(user=request.user).filter(pk=pk).first()
        if version is None:
            raise NotFound("No such version, or you cannot see it.", code="version_not_found")
        return version


def register(router) -> None:
    router.register("serving-backends", BackendViewSet, basename="servingbackend")
    router.register("environments", EnvironmentViewSet, basename="environment")
    router.register("deployments", DeploymentViewSet, basename="deployment")
    router.register("deployment-actions", ActionViewSet, basename="deploymentaction")


urlpatterns = [path("versions/<int:pk>/probe/", ProbeView.as_view(), name="version-probe")]
