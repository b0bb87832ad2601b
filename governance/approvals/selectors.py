"""Approvals reads. Every selector takes the user and returns only what that user may see.

Besides the owning team's members, people holding a decision role in another team see the
requests whose policy asks for an independent reviewer or approver from outside that team.
"""

from __future__ import annotations

import functools
import json

from django.db.models import Case, Exists, JSONField, OuterRef, Q, QuerySet, Subquery, When
from django.utils import timezone

from governance.accounts.capabilities import Capability, roles_for
from governance.accounts.permissions import can, roles_by_team, roles_in, team_ids_visible_to, token_team
from governance.approvals import evidence, gates
from governance.approvals import rules as R
from governance.approvals.models import (
    ApprovalRequest,
    ChecklistTick,
    Decision,
    ModelPolicy,
    Policy,
    PolicyAssignment,
    PolicyRevision,
    RequestStatus,
    RevisionState,
)
from governance.core.errors import Conflict, DomainError, NotPermitted
from governance.evaluations.models import ACTIVE as EVALUATION_ACTIVE
from governance.evaluations.models import EvaluationRun
from governance.evaluations.models import RunStatus as EvaluationStatus
from governance.registry.models import ModelVersion, RegisteredModel

# --- who may decide ---------------------------------------------------------------------------


def decision_roles(user, team_id: int) -> tuple[frozenset[str], frozenset[str]]:
    """(decision roles in the owning team, decision roles usable as an outsider to it).

    Outsider roles count only for people with no membership at all in the owning team, and
    never through a token restricted to another team.
    """
    deciding = roles_for(Capability.APPROVAL_DECIDE)
    inside = roles_in(user, team_id) & deciding
    if not user.is_authenticated or token_team(user) is not None:
        return inside, frozenset()
    by_team = roles_by_team(user)
    if team_id in by_team:
        return inside, frozenset()
    outside = frozenset().union(*by_team.values()) & deciding if by_team else frozenset()
    return inside, outside


def decision_refusal(user, request: ApprovalRequest, decisions: list | None = None) -> DomainError | None:
    """Why this person may not decide on the request now, or ``None`` when they may.

    The one statement of the rule: the service raises what this returns, and the review page
    uses it to show the form or the reason. ``decisions`` (the request's, when already loaded)
    saves a query.
    """
    version = request.version
    if user.pk in (version.created_by_id, request.requested_by_id):
        who = "registered this version" if user.pk == version.created_by_id else "requested this review"
        return NotPermitted(
            f"Separation of duties: you {who}, so you cannot decide on it; the version's author and the person "
            "who requested the review never do.",
            code="separation_of_duties",
        )
    revision = request.policy_revision
    if revision.is_loosening and user.pk is not None and user.pk == revision.created_by_id:
        return _loosening_proposer(revision, "decide on this review")
    assignment = request.assignment if request.assignment_id is not None else None
    if _proposed_loosening(user, assignment):
        return _assignment_proposer(assignment, version.model, "decide on this review")
    inside, outside = decision_roles(user, version.model.team_id)
    wanted = wanted_from_outside(request)
    if not inside and not (outside & wanted):
        return NotPermitted(
            "You need the reviewer or approver role in the owning team"
            + (" (or in another team, as this policy asks for an independent review)" if wanted else "")
            + " to decide on this review."
        )
    if not request.is_open:
        return Conflict(
            f"Review #{request.pk} is {request.get_status_display().lower()}; its decisions are final.",
            code="request_closed",
        )
    if decisions is not None:
        decided = any(d.decided_by_id == user.pk and d.freeze == request.freeze for d in decisions)
    else:
        decided = request.decisions.filter(decided_by=user, freeze=request.freeze).exists()
    if decided:
        return Conflict(
            f"You have already decided on this review (freeze {request.freeze}); decisions are final.",
            code="already_decided",
        )
    return None


def _loosening_proposer(revision: PolicyRevision, what: str) -> NotPermitted:
    return NotPermitted(
        f"Separation of duties: you proposed revision {revision.number} of the policy "
        f"'{revision.policy.name}', which loosened its rules, so you cannot {what} judged under it.",
        code="separation_of_duties",
    )


def request_refusal(
    user, revision: PolicyRevision, *, assignment: PolicyAssignment | None = None, model: RegisteredModel | None = None
) -> DomainError | None:
    """Why this person may not open a review judged under ``revision`` (the policy's current one)
    and the ``assignment`` that chose that policy for the ``model``, beyond the roles the service
    checks: the proposer of a loosening (of the policy, or of the model's choice of it) never does."""
    if revision.is_loosening and user.pk is not None and user.pk == revision.created_by_id:
        return _loosening_proposer(revision, "request a review")
    if _proposed_loosening(user, assignment):
        return _assignment_proposer(assignment, model or assignment.model, "request a review")
    return None


def _proposed_loosening(user, assignment: PolicyAssignment | None) -> bool:
    return (
        assignment is not None and assignment.is_loosening and user.pk is not None
        and user.pk == assignment.proposed_by_id
    )  # fmt: skip


def _assignment_proposer(assignment: PolicyAssignment, model: RegisteredModel, what: str) -> NotPermitted:
    return NotPermitted(
        f"Separation of duties: you gave {model.name} {assignment.describe()}, which loosened the rules its "
        f"versions are reviewed under, so you cannot {what} judged under it.",
        code="separation_of_duties",
    )


# --- who may tick a checklist item ------------------------------------------------------------


def checklist_refusal(
    user, version: ModelVersion, *, open_request: ApprovalRequest | None, item: R.ChecklistGate | None = None
) -> DomainError | None:
    """Why this person (or token) may not tick or untick a checklist item of the version now, or
    ``None`` when they may. The one statement of the rule: the service raises what this returns,
    and the gate panel uses it to show the buttons or the reason.

    ``item``: the checklist gate being ticked; ``None`` asks about every item (the page, where a
    person acts with a session, not a token)."""
    team_id = version.model.team_id
    if not can(user, Capability.CHECKLIST_TICK, team_id):  # and never the version's author or the requester
        names = ", ".join(sorted(roles_for(Capability.CHECKLIST_TICK)))
        return NotPermitted(f"You need one of these roles in the owning team to tick a checklist item: {names}.")
    if user.pk == version.created_by_id or (open_request is not None and user.pk == open_request.requested_by_id):
        who = "registered this version" if user.pk == version.created_by_id else "requested its open review"
        return NotPermitted(
            f"Separation of duties: you {who}, so you cannot tick its checklist; the version's author and the "
            "person who requested the review never do.",
            code="separation_of_duties",
        )
    token = getattr(user, "_charter_token", None)
    if token is not None and (item is None or not item.allows_token(token.name)):
        return NotPermitted(
            "Checklist items are attested by people in the browser or with a session; an API token may tick "
            "only an item whose policy names that automation"
            + (f" (item '{item.item}' names none that matches the token '{token.name}')." if item else "."),
            code="checklist_requires_person",
        )
    return None


# --- who may adopt a looser policy ------------------------------------------------------------


def proposal_refusal(user, revision: PolicyRevision, *, approve: bool = True) -> DomainError | None:
    """Why this person may not approve (or reject) the proposed revision now, or ``None``.

    A team policy's proposal is decided by an admin of the team or a site administrator, a
    site-wide one by a site administrator; never through an API token, and never approved by the
    person who proposed it (they may withdraw it by rejecting it)."""
    policy = revision.policy
    if getattr(user, "_charter_token", None) is not None:
        return NotPermitted(
            "A looser policy is approved or rejected by a person in the browser or with a session, never with an "
            "API token.",
            code="decision_requires_person",
        )
    if policy.team_id is None:
        if not (user.is_authenticated and user.is_superuser):
            return NotPermitted("Only site administrators approve or reject changes of site-wide policies.")
    elif not can(user, Capability.POLICY_MANAGE, policy.team_id):
        return NotPermitted(f"Only admins of {policy.team} (or site administrators) approve or reject its policies.")
    if revision.state != RevisionState.PROPOSED:
        return Conflict(
            f"Revision {revision.number} of '{policy.name}' is {revision.get_state_display().lower()}, not proposed.",
            code="proposal_closed",
        )
    if approve and user.pk == revision.created_by_id:
        return NotPermitted(
            "Separation of duties: you proposed this loosening, so a second admin of the team (or a site "
            "administrator) must approve it.",
            code="separation_of_duties",
        )
    return None


# --- who may adopt a looser choice of a model's policy ---------------------------------------------


def assignment_refusal(user, assignment: PolicyAssignment, *, approve: bool = True) -> DomainError | None:
    """Why this person may not approve (or reject) the proposed change of a model's policy now, or
    ``None``. Decided by an admin of the model's team or a site administrator, in person (never
    through an API token), and never approved by the person who proposed it (they may withdraw it
    by rejecting it)."""
    model = assignment.model
    if getattr(user, "_charter_token", None) is not None:
        return NotPermitted(
            "A looser policy for a model is approved or rejected by a person in the browser or with a session, "
            "never with an API token.",
            code="decision_requires_person",
        )
    if not can(user, Capability.POLICY_MANAGE, model.team_id):
        return NotPermitted(
            f"Only admins of {model.team} (or site administrators) approve or reject a change of its models' policies."
        )
    if assignment.state != RevisionState.PROPOSED:
        return Conflict(
            f"This change of {model.name}'s policy is {assignment.get_state_display().lower()}, not proposed.",
            code="proposal_closed",
        )
    if approve and user.pk == assignment.proposed_by_id:
        return NotPermitted(
            f"Separation of duties: you proposed giving {model.name} {assignment.describe()}, which loosens its "
            "rules, so a second admin of the team (or a site administrator) must approve it.",
            code="separation_of_duties",
        )
    return None


def assignment_governing(model: RegisteredModel) -> PolicyAssignment | None:
    """The recorded change that chose the policy governing the model now: its latest adopted one,
    while it still describes the model's assignment (``None`` for a model assigned before changes
    were recorded, or never)."""
    latest = (
        PolicyAssignment.objects.filter(model_id=model.pk, state=RevisionState.ADOPTED)
        .select_related("policy")
        .order_by("-decided_at", "-id")
        .first()
    )
    if latest is None:
        return None
    assigned = ModelPolicy.objects.filter(model_id=model.pk).values_list("policy_id", flat=True).first()
    return latest if latest.policy_id == assigned else None


def assignment_proposal(model: RegisteredModel) -> PolicyAssignment | None:
    """The change of the model's policy waiting for a second admin, if any."""
    return (
        PolicyAssignment.objects.select_related("policy", "proposed_by", "target__policy", "model__team")
        .filter(model_id=model.pk, state=RevisionState.PROPOSED)
        .first()
    )


def assignment_list(*, user) -> QuerySet[PolicyAssignment]:
    """Changes of the policies of the models the user can see, newest first."""
    ids = team_ids_visible_to(user)
    qs = PolicyAssignment.objects.all() if ids is None else PolicyAssignment.objects.filter(model__team_id__in=ids)
    return qs.select_related(
        "model", "model__team", "policy", "target__policy", "based_on__policy", "proposed_by", "decided_by"
    ).order_by("-id")


def assignment_proposals_to(*, user, policy: Policy) -> list[PolicyAssignment]:
    """Proposed changes that would make ``policy`` govern a model the user can see (the policy page)."""
    return list(assignment_list(user=user).filter(state=RevisionState.PROPOSED, target__policy=policy)[:50])


def policy_proposal(policy: Policy) -> PolicyRevision | None:
    """The policy's proposed revision waiting for a second admin, if any."""
    return policy.revisions.select_related("created_by").filter(state=RevisionState.PROPOSED).first()


def checklist_tickers(item: R.ChecklistGate) -> str:
    """Who may tick the item, in words (the gate panel and the API's documentation say the same)."""
    people = "a reviewer, approver, author or admin of the owning team, except the version's author and the review's requester"
    names = item.automation_names()
    if names is None:
        return people + "; or any API token with the transition scope (recorded with the tick)"
    if names:
        return people + f"; or an API token named {', '.join(sorted(names))} (recorded with the tick)"
    return people + "; no API token"


def wanted_from_outside(request: ApprovalRequest) -> frozenset[str]:
    """The decision roles the quorums of the requested environments want from outside the owning team."""
    return revision_rules(request.policy_revision).wanted_from_outside(request.environments)


def _held_anywhere(user) -> frozenset[str]:
    restricted = token_team(user)
    held = set()
    for team_id, roles in roles_by_team(user).items():
        if restricted is None or team_id == restricted:
            held |= roles
    return frozenset(held) & roles_for(Capability.APPROVAL_DECIDE)


# --- policies ---------------------------------------------------------------------------------


def policy_list(*, user) -> QuerySet[Policy]:
    """Site-wide policies are readable by everyone signed in; team policies by the team."""
    ids = team_ids_visible_to(user)
    qs = Policy.objects.all() if ids is None else Policy.objects.filter(Q(team__isnull=True) | Q(team_id__in=ids))
    current = PolicyRevision.objects.filter(policy=OuterRef("pk"), number=OuterRef("revision")).values("rules")[:1]
    proposed = PolicyRevision.objects.filter(policy=OuterRef("pk"), state=RevisionState.PROPOSED)
    return (
        qs.select_related("team")
        .annotate(current_rules=Subquery(current, output_field=JSONField()), has_proposal=Exists(proposed))
        .order_by("team__name", "risk_tier", "name")
    )


def policy_revision_current(policy: Policy) -> PolicyRevision:
    return policy.revisions.get(number=policy.revision)


def policy_for_model(model: RegisteredModel) -> Policy:
    """The model's own policy when one is assigned, otherwise the default of its risk tier."""
    override = ModelPolicy.objects.select_related("policy").filter(model=model).first()
    if override is not None:
        return override.policy
    policy = Policy.objects.filter(team__isnull=True, risk_tier=model.risk_tier).first()
    if policy is None:
        raise Conflict(
            f"No policy governs {model.get_risk_tier_display().lower()}-risk models: an administrator must create one.",
            code="no_policy",
        )
    return policy


def policy_revision_if_changed(*, request: ApprovalRequest, model: RegisteredModel) -> PolicyRevision | None:
    """The current revision of the policy that governs the model now, when that is another policy
    than the one the request was opened under (its risk tier or its assigned policy changed since);
    ``None`` when it is the same policy, or when no policy governs the model's tier."""
    try:
        policy = policy_for_model(model)
    except Conflict:
        return None
    if policy.pk == request.policy_revision.policy_id:
        return None
    return policy_revision_current(policy)


def current_rules(policy: Policy) -> R.Rules:
    """The parsed rules of the policy's current revision."""
    return revision_rules(policy_revision_current(policy))


@functools.lru_cache(maxsize=256)
def _parse_cached(revision_id: int, text: str) -> R.Rules:
    return R.parse(json.loads(text))


def revision_rules(revision: PolicyRevision) -> R.Rules:
    """A stored revision's parsed rules. Revisions never change, so the parse is cached per revision
    (keyed by content too: ids restart when a database is recreated, as in tests)."""
    return _parse_cached(revision.pk, json.dumps(revision.rules, sort_keys=True))


# --- requests ---------------------------------------------------------------------------------


def request_list(*, user) -> QuerySet[ApprovalRequest]:
    ids = team_ids_visible_to(user)
    visible = Q()
    if ids is not None:
        visible = Q(version__model__team_id__in=ids)
        held = _held_anywhere(user)
        if "reviewer" in held:
            visible |= Q(wants_other_team_reviewer=True)
        if "approver" in held:
            visible |= Q(wants_other_team_approver=True)
    return ApprovalRequest.objects.filter(visible).select_related(
        "version", "version__model", "version__model__team", "requested_by", "policy_revision__policy", "assignment"
    )


def request_awaiting(*, user) -> QuerySet[ApprovalRequest]:
    """Open requests this person may decide and has not decided on their current freeze."""
    if not user.is_authenticated:
        return ApprovalRequest.objects.none()
    open_ = request_list(user=user).filter(status=RequestStatus.OPEN)
    if not (user.is_superuser and token_team(user) is None):
        by_team = {t: r for t, r in roles_by_team(user).items() if token_team(user) in (None, t)}
        deciding_teams = [t for t, roles in by_team.items() if roles & roles_for(Capability.APPROVAL_DECIDE)]
        eligible = Q(version__model__team_id__in=deciding_teams)
        if token_team(user) is None:
            held = _held_anywhere(user)
            outsider = ~Q(version__model__team_id__in=list(by_team))
            if "reviewer" in held:
                eligible |= outsider & Q(wants_other_team_reviewer=True)
            if "approver" in held:
                eligible |= outsider & Q(wants_other_team_approver=True)
        open_ = open_.filter(eligible)
    decided = Decision.objects.filter(request=OuterRef("pk"), decided_by=user, freeze=OuterRef("freeze"))
    return (
        open_.exclude(version__created_by=user)
        .exclude(requested_by=user)
        .exclude(Q(policy_revision__created_by=user) & ~Q(policy_revision__loosens=[]))
        .exclude(Q(assignment__proposed_by=user) & ~Q(assignment__loosens=[]))
        .exclude(Exists(decided))
    )


def decision_list(*, request: ApprovalRequest) -> list[Decision]:
    return list(request.decisions.select_related("decided_by").order_by("id"))


ACTIVE_RUNS_SHOWN = 50


def review_runs(*, user, request: ApprovalRequest) -> tuple[dict[int, EvaluationRun], list[EvaluationRun]]:
    """The evaluation runs a review shows: those frozen into its evidence (by id) and those of the
    version still queued or running (they join the evidence when they finish). Read through the
    request the user may see, so an independent reviewer gets them too; one query."""
    frozen = [e.get("run") for e in (request.evidence or {}).get("evaluations") or [] if isinstance(e, dict)]
    frozen = [pk for pk in frozen if isinstance(pk, int)]
    visible = request_list(user=user).filter(pk=request.pk).values("version_id")
    runs = (
        EvaluationRun.objects.filter(version_id__in=visible)
        .filter(Q(pk__in=frozen) | Q(status__in=EVALUATION_ACTIVE))
        .defer("environment", "data_columns")
        .order_by(Case(When(pk__in=frozen, then=0), default=1), "id")  # the frozen ones whatever the cap
    )
    by_id, active = {}, []
    for run in runs[: len(frozen) + ACTIVE_RUNS_SHOWN]:
        if run.pk in frozen:
            by_id[run.pk] = run
        else:
            active.append(run)
    return by_id, active


# --- the gate ---------------------------------------------------------------------------------


# What the gates read of a run; environment: a benchmark's compute host (name, labels), which the
# latency and GPU-memory gates match.
_GATE_RUN_FIELDS = (
    "id", "kind", "result", "sensitive_features", "artifact_sha256", "finished_at", "version_id", "parameters",
    "environment",
)  # fmt: skip


def gate_inputs_for(*, version: ModelVersion, environments, now=None) -> dict[str, gates.Inputs]:
    """What the gate looks at, per environment. What belongs to the version (evidence digest, ticks,
    runs, earlier served versions) is loaded once for all the environments."""
    requests = list(version.approval_requests.select_related("policy_revision__policy", "requested_by").order_by("-id"))
    ticks = {t.item: t for t in ChecklistTick.objects.filter(version=version).select_related("ticked_by")}
    _, digest = evidence.current(version)
    # earlier versions that were live in an environment and are not any more (the serving app's record)
    from governance.serving.models import Deployment, DeploymentState

    served_in: dict[str, set[int]] = {}
    for version_id, environment in Deployment.objects.filter(
        model_id=version.model_id, version__number__lt=version.number, state=DeploymentState.LIVE,
        until__isnull=False,
    ).values_list("version_id", "environment__name"):  # fmt: skip
        served_in.setdefault(environment, set()).add(version_id)
    served = list(
        ModelVersion.objects.filter(pk__in=set().union(*served_in.values())).order_by("-number") if served_in else []
    )
    served_approvals = list(ApprovalRequest.objects.filter(version__in=served, status=RequestStatus.APPROVED))
    runs = list(
        EvaluationRun.objects.filter(version=version, status=EvaluationStatus.SUCCEEDED)
        .only(*_GATE_RUN_FIELDS)
        .order_by("-finished_at", "-id")
    )
    card_exists = version.cards.exists()
    default_policy = None
    decisions: dict[int, list[Decision]] = {}
    out = {}
    for environment in environments:
        request = next((r for r in requests if environment in r.environments), None)
        if request is not None:
            revision = request.policy_revision
            policy = revision.policy
            if request.pk not in decisions:
                decisions[request.pk] = decision_list(request=request)
        else:
            default_policy = default_policy or policy_for_model(version.model)
            policy = default_policy
            revision = policy_revision_current(policy)
        approved = {r.version_id for r in served_approvals if environment in r.environments}
        out[environment] = gates.Inputs(
            version=version,
            environment=environment,
            policy=policy,
            revision=revision,
            rules=revision_rules(revision),
            request=request,
            decisions=decisions.get(request.pk, []) if request is not None else [],
            ticks=ticks,
            card_exists=card_exists,
            evidence_digest=digest,
            rollback_candidates=[v for v in served if v.pk in approved and v.pk in served_in.get(environment, ())],
            runs=runs,
            now=now or timezone.now(),
            urls={"card": version.get_absolute_url() + "#card", "checklist": version.get_absolute_url() + "#gate"},
        )
    return out


def gate_inputs(*, version: ModelVersion, environment: str, now=None) -> gates.Inputs:
    return gate_inputs_for(version=version, environments=[environment], now=now)[environment]


def gate_checks(*, version: ModelVersion, environments, now=None) -> dict[str, gates.Verdict]:
    """``gate_check`` for several environments, the version's evidence loaded once."""
    inputs = gate_inputs_for(version=version, environments=environments, now=now)
    return {environment: gates.evaluate(each) for environment, each in inputs.items()}


def gate_check(*, version: ModelVersion, environment: str, now=None) -> gates.Verdict:
    """pass / fail / pending for serving ``version`` in ``environment``, with one line per gate and quorum rule."""
    return gates.evaluate(gate_inputs(version=version, environment=environment, now=now))
