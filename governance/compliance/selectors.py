"""Compliance reads: the mappings (site-wide, readable by everyone signed in), the regulatory report
of a model, the record of what was decided and live in a period, and what retention may purge.

Every report is scoped to what the user may see: a model report to a model they can see, the
decision record to the events of their teams (``team_ids_visible_to``).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Max, Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from governance.accounts.models import Team
from governance.accounts.permissions import team_ids_visible_to, token_team
from governance.approvals import selectors as approvals
from governance.approvals.models import ApprovalRequest, Decision, PolicyRevision, RequestStatus
from governance.audit.actions import AuditAction
from governance.audit.models import AuditEvent
from governance.compliance import coverage
from governance.compliance.models import EvaluationPurge, Framework, MappingItem, MappingRevision, PurgeKind
from governance.core.errors import DomainError
from governance.evaluations.models import FINISHED, EvaluationRun, RunStatus
from governance.registry.models import ModelVersion, RegisteredModel, Stage

REQUEST_TYPE = ApprovalRequest._meta.label_lower
VERSION_TYPE = ModelVersion._meta.label_lower

# At most this many rows in each part of the decision record (the totals are always exact).
RECORD_ROWS = 500
# Versions whose gate the record checks again when the period reaches today (each check reads its evidence).
GATE_CHECKS = 50

SERVING_NOTE = (
    "Charter has no serving records yet: a version counts as live here when its lifecycle stage was approved or "
    "deployed at the end of the period, as the audit trail of its transitions records it, not because a "
    "deployment in an environment is known."
)


# --- mappings ---------------------------------------------------------------------------------


def may_edit_mappings(user) -> bool:
    """Site administrators edit the mappings, in person or with a token that is not limited to one team."""
    return bool(user.is_authenticated and user.is_superuser and token_team(user) is None)


def framework_list(*, user) -> QuerySet[Framework]:
    return Framework.objects.all() if user.is_authenticated else Framework.objects.none()


def item_list(*, user) -> QuerySet[MappingItem]:
    qs = MappingItem.objects.select_related("framework")
    return qs if user.is_authenticated else qs.none()


def revision_list(*, item: MappingItem) -> QuerySet[MappingRevision]:
    return item.revisions.select_related("created_by").order_by("-number")


# --- the regulatory report of a model ---------------------------------------------------------


@dataclass
class ItemRow:
    item: MappingItem
    status: str
    checks: list[coverage.Check]


@dataclass
class FrameworkSection:
    framework: Framework
    rows: list[ItemRow]

    @property
    def covered(self) -> int:
        return sum(1 for r in self.rows if r.status == coverage.COVERED)

    @property
    def missing(self) -> int:
        return len(self.rows) - self.covered


@dataclass
class ModelReport:
    model: RegisteredModel
    version: ModelVersion | None
    latest: bool  # the version is the model's newest
    sections: list[FrameworkSection]
    generated_at: dt.datetime
    notes: list[str] = field(default_factory=list)


def version_facts(*, model: RegisteredModel, version: ModelVersion | None) -> coverage.Facts:
    """What the coverage rules look at, for one version, in a handful of queries."""
    if version is None:
        return coverage.Facts(model_id=model.pk, version_id=None)
    card = version.cards.order_by("-revision").only("revision", "sections").first()
    filled = frozenset()
    if card is not None:
        filled = frozenset(key for key in card.sections if key not in card.missing_sections())
    runs: dict[str, coverage.RunFact] = {}
    newest = (
        version.evaluation_runs.filter(status=RunStatus.SUCCEEDED)
        .order_by("-finished_at", "-id")
        .values_list("id", "kind", "finished_at")[:1000]
    )
    for run_id, kind, finished_at in newest:
        runs.setdefault(kind, coverage.RunFact(id=run_id, finished_at=finished_at))
    purged = dict(
        EvaluationPurge.objects.filter(run_id__in=[r.id for r in runs.values()], what=PurgeKind.RESULT).values_list(
            "run_id", "purged_at"
        )
    )
    runs = {k: coverage.RunFact(r.id, r.finished_at, purged.get(r.id)) for k, r in runs.items()}
    approved = open_review = None
    for request_id, status, approved_at, environments in version.approval_requests.filter(
        status__in=[RequestStatus.APPROVED, RequestStatus.OPEN]
    ).values_list("id", "status", "approved_at", "environments"):
        fact = coverage.ReviewFact(request_id, approved_at, tuple(environments or ()))
        if status == RequestStatus.APPROVED and (approved is None or fact.id > approved.id):
            approved = fact
        elif status == RequestStatus.OPEN:
            open_review = fact
    return coverage.Facts(
        model_id=model.pk, version_id=version.pk, card_revision=card.revision if card else None,
        filled_sections=filled, runs=runs, approved=approved, open_review=open_review,
    )  # fmt: skip


def model_report(*, user, model: RegisteredModel, version: ModelVersion | None = None) -> ModelReport:
    """Each active item of every framework, covered or missing for ``version`` (default: the model's
    newest version the user can see). The caller has checked that the user may see the model."""
    newest = model.versions.order_by("-number").first()
    version = version or newest
    facts = version_facts(model=model, version=version)
    items = MappingItem.objects.filter(active=True).select_related("framework").order_by("position", "id")
    by_framework: dict[int, list[ItemRow]] = {}
    for item in items:
        checks = [coverage.check(code, facts) for code in item.evidence]
        by_framework.setdefault(item.framework_id, []).append(ItemRow(item, coverage.item_status(checks), checks))
    sections = [FrameworkSection(f, by_framework.get(f.pk, [])) for f in Framework.objects.all()]
    return ModelReport(
        model=model, version=version, latest=version is not None and newest is not None and version.pk == newest.pk,
        sections=sections, generated_at=timezone.now(), notes=[coverage.MONITORING_NOTE],
    )  # fmt: skip


# --- what was decided and live ----------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """The ``days`` calendar days (UTC) ending with ``until``; ``end`` is exclusive, ``None`` past year 9999."""

    since: dt.date
    until: dt.date
    days: int
    start: dt.datetime
    end: dt.datetime | None


def period(*, until: dt.date, days: int) -> Period:
    back = min(days - 1, (until - dt.date.min).days)
    since = until - dt.timedelta(days=back)
    start = dt.datetime.combine(since, dt.time.min, tzinfo=dt.UTC)
    end = dt.datetime.combine(until + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC) if until < dt.date.max else None
    return Period(since=since, until=until, days=back + 1, start=start, end=end)


CLOSED_AS = {
    AuditAction.REVIEW_APPROVED.value: RequestStatus.APPROVED,
    AuditAction.REVIEW_REJECTED.value: RequestStatus.REJECTED,
    AuditAction.REVIEW_CHANGES_REQUESTED.value: RequestStatus.CHANGES_REQUESTED,
}
# The events that set a review's status: the newest one before a moment says whether it was open then.
_OPENS = (AuditAction.REVIEW_REQUEST.value, AuditAction.REVIEW_STALE.value)
_REVIEW_STATUS = (*_OPENS, *CLOSED_AS, AuditAction.REVIEW_WITHDRAWN.value)
_LIVE_STAGES = (Stage.APPROVED, Stage.DEPLOYED)


def _team_events(user) -> QuerySet[AuditEvent]:
    ids = team_ids_visible_to(user)
    return AuditEvent.objects.all() if ids is None else AuditEvent.objects.filter(team_id__in=ids)


def _before(qs: QuerySet[AuditEvent], end: dt.datetime | None) -> QuerySet[AuditEvent]:
    return qs if end is None else qs.filter(created_at__lt=end)


def _newest_per_object(qs: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
    """The newest event of each object among ``qs``: one grouped subquery, on PostgreSQL and SQLite alike."""
    newest = qs.order_by().values("object_id").annotate(newest=Max("seq")).values("newest")
    return AuditEvent.objects.filter(seq__in=newest)


def _changes(event: dict) -> dict:
    try:
        body = json.loads(event["changes"])
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _ids(values) -> list[int]:
    return [int(v) for v in values if str(v).isdigit()]


def decision_record(*, user, until: dt.date, days: int) -> dict[str, Any]:
    """What was decided in the period and what was live at its end, from the audit log (which is never
    edited) joined with the rows it names; plain data for the page, the API and the PDF."""
    span = period(until=until, days=days)
    now = timezone.now()
    ids = team_ids_visible_to(user)
    teams = Team.objects.order_by("name") if ids is None else Team.objects.filter(pk__in=ids).order_by("name")
    decisions, decisions_total = _decisions(user, span)
    live, live_total = _live(user, span)
    exceptions = _open_reviews(user, span) + _unapproved_live(live)
    notes = [SERVING_NOTE, "Times are UTC. Decisions and stages come from the audit log, whose chain can be verified."]
    if span.end is None or span.end > now:
        failing, unchecked = _failing_gates(live)
        exceptions += failing
        if unchecked:
            notes.append(f"The gate of {unchecked} more live version(s) was not checked again here.")
    if decisions_total > len(decisions) or live_total > len(live):
        notes.append(f"Each list shows at most {RECORD_ROWS} rows; the totals count them all.")
    return {
        "since": span.since, "until": span.until, "days": span.days, "starts_at": span.start, "ends_at": span.end,
        "generated_at": now, "teams": [{"id": t.pk, "name": t.name} for t in teams],
        "decisions": decisions, "decisions_total": decisions_total,
        "live": live, "live_total": live_total,
        "exceptions": exceptions, "notes": notes,
    }  # fmt: skip


def _decisions(user, span: Period) -> tuple[list[dict], int]:
    closed = _before(
        _team_events(user).filter(object_type=REQUEST_TYPE, action__in=list(CLOSED_AS), created_at__gte=span.start),
        span.end,
    )
    total = closed.count()
    events = list(
        closed.order_by("seq").values("seq", "created_at", "action", "object_id", "actor_label")[:RECORD_ROWS]
    )
    request_ids = _ids({e["object_id"] for e in events})
    requests = {
        r.pk: r
        for r in ApprovalRequest.objects.filter(pk__in=request_ids).select_related(
            "version__model__team", "policy_revision__policy"
        )
    }
    # A review reopened later (new evidence) changed its freeze, and maybe its policy revision: the first
    # stale event after a closure says what they were when it closed.
    stale = list(
        AuditEvent.objects.filter(
            object_type=REQUEST_TYPE, action=AuditAction.REVIEW_STALE, object_id__in=[str(i) for i in request_ids]
        )
        .order_by("seq")
        .values("seq", "object_id", "changes")
    ) if events else []  # fmt: skip
    for s in stale:
        s["before"] = _changes(s).get("before") or {}
    revisions = {}
    wanted_revisions = {s["before"].get("policy_revision") for s in stale} - {None}
    if wanted_revisions:
        revisions = PolicyRevision.objects.select_related("policy").in_bulk(_ids(wanted_revisions))
    by_request: dict[tuple[int, int], list[Decision]] = {}
    for decision in Decision.objects.filter(request_id__in=request_ids).select_related("decided_by").order_by("id"):
        by_request.setdefault((decision.request_id, decision.freeze), []).append(decision)
    rows = []
    for event in events:
        request = requests.get(int(event["object_id"])) if str(event["object_id"]).isdigit() else None
        if request is None:
            continue
        freeze, revision = request.freeze, request.policy_revision
        later = [s["before"] for s in stale if s["object_id"] == event["object_id"] and s["seq"] > event["seq"]]
        if later and "freeze" in later[0]:
            freeze = later[0]["freeze"]
        changed = next((b["policy_revision"] for b in later if "policy_revision" in b), None)
        if changed is not None:
            revision = revisions.get(changed, revision)
        version = request.version
        rows.append({
            "review": request.pk, "review_url": request.get_absolute_url(),
            "outcome": CLOSED_AS[event["action"]].value, "closed_at": event["created_at"],
            "closed_by": event["actor_label"] or None, "audit_seq": event["seq"],
            "model": version.model_id, "model_name": version.model.name,
            "team": version.model.team_id, "team_name": version.model.team.name,
            "version": version.pk, "version_number": version.number, "version_url": version.get_absolute_url(),
            "environments": list(request.environments or []),
            "policy": revision.policy_id, "policy_name": revision.policy.name, "policy_revision": revision.number,
            "decisions": [
                {"by": d.decided_by.get_username(), "decision": d.decision, "decided_at": d.decided_at,
                 "comment": d.comment, "roles": sorted({*d.team_roles, *d.other_team_roles})}
                for d in by_request.get((request.pk, freeze), [])
            ],
        })  # fmt: skip
    return rows, total


def _live(user, span: Period) -> tuple[list[dict], int]:
    transitions = _before(
        _team_events(user).filter(object_type=VERSION_TYPE, action=AuditAction.VERSION_TRANSITION), span.end
    )
    # The canonical JSON of a transition starts with its new stage: {"after":{"stage":"approved"},...
    stage_is = Q()
    for stage in _LIVE_STAGES:
        stage_is |= Q(changes__startswith=f'{{"after":{{"stage":"{stage.value}"}}')
    newest = _newest_per_object(transitions).filter(stage_is)
    total = newest.count()
    events = list(newest.order_by("seq").values("seq", "created_at", "object_id", "changes")[:RECORD_ROWS])
    versions = ModelVersion.objects.select_related("model__team").in_bulk(_ids(e["object_id"] for e in events))
    # the newest approval of each live version, up to the end of the period
    requests = {
        r["id"]: r for r in ApprovalRequest.objects.filter(version_id__in=list(versions)).values("id", "version_id",
                                                                                                   "environments")
    }  # fmt: skip
    approvals_by_version: dict[int, dict] = {}
    approved = _before(
        AuditEvent.objects.filter(
            object_type=REQUEST_TYPE, action=AuditAction.REVIEW_APPROVED, object_id__in=[str(i) for i in requests]
        ),
        span.end,
    ).order_by("seq")
    for event in approved.values("object_id", "created_at") if requests else []:
        request = requests.get(int(event["object_id"]))
        if request is not None:
            approvals_by_version[request["version_id"]] = {**request, "at": event["created_at"]}
    rows = []
    for event in events:
        version = versions.get(int(event["object_id"])) if str(event["object_id"]).isdigit() else None
        if version is None:
            continue
        approval = approvals_by_version.get(version.pk)
        rows.append({
            "version": version.pk, "version_number": version.number, "version_url": version.get_absolute_url(),
            "model": version.model_id, "model_name": version.model.name,
            "team": version.model.team_id, "team_name": version.model.team.name,
            "stage": (_changes(event).get("after") or {}).get("stage", ""), "stage_since": event["created_at"],
            "current_stage": version.stage,
            "review": approval["id"] if approval else None,
            "approved_at": approval["at"] if approval else None,
            "approved_for": list(approval["environments"] or []) if approval else [],
        })  # fmt: skip
    return rows, total


def _exception(kind: str, detail: str, *, row: dict, url: str, review: int | None, since) -> dict:
    return {
        "kind": kind, "detail": detail, "review": review, "url": url, "since": since,
        "version": row["version"], "version_number": row["version_number"], "model_name": row["model_name"],
        "team_name": row["team_name"],
    }  # fmt: skip


def _open_reviews(user, span: Period) -> list[dict]:
    statuses = _before(_team_events(user).filter(object_type=REQUEST_TYPE, action__in=list(_REVIEW_STATUS)), span.end)
    still_open = _newest_per_object(statuses).filter(action__in=list(_OPENS))
    events = list(still_open.order_by("seq").values("object_id", "created_at")[:RECORD_ROWS])
    requests = ApprovalRequest.objects.select_related("version__model__team").in_bulk(
        _ids(e["object_id"] for e in events)
    )
    out = []
    for event in events:
        request = requests.get(int(event["object_id"])) if str(event["object_id"]).isdigit() else None
        if request is None:
            continue
        version = request.version
        row = {"version": version.pk, "version_number": version.number, "model_name": version.model.name,
               "team_name": version.model.team.name}  # fmt: skip
        out.append(
            _exception(
                "open_review",
                f"Review #{request.pk} of {version} was open, not decided, at the end of the period.",
                row=row,
                url=request.get_absolute_url(),
                review=request.pk,
                since=event["created_at"],
            )  # fmt: skip
        )
    return out


def _unapproved_live(live: list[dict]) -> list[dict]:
    return [
        _exception(
            "live_without_approval",
            f"{row['model_name']} v{row['version_number']} was {row['stage']} with no approved review recorded "
            "before the end of the period.",
            row=row,
            url=row["version_url"],
            review=None,
            since=row["stage_since"],
        )  # fmt: skip
        for row in live
        if row["approved_at"] is None
    ]


def _failing_gates(live: list[dict]) -> tuple[list[dict], int]:
    """The deployed versions whose gate fails now, for the environments they were approved for."""
    deployed = [r for r in live if r["current_stage"] == Stage.DEPLOYED]
    versions = ModelVersion.objects.select_related("model__team").in_bulk(
        [r["version"] for r in deployed[:GATE_CHECKS]]
    )
    out = []
    for row in deployed[:GATE_CHECKS]:
        version = versions.get(row["version"])
        environments = row["approved_for"] or ["production"]
        try:
            verdicts = approvals.gate_checks(version=version, environments=environments)
        except DomainError as exc:  # no policy governs the model now
            out.append(_exception("gate_failing", f"The gate cannot be judged now: {exc.detail}", row=row,
                                  url=row["version_url"], review=row["review"], since=None))  # fmt: skip
            continue
        failing = [env for env, verdict in verdicts.items() if not verdict.passed]
        if failing:
            out.append(
                _exception(
                    "gate_failing",
                    f"{version} is deployed but its gate does not pass now for {', '.join(failing)}.",
                    row=row,
                    url=reverse("version-detail", args=[version.pk]) + "#gate",
                    review=row["review"],
                    since=None,
                )  # fmt: skip
            )
    return out, max(0, len(deployed) - GATE_CHECKS)


# --- retention --------------------------------------------------------------------------------


def _reviewed() -> Q:
    return Q(status__in=[RequestStatus.OPEN, RequestStatus.APPROVED])


def results_due(*, before: dt.datetime) -> QuerySet[EvaluationRun]:
    """Successful runs that ended before ``before`` and still hold their result, oldest first; never a
    run of a version with an open or approved review (``versions_reviewed``)."""
    purged = EvaluationPurge.objects.filter(what=PurgeKind.RESULT).values("run_id")
    reviewed = ApprovalRequest.objects.filter(_reviewed()).values("version_id")
    return (
        EvaluationRun.objects.filter(status=RunStatus.SUCCEEDED, finished_at__lt=before)
        .exclude(pk__in=purged)
        .exclude(version_id__in=reviewed)
        .order_by("finished_at", "id")
    )


def versions_reviewed(*, version_ids) -> set[int]:
    """The versions an open or approved review holds. Such a review froze the digest of the version's
    evidence, which names its runs' results: deleting one would leave a digest nobody can check again.
    Only the runs its manifest names are frozen; all of the version's are kept while it stands, which a
    single indexed query can tell."""
    return set(
        ApprovalRequest.objects.filter(_reviewed(), version_id__in=list(version_ids)).values_list(
            "version_id", flat=True
        )
    )


def data_due(*, before: dt.datetime) -> QuerySet[EvaluationRun]:
    """Finished runs that retained their data file past ``before`` (oldest first)."""
    return (
        EvaluationRun.objects.filter(status__in=FINISHED, finished_at__lt=before, retain_data=True)
        .filter(data_deleted_at__isnull=True)
        .exclude(data_path="")
        .order_by("finished_at", "id")
    )
