"""Filtersets shared by the browser lists and the API."""

import django_filters
from django.db.models import Exists, OuterRef, Q

from governance.core.filters import FilterSet, IdFilter, IsoDateTimeFilter
from governance.registry.models import ArtifactFormat, Framework, ModelVersion, RegisteredModel, RiskTier, Stage


class ModelFilter(FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    team = IdFilter(field_name="team_id")
    risk_tier = django_filters.ChoiceFilter(choices=RiskTier.choices)
    stage = django_filters.ChoiceFilter(choices=Stage.choices, method="has_stage", label="Has a version in stage")

    class Meta:
        model = RegisteredModel
        fields = ["q", "team", "risk_tier", "stage"]

    def search(self, queryset, name, value):
        return queryset.filter(
            Q(name__icontains=value) | Q(use_case__icontains=value) | Q(description__icontains=value)
        )

    def has_stage(self, queryset, name, value):
        return queryset.filter(Exists(ModelVersion.objects.filter(model=OuterRef("pk"), stage=value)))


class VersionFilter(FilterSet):
    model = IdFilter(field_name="model_id")
    stage = django_filters.ChoiceFilter(choices=Stage.choices)
    framework = django_filters.ChoiceFilter(choices=Framework.choices)
    artifact_format = django_filters.ChoiceFilter(choices=ArtifactFormat.choices)
    artifact_sha256 = django_filters.CharFilter()
    created_after = IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = ModelVersion
        fields = ["model", "stage", "framework", "artifact_format", "artifact_sha256"]
