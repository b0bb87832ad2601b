"""Registry reads. Every selector takes the user and returns only what that user may see."""

from __future__ import annotations

import difflib
from functools import cache
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count, QuerySet

from governance.accounts.capabilities import Capability
from governance.accounts.permissions import can, team_filter
from governance.core import sql
from governance.registry.models import CARD_SECTIONS, ModelCard, ModelVersion, RegisteredModel, Stage


def model_list(*, user) -> QuerySet[RegisteredModel]:
    return RegisteredModel.objects.filter(team_filter(user, "team_id")).select_related("team")


def model_visible(*, user, pk: int) -> RegisteredModel | None:
    """One model by id if the user may see it, in one prepared statement (every registration
    starts here; ``model_list`` would compile a query per call)."""
    with sql.cursor() as cursor:
        cursor.execute(_model_statement(), [pk])
        row = cursor.fetchone()
    if row is None:
        return None
    model = sql.load(RegisteredModel, row)
    return model if can(user, Capability.VIEW, model.team_id) else None


@cache
def _model_statement() -> str:
    return f'SELECT {sql.columns(RegisteredModel, "m")} FROM "{RegisteredModel._meta.db_table}" m WHERE m."id" = %s'


# A version as the API lists it: ``.values()`` names, without the artifact's storage path and the
# training profile (up to a megabyte of statistics, not part of the listing)
VERSION_ROW = (
    *(f.attname for f in ModelVersion._meta.concrete_fields if f.name not in ("artifact_path", "training_profile")),
    "model__name", "model__team_id", "created_by__username",
)  # fmt: skip


def newest_versions(*, user, model_id: int, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` versions of one model as ``VERSION_ROW`` dicts, in one prepared
    statement on the (model, number) index: what every CI pipeline asks for after registering."""
    with sql.cursor() as cursor:
        cursor.execute(_newest_statement(), [model_id, limit])
        rows = cursor.fetchall()
    if not rows or not can(user, Capability.VIEW, rows[0][VERSION_ROW.index("model__team_id")]):  # one model, one team
        return []
    fields = _row_fields()
    return [dict(zip(VERSION_ROW, sql.decoded(fields, row), strict=True)) for row in rows]


@cache
def _newest_statement() -> str:
    own = ", ".join(f'v."{field.column}"' for field in _row_fields() if field is not None)
    return (
        f'SELECT {own}, m."name", m."team_id", u."username" FROM "{ModelVersion._meta.db_table}" v '
        f'JOIN "{RegisteredModel._meta.db_table}" m ON m."id" = v."model_id" '
        f'LEFT JOIN "{get_user_model()._meta.db_table}" u ON u."id" = v."created_by_id" '
        'WHERE v."model_id" = %s ORDER BY v."number" DESC LIMIT %s'
    )


@cache
def _row_fields() -> tuple:
    """The version field behind each VERSION_ROW column (``None`` for the joined ones)."""
    return tuple(None if "__" in name else ModelVersion._meta.get_field(name) for name in VERSION_ROW)


def version_list(*, user, model: RegisteredModel | None = None) -> QuerySet[ModelVersion]:
    qs = ModelVersion.objects.filter(team_filter(user, "model__team_id")).select_related("model", "model__team")
    if model is not None:
        qs = qs.filter(model=model)
    return qs


def card_list(*, user, version: ModelVersion) -> QuerySet[ModelCard]:
    return ModelCard.objects.filter(team_filter(user, "version__model__team_id"), version=version).select_related(
        "created_by"
    )


def card_current(*, version: ModelVersion) -> ModelCard | None:
    return version.cards.select_related("created_by").order_by("-revision").first()


def card_to_start_from(*, user, version: ModelVersion) -> ModelCard | None:
    """The current card of the newest earlier version of the same model that has one: what a new
    version's card editor starts from. ``None`` when no earlier version the user may see has a card."""
    return (
        ModelCard.objects.filter(
            team_filter(user, "version__model__team_id"),
            version__model_id=version.model_id,
            version__number__lt=version.number,
        )
        .select_related("version")
        .order_by("-version__number", "-revision")
        .first()
    )


def stage_counts(*, user) -> dict[str, int]:
    rows = (
        ModelVersion.objects.filter(team_filter(user, "model__team_id"))
        .values("stage")
        .annotate(n=Count("id"))
        .order_by()
    )
    counts = {stage: 0 for stage in Stage.values}
    counts.update({row["stage"]: row["n"] for row in rows})
    return counts


def version_previous(*, user, version: ModelVersion) -> ModelVersion | None:
    return version_list(user=user, model=version.model).filter(number__lt=version.number).order_by("-number").first()


_DIFF_FIELDS = (
    "artifact_sha256", "artifact_size", "framework", "artifact_format", "training_data_ref", "evaluation_data_ref",
    "preprocessing_ref", "preprocessing_fingerprint", "stage", "description",
)  # fmt: skip


def _dict_diff(old: dict, new: dict) -> list[dict[str, Any]]:
    rows = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        row: dict[str, Any] = {"key": key, "old": a, "new": b}
        if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
            row["delta"] = b - a
        rows.append(row)
    return rows


def version_diff(*, old: ModelVersion, new: ModelVersion) -> dict[str, Any]:
    """What changed between two versions: metadata, hyperparameters, metrics, tags and card sections."""
    old_card, new_card = card_current(version=old), card_current(version=new)
    old_sections = old_card.sections if old_card else {}
    new_sections = new_card.sections if new_card else {}
    card = []
    for key, title, _ in CARD_SECTIONS:
        a, b = old_sections.get(key, "") or "", new_sections.get(key, "") or ""
        if a != b:
            lines = difflib.unified_diff(
                a.splitlines(), b.splitlines(), f"v{old.number}", f"v{new.number}", lineterm=""
            )
            card.append({"section": key, "title": title, "diff": "\n".join(lines)})
    return {
        "old": {"id": old.pk, "number": old.number},
        "new": {"id": new.pk, "number": new.number},
        "fields": [
            {"field": f, "old": getattr(old, f), "new": getattr(new, f)}
            for f in _DIFF_FIELDS
            if getattr(old, f) != getattr(new, f)
        ],
        "hyperparameters": _dict_diff(old.hyperparameters, new.hyperparameters),
        "metrics": _dict_diff(old.metrics, new.metrics),
        "tags": {"added": sorted(set(new.tags) - set(old.tags)), "removed": sorted(set(old.tags) - set(new.tags))},
        "card": card,
        "card_completeness": {"old": old.card_completeness, "new": new.card_completeness},
    }
