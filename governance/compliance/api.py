"""REST API of the compliance app: regulatory mappings (read by everyone signed in, edited by site
administrators, every edit a kept revision), the regulatory report of a model, and the record of what
was decided and live in a period (JSON and PDF)."""

from __future__ import annotations

import datetime as dt
import re

from django.db.models import Count, Q
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from governance.compliance import evidence, presenters, selectors, services
from governance.compliance.models import Framework, MappingItem, MappingRevision
from governance.core import filters as core_filters
from governance.core.api import described, errors, validated
from governance.core.errors import NotFound
from governance.core.lifecycle import RiskTier, Stage
from governance.registry import selectors as registry_selectors

# --- mappings ---------------------------------------------------------------------------------


def _evidence_code() -> serializers.ChoiceField:
    return serializers.ChoiceField(choices=evidence.choices())


class FrameworkOut(serializers.ModelSerializer):
    item_count = serializers.IntegerField(
        read_only=True, help_text="Items listed in reports (withdrawn ones left out)."
    )

    class Meta:
        model = Framework
        fields = ["id", "key", "name", "source", "description", "item_count"]


class MappingItemOut(serializers.ModelSerializer):
    framework_key = serializers.CharField(source="framework.key", read_only=True)
    evidence = serializers.ListField(child=_evidence_code(), read_only=True, help_text="What covers the item.")

    class Meta:
        model = MappingItem
        fields = [
            "id", "framework", "framework_key", "reference", "position", "revision", "title", "summary", "evidence",
            "active", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = fields


class MappingRevisionOut(serializers.ModelSerializer):
    evidence = serializers.ListField(child=_evidence_code(), read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = MappingRevision
        fields = ["number", "title", "summary", "evidence", "active", "comment", "created_by", "created_at"]
        read_only_fields = fields


def _words(name: str) -> type[serializers.CharField]:
    """A text that needs a letter or a digit, at most ``services.LIMITS[name]`` characters as sent."""
    return described(
        serializers.CharField, {"type": "string", "pattern": services.WORDS, "maxLength": services.LIMITS[name]}
    )


_Reference, _Title, _Summary = _words("reference"), _words("title"), _words("summary")
_EVIDENCE_HELP = "Requirement codes: card.<section>, evaluation.<kind>, approval, audit, monitoring."


class MappingItemIn(serializers.Serializer):
    framework = serializers.IntegerField(min_value=1, max_value=core_filters.MAX_ID)
    reference = _Reference(max_length=services.LIMITS["reference"], trim_whitespace=False,
                           help_text='The official reference number, e.g. "Art. 10" or "MAP 2.3".')  # fmt: skip
    title = _Title(max_length=services.LIMITS["title"], trim_whitespace=False)
    summary = _Summary(max_length=services.LIMITS["summary"], trim_whitespace=False,
                       help_text="A short paraphrase in your own words; never copy the official text.")  # fmt: skip
    evidence = serializers.ListField(
        child=_evidence_code(), min_length=1, max_length=len(evidence.CODES), help_text=_EVIDENCE_HELP
    )
    comment = serializers.CharField(
        max_length=services.LIMITS["comment"], required=False, allow_blank=True, default="", trim_whitespace=False
    )


class MappingRevisionIn(serializers.Serializer):
    title = _Title(max_length=services.LIMITS["title"], required=False, trim_whitespace=False)
    summary = _Summary(max_length=services.LIMITS["summary"], required=False, trim_whitespace=False)
    evidence = serializers.ListField(
        child=_evidence_code(), min_length=1, max_length=len(evidence.CODES), required=False, help_text=_EVIDENCE_HELP
    )
    active = serializers.BooleanField(required=False, help_text="false withdraws the item from reports.")
    comment = serializers.CharField(
        max_length=services.LIMITS["comment"], required=False, allow_blank=True, default="", trim_whitespace=False
    )
    based_on = serializers.IntegerField(
        min_value=1, max_value=core_filters.MAX_ID, required=False,
        help_text="The revision you edited; 409 revision_stale when the item moved on since.",
    )  # fmt: skip


class MappingItemFilter(core_filters.FilterSet):
    framework = core_filters.IdFilter(field_name="framework_id")
    active = core_filters.BooleanFilter(field_name="active")

    class Meta:
        model = MappingItem
        fields = ["framework", "active"]


@extend_schema_view(
    list=extend_schema(summary="Regulatory frameworks and how many items each maps"),
    retrieve=extend_schema(summary="One regulatory framework", responses={200: FrameworkOut, **errors(404)}),
)
class FrameworkViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = FrameworkOut
    pagination_class = None  # a handful, all of them
    filter_backends = []

    def get_queryset(self):
        # an aggregate drops Meta.ordering: the order is said again
        return (
            selectors.framework_list(user=self.request.user)
            .annotate(item_count=Count("items", filter=Q(items__active=True)))
            .order_by("position", "id")
        )


_CREATE_DESCRIPTION = (
    "Site administrators only (403 for everyone else, and for a token limited to one team); the token needs the "
    "`admin` scope. 404 for an unknown framework, 409 `duplicate_reference` when the framework already has the "
    "reference. Audited as `compliance.item.create`."
)
_REVISE_DESCRIPTION = (
    "Site administrators only. Fields left out keep their current value; the item's earlier revisions stay "
    "readable. 409 `revision_unchanged` when nothing changes, 409 `revision_stale` when `based_on` is not the "
    "current revision. Audited as `compliance.item.revise`."
)


@extend_schema_view(
    list=extend_schema(summary="Items of the regulatory mappings, framework by framework"),
    retrieve=extend_schema(
        summary="One mapping item, as its newest revision says", responses={200: MappingItemOut, **errors(404)}
    ),
)
class MappingItemViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = MappingItemOut
    filterset_class = MappingItemFilter
    filter_backends = [core_filters.FilterBackend]

    def get_queryset(self):
        return selectors.item_list(user=self.request.user).order_by("framework__position", "position", "id")

    @extend_schema(
        summary="Add an item to a regulatory framework (site administrators)",
        description=_CREATE_DESCRIPTION,
        request=MappingItemIn,
        responses={201: MappingItemOut, **errors(400, 403, 404, 409)},
    )
    def create(self, request):
        data = validated(MappingItemIn, request.data)
        framework = selectors.framework_list(user=request.user).filter(pk=data.pop("framework")).first()
        if framework is None:
            raise NotFound("No such regulatory framework.", code="framework_not_found")
        item = services.mapping_item_create(actor=request.user, framework=framework, **data)
        return Response(MappingItemOut(item).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Every revision of the item, newest first", methods=["GET"],
        responses={200: MappingRevisionOut(many=True), **errors(404)},
    )  # fmt: skip
    @extend_schema(
        summary="Revise the item: a new revision (site administrators)", methods=["POST"],
        description=_REVISE_DESCRIPTION, request=MappingRevisionIn,
        responses={201: MappingRevisionOut, **errors(400, 403, 404, 409)},
    )  # fmt: skip
    @action(detail=True, methods=["get", "post"], pagination_class=None)
    def revisions(self, request, pk=None):
        item = self.get_object()
        if request.method == "POST":
            data = validated(MappingRevisionIn, request.data)
            revision = services.mapping_item_revise(actor=request.user, item=item, **data)
            return Response(MappingRevisionOut(revision).data, status=status.HTTP_201_CREATED)
        return Response(MappingRevisionOut(selectors.revision_list(item=item), many=True).data)


# --- the regulatory report of a model ---------------------------------------------------------


class _Link(serializers.Serializer):
    requirement = serializers.CharField(help_text="A requirement code, as the item's evidence names it.")
    label = serializers.CharField()
    status = serializers.CharField(help_text="covered or missing.")
    detail = serializers.CharField()
    link = serializers.CharField(help_text="The page of the evidence, or where to add it; empty when there is none.")
    link_text = serializers.CharField()


class _ReportItem(serializers.Serializer):
    id = serializers.IntegerField()
    reference = serializers.CharField()
    title = serializers.CharField()
    summary = serializers.CharField()
    revision = serializers.IntegerField(help_text="The mapping item's revision the report used.")
    status = serializers.CharField(help_text="covered (every requirement is) or missing.")
    evidence = _Link(many=True)


class _ReportFramework(serializers.Serializer):
    id = serializers.IntegerField()
    key = serializers.CharField()
    name = serializers.CharField()
    source = serializers.CharField()
    covered = serializers.IntegerField()
    missing = serializers.IntegerField()
    items = _ReportItem(many=True)


class _ReportModel(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    team = serializers.IntegerField()
    team_name = serializers.CharField()
    risk_tier = serializers.ChoiceField(choices=RiskTier.choices)
    url = serializers.CharField()


class _ReportVersion(serializers.Serializer):
    id = serializers.IntegerField()
    number = serializers.IntegerField()
    stage = serializers.ChoiceField(choices=Stage.choices)
    url = serializers.CharField()


class ModelReportOut(serializers.Serializer):
    model = _ReportModel()
    version = _ReportVersion(allow_null=True, help_text="The version judged; null when the model has none.")
    latest = serializers.BooleanField(help_text="The version judged is the model's newest.")
    generated_at = serializers.DateTimeField()
    frameworks = _ReportFramework(many=True)
    notes = serializers.ListField(child=serializers.CharField())


class QueryInteger(serializers.IntegerField):
    """A whole number written in digits only, as the schema says (DRF alone also reads " 5" and "5.0")."""

    def to_internal_value(self, data):
        if isinstance(data, str) and not (data.isascii() and data.isdigit()):
            self.fail("invalid")
        return super().to_internal_value(data)


class ModelReportQuery(serializers.Serializer):
    version = QueryInteger(min_value=1, max_value=core_filters.MAX_ID, required=False)


def _query(serializer_class, request) -> dict:
    """The query string validated like a body (unknown parameters refused); an empty value is no value."""
    query = request.query_params.copy()
    for name in [name for name, value in query.items() if value == ""]:
        del query[name]
    return validated(serializer_class, query)


class ModelReportView(APIView):
    @extend_schema(
        summary="Regulatory report of a model: each framework's items, covered or missing, with links",
        description="For the model's newest version, or `version` (one of the model's: 404 otherwise). Anyone who "
        "can see the model may read it. A requirement links to its evidence (card section, evaluation run, "
        "review, audit trail) or to where to add it. Monitoring is never covered: Charter records none yet.",
        parameters=[
            OpenApiParameter(
                "version", {"type": "integer", "minimum": 1, "maximum": core_filters.MAX_ID},
                description="A version of this model (default: its newest).",
            )
        ],
        responses={200: ModelReportOut, **errors(400, 404)},
    )  # fmt: skip
    def get(self, request, pk: int):
        query = _query(ModelReportQuery, request)
        model = registry_selectors.model_list(user=request.user).filter(pk=pk).first()
        if model is None:
            raise NotFound("No such model, or you cannot see it.", code="model_not_found")
        version = None
        if "version" in query:
            version = (
                registry_selectors.version_list(user=request.user, model=model).filter(pk=query["version"]).first()
            )
            if version is None:
                raise NotFound("No such version of this model.", code="version_not_found")
        report = selectors.model_report(user=request.user, model=model, version=version)
        return Response(ModelReportOut(presenters.report_document(report)).data)


# --- what was decided and live ----------------------------------------------------------------

MAX_DAYS = 3660
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class IsoDate(serializers.Field):
    """A calendar date written YYYY-MM-DD, and nothing else (Python also reads 20260101 and 2026-W01-1)."""

    def to_internal_value(self, data):
        if not isinstance(data, str) or not _ISO_DATE.fullmatch(data):
            self.fail("invalid")
        try:
            return dt.date.fromisoformat(data)
        except ValueError:
            self.fail("invalid")

    def to_representation(self, value):
        return value.isoformat()

    default_error_messages = {"invalid": "Give a date as YYYY-MM-DD."}


class RecordQuery(serializers.Serializer):
    until = IsoDate(required=False)
    days = QueryInteger(min_value=1, max_value=MAX_DAYS, required=False)


_RECORD_PARAMETERS = [
    OpenApiParameter(
        "until", OpenApiTypes.DATE,
        description="The last day of the period (UTC), and the day whose end the live versions are read at. "
        "Default: today.",
    ),
    OpenApiParameter(
        "days", {"type": "integer", "minimum": 1, "maximum": MAX_DAYS},
        description="How many days the period covers, ending with `until` (default 30; 1 for a single date).",
    ),
]  # fmt: skip


def record_query(request) -> tuple[dt.date, int]:
    query = _query(RecordQuery, request)
    return query.get("until") or dt.datetime.now(dt.UTC).date(), query.get("days") or 30


class _Team(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class _DecisionBy(serializers.Serializer):
    by = serializers.CharField()
    decision = serializers.CharField(help_text="approve, request_changes or reject.")
    decided_at = serializers.DateTimeField()
    comment = serializers.CharField()
    roles = serializers.ListField(child=serializers.CharField())


class _Closed(serializers.Serializer):
    review = serializers.IntegerField()
    review_url = serializers.CharField()
    outcome = serializers.ChoiceField(choices=["approved", "rejected", "changes_requested"])
    closed_at = serializers.DateTimeField()
    closed_by = serializers.CharField(allow_null=True)
    audit_seq = serializers.IntegerField(help_text="The closing event's place in the audit chain.")
    model = serializers.IntegerField()
    model_name = serializers.CharField()
    team = serializers.IntegerField()
    team_name = serializers.CharField()
    version = serializers.IntegerField()
    version_number = serializers.IntegerField()
    version_url = serializers.CharField()
    environments = serializers.ListField(child=serializers.CharField())
    policy = serializers.IntegerField()
    policy_name = serializers.CharField()
    policy_revision = serializers.IntegerField(help_text="The policy revision the review was judged under.")
    decisions = _DecisionBy(many=True)


class _Live(serializers.Serializer):
    version = serializers.IntegerField()
    version_number = serializers.IntegerField()
    version_url = serializers.CharField()
    model = serializers.IntegerField()
    model_name = serializers.CharField()
    team = serializers.IntegerField()
    team_name = serializers.CharField()
    stage = serializers.ChoiceField(choices=["approved", "deployed"], help_text="Its stage at the end of the period.")
    stage_since = serializers.DateTimeField()
    current_stage = serializers.ChoiceField(choices=Stage.choices)
    review = serializers.IntegerField(allow_null=True, help_text="The newest review that approved it by then.")
    approved_at = serializers.DateTimeField(allow_null=True)
    approved_for = serializers.ListField(child=serializers.CharField())


class _Exception(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["open_review", "live_without_approval", "gate_failing"])
    detail = serializers.CharField()
    review = serializers.IntegerField(allow_null=True)
    url = serializers.CharField()
    since = serializers.DateTimeField(allow_null=True)
    version = serializers.IntegerField()
    version_number = serializers.IntegerField()
    model_name = serializers.CharField()
    team_name = serializers.CharField()


class DecisionRecordOut(serializers.Serializer):
    since = serializers.DateField()
    until = serializers.DateField()
    days = serializers.IntegerField()
    starts_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField(allow_null=True, help_text="Exclusive; null past the year 9999.")
    generated_at = serializers.DateTimeField()
    teams = _Team(many=True)
    decisions = _Closed(many=True)
    decisions_total = serializers.IntegerField()
    live = _Live(many=True)
    live_total = serializers.IntegerField()
    exceptions = _Exception(many=True)
    notes = serializers.ListField(child=serializers.CharField())


_RECORD_DESCRIPTION = (
    "Reviews closed in the period (approved, rejected, changes requested) with each decision, who made it and "
    "the policy revision it was judged under; the versions approved or deployed at the end of `until` (from the "
    "audit trail of transitions: Charter has no serving records yet); and the open exceptions: reviews still "
    "open then, live versions with no recorded approval and, when the period reaches today, deployed versions "
    "whose gate fails now. Only the teams you can see."
)


class DecisionRecordView(APIView):
    @extend_schema(
        summary="What was decided in a period, and what was live at its end",
        description=_RECORD_DESCRIPTION,
        parameters=_RECORD_PARAMETERS,
        responses={200: DecisionRecordOut, **errors(400)},
    )
    def get(self, request):
        until, days = record_query(request)
        return Response(DecisionRecordOut(selectors.decision_record(user=request.user, until=until, days=days)).data)


class DecisionRecordPdfView(APIView):
    @extend_schema(
        summary="The same record as a PDF",
        description=_RECORD_DESCRIPTION,
        parameters=_RECORD_PARAMETERS,
        responses={(200, "application/pdf"): OpenApiTypes.BINARY, **errors(400)},
    )
    def get(self, request):
        until, days = record_query(request)
        record = selectors.decision_record(user=request.user, until=until, days=days)
        from governance.compliance import pdf  # fpdf and its fonts load on the first PDF, not in every process

        return pdf.response(record, user=request.user)


def register(router) -> None:
    """Add this app's viewsets to the /api/v1/ router."""
    router.register("compliance/frameworks", FrameworkViewSet, basename="complianceframework")
    router.register("compliance/mapping-items", MappingItemViewSet, basename="mappingitem")


urlpatterns = [
    path("compliance/models/<int:pk>/report/", ModelReportView.as_view(), name="compliance-model-report"),
    path("compliance/decision-record/", DecisionRecordView.as_view(), name="compliance-decision-record"),
    path("compliance/decision-record/pdf/", DecisionRecordPdfView.as_view(), name="compliance-decision-record-pdf"),
]
