from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from governance.accounts.capabilities import Capability
from governance.accounts.permissions import can_anywhere, require_scope
from governance.audit import selectors, services, signing
from governance.audit.filters import AuditEventFilter
from governance.audit.trail import AuditCursorPagination, AuditEventSerializer
from governance.core.api import errors
from governance.core.errors import NotPermitted
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
