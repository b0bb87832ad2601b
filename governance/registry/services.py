"""Registry writes. Each one checks the actor's role, changes rows under a lock where two
people can act at once, and records its audit event in the same transaction."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from governance.accounts.models import Team
from governance.accounts.permissions import require, require_scope
from governance.audit import services as audit
from governance.celery import enqueue_on_commit
from governance.core import sql
from governance.core.errors import Conflict, NotFound, TransitionNotAllowed, ValidationFailed
from governance.registry import artifacts, signals, validation
from governance.registry.models import (
    CARD_SECTION_KEYS,
    CARD_SECTION_MIN_CHARS,
    EDITABLE_STAGES,
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

MODEL_EDITABLE = ("name", "description", "use_case", "risk_tier", "business_kpis")
VERSION_EDITABLE = (
    "description", "framework", "artifact_format", "training_data_ref", "evaluation_data_ref", "preprocessing_ref",
    "preprocessing_fingerprint", "hyperparameters", "metrics", "tags",
)  # fmt: skip


def _check_choice(value: str, choices, what: str) -> None:
    if value not in choices.values:
        raise ValidationFailed(
            f"'{value}' is not a valid {what}. Choose one of: {', '.join(choices.values)}.",
            code=f"invalid_{what.replace(' ', '_')}",
        )


def _check_metadata(values: dict[str, Any]) -> None:
    """Metrics, hyperparameters and tags have one shape whichever door they came in by."""
    problems = {
        field: [problem]
        for field, check in validation.CHECKS.items()
        if values.get(field) is not None and (problem := check(values[field]))
    }
    if problems:
        raise ValidationFailed(next(iter(problems.values()))[0], code="invalid", fields=problems)


def _check_owners(team: Team, owners) -> list:
    owners = list(owners or [])
    members = set(team.memberships.values_list("user_id", flat=True))
    strangers = [u.get_username() for u in owners if u.pk not in members]
    if strangers:
        raise ValidationFailed(
            f"Owners must be members of {team}: {', '.join(strangers)} is not.", code="invalid_owner"
        )
    return owners


def _locked(queryset, pk):
    """The row, locked until commit (joined rows are not); deleted meanwhile is a 404, not a crash."""
    obj = queryset.select_for_update(of=("self",)).filter(pk=pk).first()
    if obj is None:
        raise NotFound(f"This {queryset.model._meta.verbose_name} no longer exists.")
    return obj


# --- models ---------------------------------------------------------------------------------


@transaction.atomic
def model_create(
    *,
    actor,
    team: Team,
    name: str,
    description: str = "",
    use_case: str = "",
    risk_tier: str = RiskTier.LIMITED,
    business_kpis: list | None = None,
    owners=None,
) -> RegisteredModel:
    require_scope(actor, "write")
    require(actor, "model.create", team_id=team.pk, what="register a model")
    _check_choice(risk_tier, RiskTier, "risk tier")
    owners = _check_owners(team, owners)
    if RegisteredModel.objects.filter(team=team, name__iexact=name).exists():
        raise Conflict(f"{team} already has a model named '{name}'.", code="duplicate_name")
    try:
        with transaction.atomic():
            model = RegisteredModel.objects.create(
                team=team, name=name, description=description, use_case=use_case, risk_tier=risk_tier,
                business_kpis=business_kpis or [], created_by=actor,
            )  # fmt: skip
    except IntegrityError:
        raise Conflict(f"{team} already has a model named '{name}'.", code="duplicate_name") from None
    if owners:
        model.owners.set(owners)
    after = audit.snapshot(model) | {"owners": sorted(u.get_username() for u in owners)}
    audit.record(action="model.create", obj=model, after=after, actor=actor)
    return model


@transaction.atomic
def model_update(*, actor, model: RegisteredModel, owners=None, **changes: Any) -> RegisteredModel:
    require_scope(actor, "write")
    require(actor, "model.update", team_id=model.team_id, what="edit this model")
    model = _locked(RegisteredModel.objects.all(), model.pk)
    unknown = set(changes) - set(MODEL_EDITABLE)
    if unknown:
        raise ValidationFailed(f"These fields cannot be changed: {', '.join(sorted(unknown))}.", code="read_only_field")
    if "risk_tier" in changes:
        _check_choice(changes["risk_tier"], RiskTier, "risk tier")
    if "name" in changes and (
        RegisteredModel.objects.filter(team_id=model.team_id, name__iexact=changes["name"])
        .exclude(pk=model.pk)
        .exists()
    ):
        raise Conflict(f"{model.team} already has a model named '{changes['name']}'.", code="duplicate_name")
    before = audit.snapshot(model) | {"owners": sorted(model.owners.values_list("username", flat=True))}
    for field, value in changes.items():
        setattr(model, field, value)
    new_owners = _check_owners(model.team, owners) if owners is not None else None
    after = audit.snapshot(model) | {
        "owners": sorted(u.get_username() for u in new_owners) if new_owners is not None else before["owners"]
    }
    if after == before:  # nothing changed: no write, no event
        return model
    try:
        with transaction.atomic():
            model.save()
    except IntegrityError:
        raise Conflict(f"{model.team} already has a model named '{model.name}'.", code="duplicate_name") from None
    if new_owners is not None:
        model.owners.set(new_owners)
    audit.record(action="model.update", obj=model, before=before, after=after, actor=actor)
    return model


@transaction.atomic
def model_delete(*, actor, model: RegisteredModel) -> None:
    require_scope(actor, "write")
    require(actor, "model.delete", team_id=model.team_id, what="delete a model")
    model = _locked(RegisteredModel.objects.all(), model.pk)
    if model.versions.exists():
        raise Conflict(
            "A model with versions cannot be deleted; retire its versions instead so their record stays.",
            code="model_has_versions",
        )
    before = audit.snapshot(model)
    pk, team_id = model.pk, model.team_id
    model.delete()
    audit.record(
        action="model.delete", object_type="registry.registeredmodel", object_id=str(pk), team_id=team_id,
        before=before, actor=actor,
    )  # fmt: skip


# --- versions -------------------------------------------------------------------------------


def version_create(
    *,
    actor,
    model: RegisteredModel,
    artifact,
    artifact_sha256: str | None = None,
    description: str = "",
    framework: str = Framework.SKLEARN,
    artifact_format: str = ArtifactFormat.SKLEARN_JOBLIB,
    training_data_ref: str = "",
    evaluation_data_ref: str = "",
    preprocessing_ref: str = "",
    preprocessing_fingerprint: str = "",
    hyperparameters: dict | None = None,
    metrics: dict | None = None,
    tags: list | None = None,
    training_profile: dict | None = None,
) -> ModelVersion:
    """Register a version: store the artifact by digest (outside the transaction), then the row."""
    require_scope(actor, "write")
    require(actor, "version.create", team_id=model.team_id, what="register a version")
    _check_choice(framework, Framework, "framework")
    _check_choice(artifact_format, ArtifactFormat, "artifact format")
    _check_metadata(
        {"metrics": metrics, "hyperparameters": hyperparameters, "tags": tags, "training_profile": training_profile}
    )
    stored = artifacts.store_upload(artifact, expected_sha256=artifact_sha256)
    now = timezone.now()
    with transaction.atomic():
        number = _next_version_number(model=model, now=now)
        version = ModelVersion(
            model=model, number=number, description=description, artifact_sha256=stored.sha256,
            artifact_size=stored.size, artifact_name=(getattr(artifact, "name", "") or "artifact")[-255:],
            artifact_path=stored.path, framework=framework, artifact_format=artifact_format,
            training_data_ref=training_data_ref, evaluation_data_ref=evaluation_data_ref,
            preprocessing_ref=preprocessing_ref, preprocessing_fingerprint=preprocessing_fingerprint,
            hyperparameters=hyperparameters or {}, metrics=metrics or {}, tags=tags or [],
            training_profile=training_profile or {}, created_by=actor,
            stage_changed_at=now,
        )  # fmt: skip
        sql.insert(version)  # the registration hot path: a statement written once, not compiled per call
        audit.record(action="version.create", obj=version, after=audit.snapshot(version), actor=actor)
        enqueue_on_commit("workers.artifacts.inspect_artifact", version.pk, actor=actor)
    return version


def _next_version_number(*, model: RegisteredModel, now) -> int:
    """Allocate the next number and bump the counters in one statement, which also row-locks the
    model until commit: concurrent registrations of one model queue here, other models do not."""
    table = RegisteredModel._meta.db_table
    with sql.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET latest_version_number = latest_version_number + 1, "
            "version_count = version_count + 1, updated_at = %s WHERE id = %s RETURNING latest_version_number, version_count",
            [now, model.pk],
        )
        number, model.version_count = cursor.fetchone()
    model.latest_version_number = number
    return number


@transaction.atomic
def version_update(*, actor, version: ModelVersion, **changes: Any) -> ModelVersion:
    require_scope(actor, "write")
    require(actor, "version.update", team_id=version.model.team_id, what="edit this version")
    version = _locked(ModelVersion.objects.select_related("model"), version.pk)
    unknown = set(changes) - set(VERSION_EDITABLE)
    if unknown:
        raise ValidationFailed(f"These fields cannot be changed: {', '.join(sorted(unknown))}.", code="read_only_field")
    if version.stage not in EDITABLE_STAGES:
        raise Conflict(
            f"Version {version.number} is {version.get_stage_display().lower()}; its metadata is frozen. "
            "Register a new version to change it.",
            code="version_frozen",
        )
    if "framework" in changes:
        _check_choice(changes["framework"], Framework, "framework")
    if "artifact_format" in changes:
        _check_choice(changes["artifact_format"], ArtifactFormat, "artifact format")
    _check_metadata(changes)
    before = audit.snapshot(version)
    for field, value in changes.items():
        setattr(version, field, value)
    if audit.snapshot(version) == before:  # nothing changed: no write, no event
        return version
    version.save()
    audit.record(action="version.update", obj=version, before=before, after=audit.snapshot(version), actor=actor)
    return version


@transaction.atomic
def version_transition(*, actor, version: ModelVersion, to: str, reason: str = "") -> ModelVersion:
    """Move a version one step through the lifecycle, if the table allows it and the actor holds the role."""
    require_scope(actor, "transition")
    version = _locked(ModelVersion.objects.select_related("model"), version.pk)
    _check_choice(to, Stage, "stage")
    allowed = TRANSITIONS[version.stage]
    step = allowed.get(to)
    if step is None:
        nexts = ", ".join(Stage(s).label.lower() for s in allowed) or "nothing (it is final)"
        raise TransitionNotAllowed(
            f"A version that is {Stage(version.stage).label.lower()} cannot move to {Stage(to).label.lower()}; "
            f"it can move to: {nexts}."
        )
    if step.by_review:
        raise Conflict(
            f"A version moves to {Stage(to).label.lower()} only through its approval request: "
            "request a review, and reviewers decide (POST /api/v1/approval-requests/).",
            code="approval_workflow_required",
        )
    require(actor, "transition", team_id=version.model.team_id, roles=step.roles, what=step.verb)
    return _move(version, to, actor=actor, reason=reason)


def version_transition_by_review(*, actor, version: ModelVersion, to: str, reason: str = "") -> ModelVersion:
    """The approval workflow's own steps (request, decisions, withdrawal, stale evidence).

    For the approvals services only: they hold the version's row lock and have checked who may
    act; this checks the lifecycle table and records the step.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("version_transition_by_review must run inside the approval service's transaction.")
    step = TRANSITIONS[version.stage].get(to)
    if step is None or not step.by_review:
        raise TransitionNotAllowed(
            f"A version that is {Stage(version.stage).label.lower()} cannot move to {Stage(to).label.lower()} "
            "through a review."
        )
    return _move(version, to, actor=actor, reason=reason)


def _move(version: ModelVersion, to: str, *, actor, reason: str) -> ModelVersion:
    before = {"stage": version.stage}
    version.stage = to
    version.stage_changed_at = timezone.now()
    version.save(update_fields=["stage", "stage_changed_at", "updated_at"])
    audit.record(
        action="version.transition", obj=version, before=before, after={"stage": to}, changes={"reason": reason},
        actor=actor,
    )  # fmt: skip
    return version


@transaction.atomic
def version_record_inspection(*, version_id: int, metadata: dict) -> ModelVersion:
    """Store what the worker found when it re-read the artifact (task source, original actor)."""
    version = ModelVersion.objects.select_for_update(of=("self",)).select_related("model").get(pk=version_id)
    if version.artifact_metadata == metadata:  # a redelivered task already recorded this
        return version
    before = {"artifact_metadata": version.artifact_metadata}
    version.artifact_metadata = metadata
    version.save(update_fields=["artifact_metadata", "updated_at"])
    audit.record(action="version.artifact_inspected", obj=version, before=before, after={"artifact_metadata": metadata})
    signals.evidence_changed.send(
        sender=ModelVersion, version=version, actor=None, reason="The artifact inspection recorded new findings."
    )
    return version


# --- model cards ----------------------------------------------------------------------------


def card_completeness(sections: dict[str, str]) -> int:
    filled = sum(1 for key in CARD_SECTION_KEYS if len((sections.get(key) or "").strip()) >= CARD_SECTION_MIN_CHARS)
    return round(100 * filled / len(CARD_SECTION_KEYS))


@transaction.atomic
def card_save(*, actor, version: ModelVersion, sections: dict[str, str], comment: str = "") -> ModelCard:
    """Add a card revision. Sections not given keep their previous text."""
    require_scope(actor, "write")
    require(actor, "card.edit", team_id=version.model.team_id, what="edit the model card")
    unknown = sorted(set(sections) - set(CARD_SECTION_KEYS))
    if unknown:
        raise ValidationFailed(
            f"Unknown card section(s): {', '.join(unknown)}. Sections are: {', '.join(CARD_SECTION_KEYS)}.",
            code="invalid_section",
        )
    if any(not isinstance(v, str) for v in sections.values()):
        raise ValidationFailed("Every card section must be text.", code="invalid_section")
    version = _locked(ModelVersion.objects.select_related("model"), version.pk)
    if version.stage not in EDITABLE_STAGES:
        # the card is evidence a review looks at: after submission it changes only with a new version
        raise Conflict(
            f"Version {version.number} is {version.get_stage_display().lower()}; its model card is frozen. "
            "Move it back to draft (or register a new version) to edit the card.",
            code="card_frozen",
        )
    previous = version.cards.order_by("-revision").first()
    merged = dict(previous.sections if previous else {}) | sections
    merged = {k: merged.get(k, "") for k in CARD_SECTION_KEYS}
    if previous is not None and merged == previous.sections:
        raise Conflict("Nothing changed in the card.", code="card_unchanged")
    completeness = card_completeness(merged)
    card = ModelCard.objects.create(
        version=version, revision=(previous.revision + 1) if previous else 1, sections=merged,
        completeness=completeness, comment=comment, created_by=actor,
    )  # fmt: skip
    version.card_completeness = completeness
    version.save(update_fields=["card_completeness", "updated_at"])
    before = audit.snapshot(previous) if previous else None
    audit.record(action="card.save", obj=card, before=before, after=audit.snapshot(card), actor=actor)
    signals.evidence_changed.send(
        sender=ModelVersion, version=version, actor=actor, reason=f"The model card changed (revision {card.revision})."
    )
    return card
