"""Compliance writes: editing the regulatory mappings (site administrators; every edit is a new,
kept revision and an audit event) and the retention purge (the daily beat task).

Retention deletes payloads, never records. An evaluation run past ``EVALUATION_RESULT_RETENTION_DAYS``
loses its stored result and figures; the run row, its ``result_digest``, the artifact digest it
verified and its audit events stay, so every evidence digest that named it can still be recomputed
from the manifest. A result that an open or approved review froze is never deleted: that review's
evidence digest binds an approval to it, and a reviewer, an auditor or the evidence bundle must be
able to read it again. To tell that cheaply, no result of a version with an open or approved review
is deleted while that review stands. Retained data files past ``EVALUATION_DATA_RETENTION_DAYS`` are
deleted whatever the reviews: the evidence digest names results, not data, and the file's sha256 is
kept. The audit log is never touched: the application's database role cannot delete from it anyway.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict, dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from governance.accounts.permissions import require_scope
from governance.audit import services as audit
from governance.audit.actions import AuditAction
from governance.compliance import evidence, selectors
from governance.compliance.models import EvaluationPurge, Framework, MappingItem, MappingRevision, PurgeKind
from governance.core.errors import Conflict, NotPermitted, ValidationFailed
from governance.core.retry import retry_once
from governance.evaluations.models import EvaluationRun
from governance.evaluations.services import data_storage
from governance.registry.models import ModelVersion

# What the API schema promises for each text (``pattern`` and ``maxLength``): a letter or a digit
# somewhere, so that a text of spaces and punctuation is refused rather than stored.
WORDS = "[A-Za-z0-9]"
LIMITS = {"reference": 60, "title": 160, "summary": 600, "comment": 300}


def _require_mapping_admin(actor, what: str) -> None:
    require_scope(actor, "admin")
    if not selectors.may_edit_mappings(actor):
        raise NotPermitted(f"Only site administrators may {what} (with a token, one not limited to a team).")


def _text(name: str, value, *, required: bool = True) -> str:
    text = (value or "").strip()
    if len(text) > LIMITS[name]:
        raise ValidationFailed(
            f"{name}: at most {LIMITS[name]} characters.", code="invalid", fields={name: [f"At most {LIMITS[name]}."]}
        )
    if required and not re.search(WORDS, text):
        message = "Write it out: it needs at least one letter or digit."
        raise ValidationFailed(f"{name}: {message}", code="invalid", fields={name: [message]})
    return text


def _evidence(codes) -> list[str]:
    codes = list(codes or [])
    if unknown := evidence.unknown(codes):
        message = f"Unknown evidence: {', '.join(unknown[:5])}. Known: {', '.join(evidence.CODES)}."
        raise ValidationFailed(message, code="unknown_evidence", fields={"evidence": [message]})
    if not codes:
        message = "Name at least one piece of evidence that covers the item."
        raise ValidationFailed(message, code="invalid", fields={"evidence": [message]})
    return evidence.ordered(codes)


@retry_once
@transaction.atomic
def mapping_item_create(
    *, actor, framework: Framework, reference: str, title: str, summary: str, evidence: list[str], comment: str = ""
) -> MappingItem:
    """Add an item to a framework, as its revision 1."""
    _require_mapping_admin(actor, "add to a regulatory mapping")
    content = {"title": _text("title", title), "summary": _text("summary", summary), "evidence": _evidence(evidence)}
    reference, comment = _text("reference", reference), _text("comment", comment, required=False)
    framework = Framework.objects.select_for_update().get(pk=framework.pk)  # orders the positions it hands out
    position = (framework.items.aggregate(last=Max("position"))["last"] or 0) + 1
    try:
        with transaction.atomic():
            item = MappingItem.objects.create(framework=framework, reference=reference, position=position, **content)
    except IntegrityError:
        raise Conflict(
            f"{framework.name} already has an item {reference}; revise that one instead.", code="duplicate_reference"
        ) from None
    MappingRevision.objects.create(item=item, number=1, active=True, comment=comment, created_by=actor, **content)
    audit.record(
        action=AuditAction.COMPLIANCE_ITEM_CREATE, obj=item, after={**audit.snapshot(item), "comment": comment},
        actor=actor,
    )  # fmt: skip
    return item


@retry_once
@transaction.atomic
def mapping_item_revise(
    *, actor, item: MappingItem, title: str | None = None, summary: str | None = None,
    evidence: list[str] | None = None, active: bool | None = None, comment: str = "", based_on: int | None = None,
) -> MappingRevision:  # fmt: skip
    """Store a new revision of the item (what is not given stays as it is); earlier revisions are kept.

    ``based_on``, when given, is the revision the editor saw: a revision made since is a 409, not
    silently overwritten."""
    _require_mapping_admin(actor, "edit a regulatory mapping")
    item = MappingItem.objects.select_for_update().select_related("framework").get(pk=item.pk)
    if based_on is not None and based_on != item.revision:
        raise Conflict(
            f"{item} is at revision {item.revision} now, not {based_on}: someone revised it meanwhile. "
            "Read it again and make your change on the current revision.",
            code="revision_stale",
        )
    before = audit.snapshot(item)
    new = {
        "title": item.title if title is None else _text("title", title),
        "summary": item.summary if summary is None else _text("summary", summary),
        "evidence": item.evidence if evidence is None else _evidence(evidence),
        "active": item.active if active is None else bool(active),
    }
    if all(getattr(item, name) == value for name, value in new.items()):
        raise Conflict(f"Nothing changes: revision {item.revision} of {item} says the same.", code="revision_unchanged")
    comment = _text("comment", comment, required=False)
    revision = MappingRevision.objects.create(
        item=item, number=item.revision + 1, comment=comment, created_by=actor, **new
    )
    for name, value in new.items():
        setattr(item, name, value)
    item.revision = revision.number
    item.save()
    audit.record(
        action=AuditAction.COMPLIANCE_ITEM_REVISE, obj=item, before=before,
        after={**audit.snapshot(item), "comment": comment}, actor=actor,
    )  # fmt: skip
    return revision


# --- retention --------------------------------------------------------------------------------

# Runs handled per pass: the task runs daily and takes the oldest first, so a backlog drains over days.
PURGE_BATCH = 500


@dataclass
class Purged:
    results: int = 0
    data_files: int = 0
    result_days: int = 0
    data_days: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def retention_purge(*, now: dt.datetime | None = None, batch: int = PURGE_BATCH) -> Purged:
    """Delete what is past its retention period (see the module's docstring); 0 days keeps forever."""
    now = now or timezone.now()
    done = Purged(
        result_days=settings.EVALUATION_RESULT_RETENTION_DAYS, data_days=settings.EVALUATION_DATA_RETENTION_DAYS
    )
    if done.result_days:
        due = selectors.results_due(before=now - dt.timedelta(days=done.result_days))
        by_version: dict[int, list[int]] = {}
        for run_id, version_id in due.values_list("id", "version_id")[:batch]:
            by_version.setdefault(version_id, []).append(run_id)
        for version_id in sorted(by_version):
            done.results += _purge_results(
                version_id=version_id, run_ids=by_version[version_id], days=done.result_days, now=now
            )
    if done.data_days:
        due = selectors.data_due(before=now - dt.timedelta(days=done.data_days))
        for run_id in list(due.values_list("id", flat=True)[:batch]):
            done.data_files += _purge_data(run_id=run_id, days=done.data_days, now=now)
    return done


@retry_once
@transaction.atomic
def _purge_results(*, version_id: int, run_ids: list[int], days: int, now: dt.datetime) -> int:
    # The version's lock first, as a review request takes it: a request opened at the same moment either
    # sees these results already purged or, holding the lock first, makes this pass keep them.
    ModelVersion.objects.select_for_update(of=("self",)).filter(pk=version_id).first()
    if selectors.versions_reviewed(version_ids=[version_id]):
        return 0
    runs = list(
        EvaluationRun.objects.select_for_update().filter(pk__in=run_ids).select_related("version__model").order_by("id")
    )
    already = set(
        EvaluationPurge.objects.filter(run_id__in=run_ids, what=PurgeKind.RESULT).values_list("run_id", flat=True)
    )
    runs = [run for run in runs if run.pk not in already]
    for run in runs:
        note = (
            f"The stored result and figures were deleted on {now:%Y-%m-%d}, {days} days after the run ended "
            f"(EVALUATION_RESULT_RETENTION_DAYS). The result digest {run.result_digest} and the audit events of "
            "the run are kept."
        )
        run.result = {"notes": [note], "retention": {"purged_at": now.isoformat(), "result_digest": run.result_digest}}
        run.figures = {}
        run.save(update_fields=["result", "figures"])
        EvaluationPurge.objects.create(
            run=run, what=PurgeKind.RESULT, purged_at=now, retention_days=days, result_digest=run.result_digest
        )
    for run in runs:  # the chain head last
        audit.record(
            action=AuditAction.EVALUATION_RESULT_PURGE, obj=run,
            after={"kind": run.kind, "result_digest": run.result_digest, "retention_days": days}, actor=None,
        )  # fmt: skip
    return len(runs)


@retry_once
@transaction.atomic
def _purge_data(*, run_id: int, days: int, now: dt.datetime) -> int:
    run = EvaluationRun.objects.select_for_update().select_related("version__model").filter(pk=run_id).first()
    if run is None or run.data_deleted_at is not None or not run.data_path:
        return 0
    path = run.data_path
    run.data_deleted_at = now
    run.save(update_fields=["data_deleted_at"])
    EvaluationPurge.objects.get_or_create(
        run=run, what=PurgeKind.DATA,
        defaults={"purged_at": now, "retention_days": days, "data_sha256": run.data_sha256},
    )  # fmt: skip
    audit.record(
        action=AuditAction.EVALUATION_DATA_PURGE, obj=run,
        after={"data_sha256": run.data_sha256, "data_rows": run.data_rows, "retention_days": days}, actor=None,
    )  # fmt: skip
    # after the commit: a rollback must not leave a run that still points at its file, gone
    transaction.on_commit(lambda: data_storage().delete(path))
    return 1
