"""Registry writes. Each one checks the actor's role, changes rows under a lock where two
people can act at once, and records its audit event in the same transaction."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from dataclasses import field as dataclass_field
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from governance.accounts.capabilities import Capability
from governance.accounts.models import Team
from governance.accounts.permissions import require, require_roles, require_scope
from governance.audit import services as audit
from governance.audit.actions import AuditAction
from governance.celery import enqueue_on_commit
from governance.core import sql
from governance.core.errors import Conflict, NotFound, TransitionNotAllowed, ValidationFailed
from governance.core.retry import retry_once
from governance.registry import artifacts, signals, validation
from governance.registry.models import (
    CARD_SECTION_KEYS,
    CARD_SECTION_MIN_CHARS,
    EDITABLE_STAGES,
    REVIEWED_STAGES,
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
# Model fields a review relies on: changing one re-freezes the open and approved reviews of the
# model's versions (they are in the evidence digest). The risk tier also chooses the policy, so it
# changes only through its own action, ``model_retier``.
MODEL_REVIEWED = ("description", "use_case", "business_kpis", "owners")
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
    require(actor, Capability.MODEL_CREATE, team_id=team.pk, what="register a model")
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
    audit.record(action=AuditAction.MODEL_CREATE, obj=model, after=after, actor=actor)
    return model


@retry_once
@transaction.atomic
def model_update(*, actor, model: RegisteredModel, owners=None, **changes: Any) -> RegisteredModel:
    require_scope(actor, "write")
    require(actor, Capability.MODEL_UPDATE, team_id=model.team_id, what="edit this model")
    model = _locked(RegisteredModel.objects.all(), model.pk)
    unknown = set(changes) - set(MODEL_EDITABLE)
    if unknown:
        raise ValidationFailed(f"These fields cannot be changed: {', '.join(sorted(unknown))}.", code="read_only_field")
    if "risk_tier" in changes:
        _check_choice(changes["risk_tier"], RiskTier, "risk tier")
        if changes.pop("risk_tier") != model.risk_tier:  # sending the current tier back is no change
            raise ValidationFailed(
                "The risk tier chooses the approval policy, so it is not edited with the model: a team admin or "
                f"approver changes it, with a reason, through POST /api/v1/models/{model.pk}/risk-tier/ (or the "
                "form on the model's page), and the model's reviews are frozen again.",
                code="risk_tier_is_an_action",
                fields={"risk_tier": "Change it through the risk-tier action."},
            )
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
    reviewed = [field for field in MODEL_REVIEWED if before.get(field) != after.get(field)]
    if reviewed:
        _refreeze_reviews(model, actor=actor, reason=f"The model's {', '.join(reviewed).replace('_', ' ')} changed.")
    audit.record(action=AuditAction.MODEL_UPDATE, obj=model, before=before, after=after, actor=actor)
    return model


@retry_once
@transaction.atomic
def model_retier(*, actor, model: RegisteredModel, risk_tier: str, reason: str) -> RegisteredModel:
    """Change the model's risk tier, which chooses its default approval policy.

    A governed action of its own, not a field edit: team admins and approvers only (never a
    plain author), with a reason, audited. Every open or approved review of the model's versions
    is frozen again (an approved version goes back to review, and its reviewers are told), and
    the review takes the policy of the new tier when no policy is assigned to the model.
    """
    require_scope(actor, "admin")
    require(actor, Capability.MODEL_RETIER, team_id=model.team_id, what="change a model's risk tier")
    _check_choice(risk_tier, RiskTier, "risk tier")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed(
            "Say why the risk tier changes: the reason is kept in the audit log.",
            code="reason_required",
            fields={"reason": "Required."},
        )
    model = _locked(RegisteredModel.objects.all(), model.pk)
    if model.risk_tier == risk_tier:
        raise Conflict(
            f"{model.name} is already in the {RiskTier(risk_tier).label.lower()} risk tier.", code="risk_tier_unchanged"
        )
    before = {"risk_tier": model.risk_tier}
    model.risk_tier = risk_tier
    model.save(update_fields=["risk_tier", "updated_at"])
    _refreeze_reviews(
        model, actor=actor,
        reason=f"The model's risk tier changed from {RiskTier(before['risk_tier']).label.lower()} to "
        f"{RiskTier(risk_tier).label.lower()}: {reason[:120]}",
    )  # fmt: skip
    audit.record(
        action=AuditAction.MODEL_RETIER, obj=model, before=before, after={"risk_tier": risk_tier}, changes={"reason": reason},
        actor=actor,
    )  # fmt: skip
    return model


def _refreeze_reviews(model: RegisteredModel, *, actor, reason: str) -> None:
    """Tell the approvals (through ``evidence_changed``) that the evidence of every version of the
    model under review or approved changed, inside this transaction and before the caller's audit
    record. In the lock order of ``governance/audit/services.py``: the versions in id order, then
    their review requests, all before the first receiver records an event (the chain head)."""
    versions = list(
        ModelVersion.objects.select_for_update(of=("self",))
        .select_related("model")
        .filter(model_id=model.pk, stage__in=REVIEWED_STAGES)
        .order_by("id")
    )
    if not versions:
        return
    reviews = ModelVersion._meta.get_field("approval_requests").related_model  # the approvals app's, unimported
    list(reviews.objects.select_for_update(of=("self",)).filter(version__in=versions).order_by("id").values("id"))
    for version in versions:
        signals.evidence_changed.send(sender=RegisteredModel, version=version, actor=actor, reason=reason)


@transaction.atomic
def model_delete(*, actor, model: RegisteredModel) -> None:
    require_scope(actor, "write")
    require(actor, Capability.MODEL_DELETE, team_id=model.team_id, what="delete a model")
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
        action=AuditAction.MODEL_DELETE, object_type="registry.registeredmodel", object_id=str(pk), team_id=team_id,
        before=before, actor=actor,
    )  # fmt: skip


# --- versions -------------------------------------------------------------------------------


def _aggregates_only(training_profile: dict | None) -> dict:
    """A training-data profile as it is stored: the privacy rule of stored results applied (no value
    seen fewer than k times, no exact extremes), whatever tool wrote the profile."""
    from django.conf import settings

    from workers.engines import privacy

    if not training_profile:
        return {}
    k = privacy.min_count_setting(settings.EVALUATION_MIN_COUNT)
    return privacy.profile_aggregates_only(training_profile, k=k)


@retry_once
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
    require(actor, Capability.VERSION_CREATE, team_id=model.team_id, what="register a version")
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
            training_profile=_aggregates_only(training_profile), created_by=actor,
            stage_changed_at=now,
        )  # fmt: skip
        sql.insert(version)  # the registration hot path: a statement written once, not compiled per call
        audit.record(action=AuditAction.VERSION_CREATE, obj=version, after=audit.snapshot(version), actor=actor)
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


@retry_once
@transaction.atomic
def version_update(*, actor, version: ModelVersion, **changes: Any) -> ModelVersion:
    require_scope(actor, "write")
    require(actor, Capability.VERSION_UPDATE, team_id=version.model.team_id, what="edit this version")
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
    audit.record(
        action=AuditAction.VERSION_UPDATE, obj=version, before=before, after=audit.snapshot(version), actor=actor
    )
    return version


@retry_once
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
    if step.by_serving:
        raise Conflict(
            f"A version becomes {Stage(to).label.lower()} only through serving: it is deployed while it is live in an "
            "environment. Deploy, roll back or retire it through the deployment API "
            "(POST /api/v1/deployment-actions/) or the version page.",
            code="deploy_through_serving",
        )
    if step.by_review:
        raise Conflict(
            f"A version moves to {Stage(to).label.lower()} only through its approval request: "
            "request a review, and reviewers decide (POST /api/v1/approval-requests/).",
            code="approval_workflow_required",
        )
    require_roles(actor, step.roles, team_id=version.model.team_id, what=step.verb)
    return _move(version, to, actor=actor, reason=reason)


def version_transition_by_review(*, actor, version: ModelVersion, to: str, reason: str = "") -> ModelVersion:
    """The approval workflow's own steps (request, decisions, withdrawal, stale evidence).

    For the approvals services only: they hold the version's row lock and have checked who may
    act; this checks the lifecycle table and records the step.
    """
    return _workflow_step(version, to, actor=actor, reason=reason, by="review")


def version_transition_by_serving(*, actor, version: ModelVersion, to: str, reason: str = "") -> ModelVersion:
    """The steps that follow what is live, for the serving services only: they hold the version's row
    lock inside the transaction that changed the deployments; this checks the lifecycle table and
    records the step (``actor``: who asked for the deployment action)."""
    return _workflow_step(version, to, actor=actor, reason=reason, by="serving")


def _workflow_step(version: ModelVersion, to: str, *, actor, reason: str, by: str) -> ModelVersion:
    """A step that belongs to a workflow (``by``: "review" or "serving"), taken inside that app's
    transaction: checked against the lifecycle table, then recorded."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError(f"A step by {by} must run inside the {by} service's transaction.")
    step = TRANSITIONS[version.stage].get(to)
    if step is None or not getattr(step, f"by_{by}"):
        raise TransitionNotAllowed(
            f"A version that is {Stage(version.stage).label.lower()} cannot move to {Stage(to).label.lower()} "
            f"through {'a review' if by == 'review' else 'serving'}."
        )
    return _move(version, to, actor=actor, reason=reason)


def _move(version: ModelVersion, to: str, *, actor, reason: str) -> ModelVersion:
    before = {"stage": version.stage}
    version.stage = to
    version.stage_changed_at = timezone.now()
    version.save(update_fields=["stage", "stage_changed_at", "updated_at"])
    audit.record(
        action=AuditAction.VERSION_TRANSITION, obj=version, before=before, after={"stage": to}, changes={"reason": reason},
        actor=actor,
    )  # fmt: skip
    return version


@retry_once
@transaction.atomic
def version_record_inspection(*, version_id: int, metadata: dict) -> ModelVersion:
    """Store what the worker found when it re-read the artifact (task source, original actor)."""
    version = ModelVersion.objects.select_for_update(of=("self",)).select_related("model").get(pk=version_id)
    if version.artifact_metadata == metadata:  # a redelivered task already recorded this
        return version
    before = {"artifact_metadata": version.artifact_metadata}
    version.artifact_metadata = metadata
    version.save(update_fields=["artifact_metadata", "updated_at"])
    # the receivers lock the version's review rows: before the chain head, which is taken last
    signals.evidence_changed.send(
        sender=ModelVersion, version=version, actor=None, reason="The artifact inspection recorded new findings."
    )
    audit.record(
        action=AuditAction.VERSION_ARTIFACT_INSPECTED, obj=version, before=before, after={"artifact_metadata": metadata}
    )
    return version


# --- model cards ----------------------------------------------------------------------------


def card_completeness(sections: dict[str, str]) -> int:
    filled = sum(1 for key in CARD_SECTION_KEYS if len((sections.get(key) or "").strip()) >= CARD_SECTION_MIN_CHARS)
    return round(100 * filled / len(CARD_SECTION_KEYS))


@retry_once
@transaction.atomic
def card_save(*, actor, version: ModelVersion, sections: dict[str, str], comment: str = "") -> ModelCard:
    """Add a card revision. Sections not given keep their previous text."""
    require_scope(actor, "write")
    require(actor, Capability.CARD_EDIT, team_id=version.model.team_id, what="edit the model card")
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
    # the receivers lock the version's review rows: before the chain head, which is taken last
    signals.evidence_changed.send(
        sender=ModelVersion, version=version, actor=actor, reason=f"The model card changed (revision {card.revision})."
    )
    audit.record(action=AuditAction.CARD_SAVE, obj=card, before=before, after=audit.snapshot(card), actor=actor)
    return card


# --- artifact integrity ---------------------------------------------------------------------

# Bounds of one scrub run (settings INTEGRITY_SCRUB_MAX_ARTIFACTS / INTEGRITY_SCRUB_MAX_BYTES):
# a run re-hashes artifacts oldest-checked first until either is reached, so the hourly beat walks
# the whole store in turn (200,000 artifacts in about two weeks) without reading all of it at once.
SCRUB_MAX_ARTIFACTS = 500
SCRUB_MAX_BYTES = 4 * 1024**3


@dataclass
class ScrubReport:
    checked: int = 0
    bytes: int = 0
    failed: list[str] = dataclass_field(default_factory=list)  # the sha256 of each artifact that failed

    def as_dict(self) -> dict:
        return asdict(self)


def artifacts_scrub(*, max_artifacts: int | None = None, max_bytes: int | None = None) -> ScrubReport:
    """Re-hash stored artifacts, those never checked first and then the longest unchecked, and record
    each result on every version of that artifact. Stops after ``max_artifacts`` artifacts or once
    ``max_bytes`` were read (at least one artifact per run, however large). Hashing happens outside
    any transaction; each result is recorded in a short one of its own."""
    max_artifacts = max_artifacts or getattr(settings, "INTEGRITY_SCRUB_MAX_ARTIFACTS", SCRUB_MAX_ARTIFACTS)
    max_bytes = max_bytes or getattr(settings, "INTEGRITY_SCRUB_MAX_BYTES", SCRUB_MAX_BYTES)
    report, seen = ScrubReport(), set()
    columns = ("artifact_sha256", "artifact_path", "artifact_size")
    never = ModelVersion.objects.filter(integrity_checked_at__isnull=True).order_by("id").values(*columns)
    oldest = ModelVersion.objects.exclude(integrity_checked_at__isnull=True).order_by("integrity_checked_at", "id")
    while report.checked < max_artifacts:
        row = never.first() or oldest.values(*columns).first()
        # a recorded check moves every version of the artifact to the back: meeting one again is a full turn
        if row is None or row["artifact_sha256"] in seen:
            break
        if report.checked and report.bytes + row["artifact_size"] > max_bytes:
            break
        sha256 = row["artifact_sha256"]
        seen.add(sha256)
        problem = artifacts.check(row["artifact_path"], sha256=sha256)
        artifact_integrity_record(sha256=sha256, problem=problem)
        report.checked += 1
        report.bytes += row["artifact_size"]
        if problem is not None:
            report.failed.append(sha256)
    return report


@transaction.atomic
def artifact_integrity_record(*, sha256: str, problem: str | None, actor=None) -> list[ModelVersion]:
    """Record a re-hash of the stored artifact ``sha256`` on every version registered with it:
    ``problem`` is None when the bytes matched, else ``artifacts.DIGEST_MISMATCH`` or ``MISSING``.

    A version whose artifact fails (and had not already failed) gets an audit event and its team
    a notification; one that passes again after failing gets an audit event too. The failure
    fails the version's deployment gate until a check passes again. Returns the versions whose
    state changed."""
    if problem is not None and problem not in artifacts.PROBLEMS:
        raise ValueError(f"Unknown artifact problem {problem!r}.")
    ok, code = problem is None, problem or ""
    versions = list(
        ModelVersion.objects.select_for_update(of=("self",))
        .select_related("model")
        .filter(artifact_sha256=sha256)
        .order_by("id")
    )
    if not versions:
        return []
    ModelVersion.objects.filter(pk__in=[v.pk for v in versions]).update(
        integrity_checked_at=timezone.now(), integrity_ok=ok, integrity_problem=code
    )
    changed = [v for v in versions if v.integrity_ok is not ok or v.integrity_problem != code]
    if ok:
        changed = [v for v in changed if v.integrity_ok is False]  # the first pass is news to nobody
    for version in changed:
        before = {"integrity_ok": version.integrity_ok, "integrity_problem": version.integrity_problem}
        version.integrity_ok, version.integrity_problem = ok, code
        audit.record(
            action=AuditAction.VERSION_INTEGRITY_RESTORED if ok else AuditAction.VERSION_INTEGRITY_FAILED, obj=version, before=before,
            after={"integrity_ok": ok, "integrity_problem": code}, changes={"artifact_sha256": sha256}, actor=actor,
        )  # fmt: skip
        if not ok:
            _notify_integrity_failure(version, problem=code)
    return changed


def _notify_integrity_failure(version: ModelVersion, *, problem: str) -> None:
    from governance.notifications import services as notifications
    from governance.notifications.models import EventKind

    team_id = version.model.team_id
    notifications.notify(
        event=EventKind.ARTIFACT_INTEGRITY_FAILED, team_id=team_id,
        title=f"Artifact integrity check failed: {version}",
        body=f"{artifacts.PROBLEMS[problem]} ({problem}) Version {version.number} of {version.model.name} fails its "
        "deployment gate until its artifact's bytes are restored.",
        url=version.get_absolute_url(),
        recipients=User.objects.filter(is_active=True, memberships__team_id=team_id).distinct(),
        payload={"version": {"id": version.pk, "number": version.number, "stage": version.stage},
                 "model": {"id": version.model_id, "name": version.model.name},
                 "artifact_sha256": version.artifact_sha256, "problem": problem},
    )  # fmt: skip
