import functools

from django.contrib.auth import get_user_model
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.response import Response

from governance.accounts.selectors import team_list
from governance.audit import selectors as audit_selectors
from governance.audit.trail import AuditCursorPagination, AuditEventSerializer, paginated_trail
from governance.core.api import FlatInput, UploadParsers, described, errors, validated
from governance.core.errors import Conflict, NotFound
from governance.core.filters import MAX_ID, FilterBackend, id_from
from governance.core.jsoninput import JSONField
from governance.core.pagination import NewestFirstCursorPagination
from governance.registry import artifacts, selectors, services, validation
from governance.registry import bundle as evidence_bundle
from governance.registry.filters import ModelFilter, VersionFilter
from governance.registry.models import (
    CARD_SECTION_KEYS,
    TRANSITIONS,
    ArtifactFormat,
    Framework,
    ModelCard,
    ModelVersion,
    RegisteredModel,
    RiskTier,
    Stage,
)

User = get_user_model()


class KpiSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    target = serializers.CharField(max_length=100, required=False, allow_blank=True)
    unit = serializers.CharField(max_length=40, required=False, allow_blank=True)


class ModelOut(serializers.ModelSerializer):
    team_name = serializers.CharField(source="team.name", read_only=True)
    owners = serializers.SlugRelatedField(slug_field="username", many=True, read_only=True)

    class Meta:
        model = RegisteredModel
        fields = [
            "id", "team", "team_name", "name", "description", "use_case", "risk_tier", "business_kpis", "owners",
            "latest_version_number", "version_count", "created_at", "updated_at",
        ]  # fmt: skip


class ModelIn(serializers.Serializer):
    team = serializers.IntegerField()
    name = serializers.CharField(max_length=120)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    use_case = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    risk_tier = serializers.ChoiceField(choices=RiskTier.choices, default=RiskTier.LIMITED)
    business_kpis = KpiSerializer(many=True, required=False, default=list)
    owners = serializers.ListField(child=serializers.CharField(), required=False, default=list)


class ModelPatchIn(serializers.Serializer):
    name = serializers.CharField(max_length=120, required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    use_case = serializers.CharField(max_length=200, required=False, allow_blank=True)
    risk_tier = serializers.ChoiceField(choices=RiskTier.choices, required=False)
    business_kpis = KpiSerializer(many=True, required=False)
    owners = serializers.ListField(child=serializers.CharField(), required=False)


class RetierIn(serializers.Serializer):
    risk_tier = serializers.ChoiceField(choices=RiskTier.choices)
    reason = serializers.CharField(max_length=2000, help_text="Why the tier changes; kept in the audit log.")


def _users(usernames: list[str]):
    found = list(User.objects.filter(username__in=usernames))
    missing = sorted(set(usernames) - {u.username for u in found})
    if missing:
        raise serializers.ValidationError({"owners": [f"Unknown user(s): {', '.join(missing)}."]})
    return found


@extend_schema_view(
    list=extend_schema(summary="List models you can see", parameters=[OpenApiParameter("search", str)]),
    retrieve=extend_schema(summary="One model", responses={200: ModelOut, **errors(404)}),
)
class ModelViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = ModelOut
    filterset_class = ModelFilter
    search_fields = ["name", "use_case"]
    ordering_fields = ["name", "updated_at", "created_at", "risk_tier", "version_count"]
    ordering = ["name"]

    def get_queryset(self):
        return selectors.model_list(user=self.request.user).prefetch_related("owners")

    @extend_schema(summary="Register a model", request=ModelIn, responses={201: ModelOut, **errors(400, 403, 404, 409)})
    def create(self, request):
        data = validated(ModelIn, request.data)
        team = team_list(user=request.user).filter(pk=data.pop("team")).first()
        if team is None:
            raise NotFound("No such team, or you are not a member of it.", code="team_not_found")
        owners = _users(data.pop("owners"))
        model = services.model_create(actor=request.user, team=team, owners=owners, **data)
        return Response(ModelOut(model).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Edit a model",
        description="The risk tier is not edited here: sending another tier than the current one is refused with "
        "400 `risk_tier_is_an_action` (use `POST /api/v1/models/{id}/risk-tier/`). A change of the use case, "
        "description, KPIs or owners re-freezes the open and approved reviews of the model's versions.",
        request=ModelPatchIn,
        responses={200: ModelOut, **errors(400, 403, 404, 409)},
    )
    def partial_update(self, request, pk=None):
        data = validated(ModelPatchIn, request.data)
        owners = _users(data.pop("owners")) if "owners" in data else None
        model = services.model_update(actor=request.user, model=self.get_object(), owners=owners, **data)
        return Response(ModelOut(model).data)

    @extend_schema(summary="Delete a model that has no versions", responses={204: None, **errors(403, 404, 409)})
    def destroy(self, request, pk=None):
        services.model_delete(actor=request.user, model=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Change the model's risk tier (team admins and approvers, with a reason)",
        description="The tier chooses the model's default approval policy. Every open or approved review of the "
        "model's versions is frozen again: approvals given so far stop counting, approved versions go back to "
        "review under the new tier's policy, and reviewers are told. 403 for other roles (authors included), "
        "400 without a reason, 409 `risk_tier_unchanged` for the current tier.",
        request=RetierIn,
        responses={200: ModelOut, **errors(400, 403, 404, 409)},
    )
    @action(detail=True, methods=["post"], url_path="risk-tier")
    def risk_tier(self, request, pk=None):
        data = validated(RetierIn, request.data)
        model = services.model_retier(actor=request.user, model=self.get_object(), **data)
        return Response(ModelOut(model).data)

    @extend_schema(
        summary="Audit trail of this model",
        description="Every event about the model and its versions, newest first: the model's own, each version's "
        "(lifecycle steps, checklist ticks, refusals) and those of their card revisions, review requests, "
        "decisions and evaluation runs.",
        responses={200: AuditEventSerializer(many=True)},
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=AuditCursorPagination)
    def audit(self, request, pk=None):
        return paginated_trail(self, audit_selectors.model_trail(user=request.user, model=self.get_object()))


class VersionOut(serializers.Serializer):
    """Declared field by field (not a ModelSerializer): it is on the registration hot path."""

    id = serializers.IntegerField(read_only=True)
    model = serializers.IntegerField(source="model_id", read_only=True)
    model_name = serializers.CharField(source="model.name", read_only=True)
    team = serializers.IntegerField(source="model.team_id", read_only=True)
    number = serializers.IntegerField(read_only=True)
    stage = serializers.ChoiceField(choices=Stage.choices, read_only=True)
    description = serializers.CharField(read_only=True)
    artifact_sha256 = serializers.CharField(read_only=True)
    artifact_size = serializers.IntegerField(read_only=True)
    artifact_name = serializers.CharField(read_only=True)
    artifact_metadata = serializers.JSONField(read_only=True)
    framework = serializers.ChoiceField(choices=Framework.choices, read_only=True)
    artifact_format = serializers.ChoiceField(choices=ArtifactFormat.choices, read_only=True)
    training_data_ref = serializers.CharField(read_only=True)
    evaluation_data_ref = serializers.CharField(read_only=True)
    preprocessing_ref = serializers.CharField(read_only=True)
    preprocessing_fingerprint = serializers.CharField(read_only=True)
    hyperparameters = serializers.JSONField(read_only=True)
    metrics = serializers.JSONField(read_only=True)
    tags = serializers.JSONField(read_only=True)
    card_completeness = serializers.IntegerField(read_only=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True, allow_null=True, default=None)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)
    stage_changed_at = serializers.DateTimeField(read_only=True, allow_null=True)
    allowed_transitions = serializers.SerializerMethodField()

    def get_allowed_transitions(self, obj) -> list[str]:
        return list(obj.allowed_transitions())

    def to_representation(self, v):
        creator = v.created_by
        row = {name: getattr(v, name) for name in selectors.VERSION_ROW if "__" not in name}
        row.update({"model__name": v.model.name, "model__team_id": v.model.team_id,
                    "created_by__username": creator.username if creator is not None else None})  # fmt: skip
        return version_out(row)


def version_out(r) -> dict:
    """A version as the API shows it, from a ``selectors.VERSION_ROW`` dict (``.values()`` or ``newest_versions``).

    The same output as VersionOut's declared fields (tests compare the two), without DRF's
    per-field machinery or model instances: a page of 50 versions was 12 ms of CPU through the
    generic path, and building three model instances per row was most of what remained.
    """
    return {
        "id": r["id"], "model": r["model_id"], "model_name": r["model__name"], "team": r["model__team_id"],
        "number": r["number"], "stage": r["stage"], "description": r["description"],
        "artifact_sha256": r["artifact_sha256"], "artifact_size": r["artifact_size"], "artifact_name": r["artifact_name"],
        "artifact_metadata": r["artifact_metadata"], "framework": r["framework"], "artifact_format": r["artifact_format"],
        "training_data_ref": r["training_data_ref"], "evaluation_data_ref": r["evaluation_data_ref"],
        "preprocessing_ref": r["preprocessing_ref"], "preprocessing_fingerprint": r["preprocessing_fingerprint"],
        "hyperparameters": r["hyperparameters"], "metrics": r["metrics"], "tags": r["tags"],
        "card_completeness": r["card_completeness"], "created_by": r["created_by__username"],
        "created_at": _iso(r["created_at"]), "updated_at": _iso(r["updated_at"]),
        "stage_changed_at": _iso(r["stage_changed_at"]), "allowed_transitions": list(TRANSITIONS[r["stage"]]),
    }  # fmt: skip


def _iso(value):
    """DRF's ISO 8601 rendering of an aware UTC datetime."""
    if value is None:
        return None
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


# the columns behind selectors.VERSION_ROW (the training profile is not part of the API's rendering)
_VERSION_COLUMNS = [f.name for f in ModelVersion._meta.concrete_fields if f.name != "training_profile"]


def _newest_of_one_model(params) -> int | None:
    """The model id when a list asks for nothing but the first page of one model's versions."""
    if set(params) - {"model", "page_size"} or len(params.getlist("model")) != 1:
        return None
    value = params["model"]
    return id_from(value)  # anything else, 0 and ids past a bigint included, goes to the filter, which refuses it


class VersionPagination(NewestFirstCursorPagination):
    """Newest first. Within one model by number, so the (model, number) index serves the page
    however many versions other models have registered since."""

    def get_ordering(self, request, queryset, view):
        return ("-number",) if request.query_params.get("model") else ("-id",)


def _checked(check):
    """A serializer validator from one of the shared metadata checks."""

    def validate(value):
        if problem := check(value):
            raise serializers.ValidationError(problem)
        return value

    return validate


_TAG = {"type": "string", "minLength": 1, "maxLength": validation.MAX_TAG_LENGTH}


class VersionMetaFields(serializers.Serializer):
    description = serializers.CharField(required=False, allow_blank=True)
    framework = serializers.ChoiceField(choices=Framework.choices, required=False)
    artifact_format = serializers.ChoiceField(choices=ArtifactFormat.choices, required=False)
    training_data_ref = serializers.CharField(max_length=500, required=False, allow_blank=True)
    evaluation_data_ref = serializers.CharField(max_length=500, required=False, allow_blank=True)
    preprocessing_ref = serializers.CharField(max_length=500, required=False, allow_blank=True)
    preprocessing_fingerprint = serializers.CharField(max_length=128, required=False, allow_blank=True)
    hyperparameters = described(JSONField, {"type": "object"})(
        required=False, validators=[_checked(validation.hyperparameters_problem)]
    )
    metrics = described(JSONField, {"type": "object", "additionalProperties": {"type": "number"}})(
        required=False, validators=[_checked(validation.metrics_problem)]
    )
    tags = described(JSONField, {"type": "array", "items": _TAG})(
        required=False, validators=[_checked(validation.tags_problem)]
    )


class VersionIn(FlatInput, VersionMetaFields):
    model = serializers.IntegerField()
    training_profile = JSONField(
        binary=True, required=False, validators=[_checked(validation.training_profile_problem)],
        help_text="Statistics of the training data (manage.py profile_data train.csv); evaluation data is "
        "compared with it by data-quality runs.",
    )  # fmt: skip
    artifact = serializers.FileField(allow_empty_file=True, help_text="The serialised model (multipart upload).")
    artifact_sha256 = serializers.RegexField(
        r"^[0-9a-fA-F]{64}$", required=False, help_text="If given, the upload is refused unless its sha256 matches."
    )


class TransitionIn(serializers.Serializer):
    to = serializers.ChoiceField(choices=Stage.choices)
    reason = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class CardOut(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    missing_sections = serializers.SerializerMethodField()

    class Meta:
        model = ModelCard
        fields = [
            "id",
            "version",
            "revision",
            "sections",
            "completeness",
            "missing_sections",
            "comment",
            "created_by",
            "created_at",
        ]

    def get_missing_sections(self, obj) -> list[str]:
        return obj.missing_sections()


class CardIn(serializers.Serializer):
    sections = described(
        serializers.DictField,
        {
            "type": "object",
            "properties": {key: {"type": "string", "maxLength": 20000} for key in CARD_SECTION_KEYS},
            "additionalProperties": False,
        },
    )(child=serializers.CharField(allow_blank=True, max_length=20000))
    comment = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")

    def validate_sections(self, value):
        unknown = sorted(set(value) - set(CARD_SECTION_KEYS))
        if unknown:
            raise serializers.ValidationError(
                f"Unknown section(s) {', '.join(unknown)}; use {', '.join(CARD_SECTION_KEYS)}."
            )
        return value


class FileDownload(DefaultContentNegotiation):
    """A file download (the artifact, the evidence zip) answers whatever the Accept header asks (its
    own type included, which no renderer names: the file is a file response); its refusals are JSON,
    as everywhere else."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class DiffOut(serializers.Serializer):
    old = serializers.DictField()
    new = serializers.DictField()
    fields = serializers.ListField(child=serializers.DictField())
    hyperparameters = serializers.ListField(child=serializers.DictField())
    metrics = serializers.ListField(child=serializers.DictField())
    tags = serializers.DictField()
    card = serializers.ListField(child=serializers.DictField())
    card_completeness = serializers.DictField()


@extend_schema_view(
    list=extend_schema(summary="List versions (newest first)"),
    retrieve=extend_schema(summary="One version", responses={200: VersionOut, **errors(404)}),
)
class VersionViewSet(UploadParsers, viewsets.ReadOnlyModelViewSet):
    serializer_class = VersionOut
    filterset_class = VersionFilter
    pagination_class = VersionPagination
    filter_backends = [FilterBackend]

    def get_queryset(self):
        # only the columns VersionOut reads: building a page of full version, model and user rows
        # cost more than rendering it
        return (
            selectors.version_list(user=self.request.user)
            .select_related(None)
            .select_related("model", "created_by")
            .only(*_VERSION_COLUMNS, "model__name", "model__team_id", "created_by__username")
        )

    def list(self, request, *args, **kwargs):
        # plain rows, not model instances: the list is the hot read path of CI clients
        model_id = _newest_of_one_model(request.query_params)
        if model_id is not None:  # the first page of one model, asked after every registration
            fetch = functools.partial(selectors.newest_versions, user=request.user, model_id=model_id)
            page = self.paginator.paginate_first_page(fetch, request, self)
        else:
            page = self.paginate_queryset(self.filter_queryset(self.get_queryset()).values(*selectors.VERSION_ROW))
        return self.get_paginated_response([version_out(row) for row in page])

    @extend_schema(
        summary="Register a version with its artifact",
        request={"multipart/form-data": VersionIn},
        responses={201: VersionOut, **errors(400, 403, 404, 409)},
    )
    def create(self, request):
        data = validated(VersionIn, request.data)
        model = selectors.model_visible(user=request.user, pk=data.pop("model"))
        if model is None:
            raise NotFound("No such model, or you cannot see it.", code="model_not_found")
        version = services.version_create(actor=request.user, model=model, **data)
        return Response(VersionOut(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Edit a draft version's metadata",
        request=VersionMetaFields,
        responses={200: VersionOut, **errors(400, 403, 404, 409)},
    )
    def partial_update(self, request, pk=None):
        data = validated(VersionMetaFields, request.data)
        version = services.version_update(actor=request.user, version=self.get_object(), **data)
        return Response(VersionOut(version).data)

    @extend_schema(
        summary="Move the version through the lifecycle",
        description="Refused with 409 `transition_not_allowed` when the lifecycle does not allow the step, "
        "and with 403 when your role in the owning team does not.",
        request=TransitionIn,
        responses={200: VersionOut, **errors(400, 403, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    def transition(self, request, pk=None):
        data = validated(TransitionIn, request.data)
        version = services.version_transition(actor=request.user, version=self.get_object(), **data)
        return Response(VersionOut(version).data)

    @extend_schema(
        summary="Download the artifact (its sha256 is checked before streaming)",
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY, **errors(404, 409)},
    )
    @action(detail=True, methods=["get"], content_negotiation_class=FileDownload)
    def artifact(self, request, pk=None):
        version = self.get_object()
        try:
            chunks = artifacts.open_verified(version.artifact_path, sha256=version.artifact_sha256)
        except Conflict as exc:
            if exc.code in artifacts.PROBLEMS:  # the same finding as the integrity scrub's: it fails the gate
                services.artifact_integrity_record(sha256=version.artifact_sha256, problem=exc.code)
            raise
        response = StreamingHttpResponse(chunks, content_type="application/octet-stream")
        response["Content-Length"] = str(version.artifact_size)
        response["Content-Disposition"] = f'attachment; filename="{version.artifact_name.replace(chr(34), "")}"'
        response["X-Artifact-SHA256"] = version.artifact_sha256
        return response

    @extend_schema(
        summary="Download the version's evidence bundle (a zip anyone who can see the version may take away)",
        description="One zip: `manifest.json` (the sha256 of every file) signed in `manifest.sig` with the audit "
        "checkpoint key; the model card as Markdown with Hugging Face front matter (`model-index`), as Model Card "
        "Toolkit JSON and as a PDF; the registered metadata, training-data profile and artifact digest; every "
        "evaluation with its charts as PNG; the review requests with their policy revision, decisions, checklist "
        "ticks and the gate; the deployment history; the version's audit events with a checkpoint signed at the "
        "download's own event; and `verify.py`, which checks all of it with the Python standard library. The "
        "download is an audit event (`version.bundle`).",
        responses={(200, "application/zip"): OpenApiTypes.BINARY, **errors(404)},
    )
    @action(detail=True, methods=["get"], content_negotiation_class=FileDownload)
    def bundle(self, request, pk=None):
        built = evidence_bundle.version_bundle(user=request.user, version=self.get_object())
        return evidence_bundle.response(built)

    @extend_schema(summary="The current model card", methods=["GET"], responses={200: CardOut, **errors(404)})
    @extend_schema(
        summary="Save a new card revision (sections not sent keep their text)",
        methods=["PUT"],
        request=CardIn,
        responses={200: CardOut, **errors(400, 403, 404, 409)},
    )
    @action(detail=True, methods=["get", "put"])
    def card(self, request, pk=None):
        version = self.get_object()
        if request.method == "PUT":
            data = validated(CardIn, request.data)
            card = services.card_save(actor=request.user, version=version, **data)
            return Response(CardOut(card).data)
        card = selectors.card_current(version=version)
        if card is None:
            raise NotFound("This version has no model card yet.", code="card_not_found")
        return Response(CardOut(card).data)

    @extend_schema(summary="Every revision of the model card", responses={200: CardOut(many=True)})
    @action(detail=True, methods=["get"], url_path="card/revisions", pagination_class=None)  # all, newest first
    def card_revisions(self, request, pk=None):
        cards = selectors.card_list(user=request.user, version=self.get_object()).order_by("-revision")
        return Response(CardOut(cards, many=True).data)

    @extend_schema(
        summary="What changed against another version (default: the previous one)",
        parameters=[
            OpenApiParameter(
                "against",
                {"type": "integer", "minimum": 1, "maximum": MAX_ID},
                description="Version id to compare with.",
            )
        ],
        responses={200: DiffOut, **errors(400, 404)},
    )
    @action(detail=True, methods=["get"])
    def diff(self, request, pk=None):
        version = self.get_object()
        against = request.query_params.get("against", "")
        if against != "":  # empty, like absent, means the previous version
            if (against_id := id_from(against)) is None:
                raise serializers.ValidationError({"against": ["Give a version id."]})
            old = selectors.version_list(user=request.user).filter(pk=against_id).first()
        else:
            old = selectors.version_previous(user=request.user, version=version)
        if old is None:
            raise NotFound("There is no version to compare with.", code="diff_base_not_found")
        return Response(selectors.version_diff(old=old, new=version))

    @extend_schema(
        summary="Audit trail of this version",
        description="Every event about the version, newest first: its lifecycle steps, checklist ticks and "
        "refusals, and those of its card revisions, review requests, decisions and evaluation runs.",
        responses={200: AuditEventSerializer(many=True)},
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=AuditCursorPagination)
    def audit(self, request, pk=None):
        return paginated_trail(self, audit_selectors.version_trail(user=request.user, version=self.get_object()))
