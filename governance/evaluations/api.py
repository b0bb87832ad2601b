"""REST API of the evaluations app: request runs with their data, follow progress, read and download results."""

from __future__ import annotations

import json

from django.http import HttpResponse
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from governance.core import filters as core_filters
from governance.core.api import UploadParsers, errors, validated
from governance.core.errors import Conflict, NotFound
from governance.core.jsoninput import JSONField
from governance.core.pagination import NewestFirstCursorPagination
from governance.evaluations import selectors, services
from governance.evaluations.models import EvaluationKind, EvaluationRun, RunStatus
from governance.registry import selectors as registry_selectors


class RunOut(serializers.ModelSerializer):
    model = serializers.IntegerField(source="version.model_id")
    version_number = serializers.IntegerField(source="version.number")
    requested_by = serializers.CharField(source="requested_by.username", default=None)
    data_retained = serializers.SerializerMethodField()

    class Meta:
        model = EvaluationRun
        fields = [
            "id", "version", "version_number", "model", "kind", "parameters", "status", "progress", "progress_message",
            "data_name", "data_rows", "data_sha256", "target_column", "sensitive_features", "retain_data",
            "data_retained", "requested_by", "requested_at", "started_at", "finished_at", "artifact_sha256",
            "environment", "result", "result_digest", "error_code", "error_message",
        ]  # fmt: skip

    def get_data_retained(self, obj) -> bool:
        return obj.data_deleted_at is None and obj.retain_data


class RunIn(serializers.Serializer):
    version = serializers.IntegerField()
    kind = serializers.CharField(max_length=40, help_text=", ".join(EvaluationKind.values))
    # an empty file is the service's to refuse, with its own code
    data = serializers.FileField(
        allow_empty_file=True, required=False, help_text="CSV or Parquet with the model's feature columns."
    )
    data_from_run = serializers.IntegerField(
        required=False, help_text="Instead of a file: an earlier run whose data was retained (it is copied)."
    )
    target_column = serializers.CharField(max_length=128, required=False, allow_blank=True, default="")
    sensitive_features = JSONField(
        binary=True, required=False, default=list, help_text='JSON list of 1 to 3 columns, e.g. ["sex"].'
    )
    parameters = JSONField(binary=True, required=False, default=dict, help_text="JSON object.")
    retain_data = serializers.BooleanField(required=False, default=False)

    def validate_sensitive_features(self, value):
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise serializers.ValidationError("A JSON list of column names.")
        return value


class RunFilter(core_filters.FilterSet):
    version = core_filters.IdFilter(field_name="version_id")
    model = core_filters.IdFilter(field_name="version__model_id")
    kind = filters.ChoiceFilter(choices=EvaluationKind.choices)
    status = filters.ChoiceFilter(choices=RunStatus.choices)

    class Meta:
        model = EvaluationRun
        fields = ["version", "model", "kind", "status"]


@extend_schema_view(
    list=extend_schema(summary="List evaluation runs (newest first)"),
    retrieve=extend_schema(summary="One run: status, progress and, once done, its aggregates",
                           responses={200: RunOut, **errors(404)}),
)  # fmt: skip
class EvaluationRunViewSet(UploadParsers, viewsets.ReadOnlyModelViewSet):
    serializer_class = RunOut
    filterset_class = RunFilter
    pagination_class = NewestFirstCursorPagination

    def get_queryset(self):
        return selectors.run_list(user=self.request.user)

    @extend_schema(
        summary="Request an evaluation of a version on uploaded data",
        description="The data is checked before the run is queued (columns, rows, groups). Asking again for the "
        "same evaluation (kind, parameters, columns, data) returns the existing run with HTTP 200.",
        request={"multipart/form-data": RunIn},
        responses={201: RunOut, 200: RunOut, **errors(400, 403, 404)},
    )
    def create(self, request):
        data = validated(RunIn, request.data)
        version = registry_selectors.version_list(user=request.user).filter(pk=data.pop("version")).first()
        if version is None:
            raise NotFound("No such version, or you cannot see it.", code="version_not_found")
        source = None
        if "data_from_run" in data:
            source = self.get_queryset().filter(pk=data.pop("data_from_run")).first()
            if source is None:
                raise NotFound("No such evaluation run, or you cannot see it.", code="run_not_found")
        made = services.run_request(actor=request.user, version=version, data_from=source, **data)
        body = RunOut(self.get_queryset().get(pk=made.run.pk)).data
        return Response(body, status=status.HTTP_201_CREATED if made.created else status.HTTP_200_OK)

    @extend_schema(summary="Cancel a queued or running evaluation", request=None,
                   responses={200: RunOut, **errors(403, 404, 409)})  # fmt: skip
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        run = services.run_cancel(actor=request.user, run=self.get_object())
        return Response(RunOut(self.get_queryset().get(pk=run.pk)).data)

    @extend_schema(
        summary="Download the result as JSON (aggregates, figures, parameters, environment, digest)",
        responses={(200, "application/json"): OpenApiTypes.OBJECT, **errors(404, 409)},
    )
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None):
        run = self.get_object()
        if run.status != RunStatus.SUCCEEDED:
            raise Conflict(f"Run #{run.pk} is {run.get_status_display().lower()}; it has no result.", code="no_result")
        document = {
            "run": run.pk, "version": run.version_id, "kind": run.kind, "parameters": run.parameters,
            "artifact_sha256": run.artifact_sha256, "data_sha256": run.data_sha256, "data_rows": run.data_rows,
            "environment": run.environment, "result": run.result, "figures": run.figures,
            "result_digest": run.result_digest, "finished_at": run.finished_at.isoformat(),
        }  # fmt: skip
        response = HttpResponse(json.dumps(document, indent=2), content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="evaluation-{run.pk}-{run.kind}.json"'
        return response


def register(router) -> None:
    router.register("evaluations", EvaluationRunViewSet, basename="evaluationrun")
