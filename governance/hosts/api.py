"""REST API of compute hosts: the host agent's two calls (register, heartbeat), with a token of the
``host`` scope, and the host list every signed-in user may read."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from governance.core.api import described, errors, validated
from governance.core.jsoninput import JSONField
from governance.hosts import selectors, services
from governance.hosts.filters import HostFilter
from governance.hosts.models import Host, HostStatus

_TEXT = {"type": "string"}
_BYTES = {"type": "integer", "minimum": 0, "maximum": services.MAX_BYTES}
GPU_SCHEMA = {
    "type": "object",
    "required": ["index", "name"],
    "additionalProperties": False,
    "properties": {
        "index": {"type": "integer", "minimum": 0, "maximum": 1023},
        "name": {**_TEXT, "maxLength": 200},
        "uuid": {**_TEXT, "maxLength": 100},
        "memory_total_bytes": {**_BYTES, "nullable": True},
        "driver_version": {**_TEXT, "maxLength": 50, "nullable": True},
        "cuda_version": {**_TEXT, "maxLength": 20, "nullable": True},
    },
}
INVENTORY_SCHEMA = {
    "type": "object",
    "description": "What the host agent read on the machine. `gpus` is empty on a host without a GPU, and "
    "`gpu_note` says why (no NVIDIA driver, NVML not installed, none found). A GPU's `index` appears once.",
    "required": ["cpu_cores", "gpus"],
    "additionalProperties": False,
    "properties": {
        "hostname": {**_TEXT, "maxLength": 255},
        "platform": {**_TEXT, "maxLength": 255},
        "python": {**_TEXT, "maxLength": 40},
        "cpu_model": {**_TEXT, "maxLength": 200},
        "cpu_cores": {"type": "integer", "minimum": 1, "maximum": 65536},
        "memory_total_bytes": {**_BYTES, "nullable": True},
        "gpus": {"type": "array", "maxItems": services.MAX_GPUS, "items": GPU_SCHEMA},
        "gpu_note": {**_TEXT, "maxLength": 300, "nullable": True},
    },
}
LABELS_SCHEMA = {
    "type": "object",
    "description": f'Labels to choose hosts by, e.g. {{"gpu": "h100", "env": "prod"}}: {services.LABEL_RULE}.',
    "maxProperties": services.MAX_LABELS,
    "additionalProperties": {"type": "string", "pattern": services.LABEL_VALUE_RE.pattern, "maxLength": 63},
}
GPU_STATS_SCHEMA = {
    "type": "array",
    "description": "Per GPU of the host's inventory (by `index`, each once): memory used and utilisation now; "
    "null where NVML cannot read it.",
    "maxItems": services.MAX_GPUS,
    "items": {
        "type": "object",
        "required": ["index"],
        "additionalProperties": False,
        "properties": {
            "index": {"type": "integer", "minimum": 0, "maximum": 1023},
            "memory_used_bytes": {**_BYTES, "nullable": True},
            "utilization_percent": {"type": "number", "minimum": 0, "maximum": 100, "nullable": True},
        },
    },
}
InventoryField = described(JSONField, INVENTORY_SCHEMA)
LabelsField = described(JSONField, LABELS_SCHEMA)
GpuStatsField = described(JSONField, GPU_STATS_SCHEMA)


class HostOut(serializers.ModelSerializer):
    queue = serializers.CharField(read_only=True, help_text="The Celery queue the host's worker listens on.")
    status = serializers.SerializerMethodField(help_text="From the last heartbeat and the HOST_*_SECONDS settings.")
    registered_by = serializers.CharField(source="registered_by.username", default=None)
    labels = LabelsField()
    inventory = InventoryField()
    last_gpu_stats = GpuStatsField()

    class Meta:
        model = Host
        fields = [
            "id", "name", "queue", "status", "labels", "inventory", "agent_version", "registered_by", "registered_at",
            "updated_at", "last_heartbeat_at", "last_gpu_stats",
        ]  # fmt: skip

    @extend_schema_field(serializers.ChoiceField(choices=HostStatus.choices))
    def get_status(self, obj) -> str:
        annotated = getattr(obj, "status", None)
        return annotated if annotated is not None else selectors.status_of(obj.last_heartbeat_at).value


# The service checks these fields in full and names what is wrong with its own code (invalid_name,
# invalid_labels, invalid_inventory, invalid_gpu_stats...): the fields here only document the shape.
NameField = described(serializers.CharField, {"type": "string", "pattern": services.NAME_RE.pattern, "maxLength": 60})
AgentVersionField = described(
    serializers.CharField, {"type": "string", "pattern": services.AGENT_VERSION_RE.pattern, "maxLength": 40}
)


class HostIn(serializers.Serializer):
    name = NameField(trim_whitespace=False, help_text=f"{services.NAME_RULE}.")
    labels = LabelsField(required=False, allow_null=True, default=dict)
    inventory = InventoryField()
    agent_version = AgentVersionField(required=False, trim_whitespace=False, allow_blank=True, default="",
                                      help_text="The host agent's version.")  # fmt: skip


class HeartbeatIn(serializers.Serializer):
    gpus = GpuStatsField(required=False, default=list)


@extend_schema_view(
    list=extend_schema(summary="List compute hosts with their status (?status=, ?label=key=value)"),
    retrieve=extend_schema(summary="One compute host: inventory, labels, last GPU figures",
                           responses={200: HostOut, **errors(404)}),
)  # fmt: skip
class HostViewSet(viewsets.ReadOnlyModelViewSet):
    """Compute hosts. Reading takes a session or a token with the 'read' scope; registering and heartbeats
    take the host agent's token (scope 'host', which reaches nothing else)."""

    serializer_class = HostOut
    filterset_class = HostFilter
    search_fields = ["name"]
    ordering_fields = ["name", "last_heartbeat_at", "registered_at"]
    token_scope_actions = {"create": "host", "heartbeat": "host"}  # governance.accounts.drf.TokenScopePermission

    def get_queryset(self):
        return selectors.host_list(user=self.request.user)

    @extend_schema(
        summary="Register a compute host, or register it again (the host agent; token scope 'host')",
        description="Idempotent for the token that registered the host: it updates the inventory, labels and "
        "agent version (201 the first time, 200 after). Another token may not take a registered name "
        "(409 `host_name_taken`) until that host's token is revoked or expires. Site administrators and "
        "operators may also register a host signed in; its agent's token then takes it over.",
        request=HostIn,
        responses={201: HostOut, 200: HostOut, **errors(400, 403, 409)},
    )
    def create(self, request):
        data = validated(HostIn, request.data)
        host, created = services.host_register(actor=request.user, **data)
        body = HostOut(self.get_queryset().get(pk=host.pk)).data
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(
        summary="A heartbeat: the host is alive, with its GPUs' memory use and utilisation (the agent's token)",
        description="Only the token that registered the host may send them (403 `host_token_mismatch`). Not "
        "audited: hosts send one every few seconds.",
        request=HeartbeatIn,
        responses={200: HostOut, **errors(400, 403, 404)},
    )
    @action(detail=True, methods=["post"])
    def heartbeat(self, request, pk=None):
        data = validated(HeartbeatIn, request.data)
        host = services.host_heartbeat(actor=request.user, host_id=int(pk), gpus=data["gpus"])
        return Response(HostOut(host).data)


def register(router) -> None:
    router.register("hosts", HostViewSet, basename="host")
