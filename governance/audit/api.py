from django.http import StreamingHttpResponse
from django.utils import timezone
from django_filters.utils import translate_validation
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from governance.accounts.capabilities import Capability
from governance.accounts.permissions import can_anywhere, require_scope
from governance.audit import exports, selectors, services, signing
from governance.audit.filters import AuditEventFilter
from governance.audit.trail import AuditCursorPagination, AuditEventSerializer
from governance.core.api import errors
from governance.core.errors import NotPermitted, ValidationFailed
from governance.core.filters import FilterBackend

VerifyOut = inline_serializer(
    name="AuditVerifyResult",
    fields={
        "ok": serializers.BooleanField(),
        "events_checked": serializers.IntegerField(),
        "head_seq": serializers.IntegerField(),
        "first_broken_seq": serializers.IntegerField(allow_null=True),
        "first_broken_id": serializers.IntegerField(allow_null=True),
        "reason": serializers.CharField(),
        "checkpoints_checked": serializers.IntegerField(
            help_text="Signed checkpoints (exported and in the table) that agree with the log."
        ),
    },
)


class ErrorsAsJSON(BaseContentNegotiation):
    """The export writes CSV or JSON Lines itself; what DRF renders there is an error, always JSON.

    DRF's own negotiation reads ``?format=csv`` as the name of a renderer and answers 404 for one it
    does not have.
    """

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        renderer = JSONRenderer()
        return renderer, renderer.media_type


EXPORT_DESCRIPTION = """The events of the list (the same filters, the same scope: what you may read), in chain order,
oldest first, streamed whatever their number. Each row carries what its hash covers, in the chain's
own text: `created_at` as `YYYY-MM-DDTHH:MM:SS.ffffffZ`, `changes` exactly as hashed (a string in JSON
Lines too), `prev_hash` and `hash`.

The last line is the trailer: in CSV a row whose first field is `#trailer` and whose second is a
JSON object; in JSON Lines `{"trailer": {...}}`. It holds the number of events, the sequence number
and `prev_hash` of the first, the sequence number and `hash` of the last, whether the rows are one
unbroken stretch of the chain (`contiguous`), the filters, and the newest signed checkpoint (seq,
hash, signed_at, key_id, message, Ed25519 signature; the key is at `/api/v1/audit/public-key/`).
A file without its trailer was cut short. The export is itself recorded in the audit log
(`audit.export`, with the format and the filters)."""


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    """The append-only audit log. Filter by object, actor, action, request id and time range."""

    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilter
    filter_backends = [FilterBackend]
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
        if not can_anywhere(request.user, Capability.AUDIT_VERIFY):
            raise NotPermitted("Only auditors and admins can verify the audit chain.")
        return Response(services.verify().as_dict())

    @extend_schema(
        summary="Export the audit events you may read, as CSV or JSON Lines (streamed)",
        description=EXPORT_DESCRIPTION,
        filters=True,
        parameters=[
            OpenApiParameter(
                "format",
                OpenApiTypes.STR,
                enum=list(exports.CONTENT_TYPES),
                default="csv",
                description="`csv` (text/csv) or `jsonl` (application/x-ndjson, one JSON object per line).",
            )
        ],
        responses={
            (200, exports.CONTENT_TYPES["csv"]): OpenApiResponse(OpenApiTypes.STR, description="The events, CSV."),
            (200, exports.CONTENT_TYPES["jsonl"]): OpenApiResponse(
                OpenApiTypes.STR, description="The events, one JSON object per line."
            ),
            **errors(400),
        },
    )
    @action(
        detail=False, methods=["get"], pagination_class=None, renderer_classes=[JSONRenderer],
        content_negotiation_class=ErrorsAsJSON,
    )  # fmt: skip
    def export(self, request):
        fmt = request.query_params.get("format") or "csv"  # empty, like absent, means the default
        if fmt not in exports.CONTENT_TYPES:
            detail = f"format must be one of: {', '.join(exports.CONTENT_TYPES)}."
            raise ValidationFailed(detail, code="invalid_format", fields={"format": [detail]})
        filterset = FilterBackend().get_filterset(request, self.get_queryset(), self)
        if not filterset.is_valid():
            raise translate_validation(filterset.errors)
        filters = exports.filters_used(filterset.form.cleaned_data)
        services.export_record(actor=request.user, fmt=fmt, filters=filters)
        response = StreamingHttpResponse(
            exports.stream(events=filterset.qs, fmt=fmt, filters=filters, exported_by=request.user.get_username()),
            content_type=f"{exports.CONTENT_TYPES[fmt]}; charset=utf-8",
        )
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        response["Content-Disposition"] = f'attachment; filename="charter-audit-{stamp}.{fmt}"'
        response["Cache-Control"] = "no-store"
        return response


PublicKeyOut = inline_serializer(
    name="AuditPublicKey",
    fields={
        "algorithm": serializers.CharField(help_text="Always ed25519."),
        "key_id": serializers.CharField(help_text="sha256 of the key's DER (SubjectPublicKeyInfo), hex."),
        "public_key_pem": serializers.CharField(help_text="The public key, PEM (SubjectPublicKeyInfo)."),
        "message_format": serializers.CharField(help_text="What each checkpoint's signature covers."),
    },
)


class AuditPublicKeyView(APIView):
    """The key that verifies exported audit checkpoints, published so that anyone can check them
    without Charter. Public: pin its ``key_id`` somewhere Charter cannot change it."""

    permission_classes = [AllowAny]

    @extend_schema(
        summary="The Ed25519 public key that verifies exported audit checkpoints",
        responses={200: PublicKeyOut},
        auth=[],
    )
    def get(self, request):
        key = signing.public_key()
        return Response(
            {
                "algorithm": signing.ED25519,
                "key_id": signing.key_id(key),
                "public_key_pem": signing.public_pem(key),
                "message_format": f"{signing.MESSAGE_PREFIX}|<seq>|<hash>|<signed_at>",
            }
        )
