"""New evidence after a review's freeze: the review is frozen again on the new digests (the
``evidence_changed`` receiver), and the evaluations a policy runs on every new version are
requested."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.dispatch import receiver
from django.utils import timezone

from governance.approvals import evidence, selectors
from governance.approvals.models import ApprovalRequest, RequestStatus
from governance.approvals.services.notify import _notify_reviewers
from governance.audit import services as audit
from governance.audit.actions import AuditAction
from governance.core.errors import Conflict
from governance.registry import services as registry
from governance.registry.models import ModelVersion, Stage
from governance.registry.signals import evidence_changed

User = get_user_model()


def evaluations_auto_request(*, version_id: int) -> list:
    """The evaluations the version's policy runs on every new version (``auto_evaluations``),
    requested as the version's registrant. Called by the worker after the artifact inspection, so
    that registering a version pays nothing for it; idempotent (a run per identical evaluation)."""
    version = ModelVersion.objects.select_related("model", "created_by").filter(pk=version_id).first()
    if version is None or version.created_by is None:
        return []
    try:
        policy = selectors.policy_for_model(version.model)
    except Conflict:  # no policy for the tier: nothing to run (requesting a review will say so)
        return []
    rules = selectors.current_rules(policy)
    if not rules.auto_evaluations:
        return []
    from governance.evaluations import services as evaluations

    return evaluations.runs_auto_request(actor=version.created_by, version=version, kinds=list(rules.auto_evaluations))


@receiver(evidence_changed, dispatch_uid="approvals.refreeze")
def _on_evidence_changed(sender, *, version: ModelVersion, actor=None, reason: str = "", **kwargs) -> None:
    request_refreeze(version=version, reason=reason, actor=actor)


def request_refreeze(*, version: ModelVersion, reason: str, actor=None) -> ApprovalRequest | None:
    """New evidence after the freeze: the open (or approved) request is frozen again on the new
    digests, the approvals given so far stop counting, an approved version goes back to review,
    and everyone who decided or may decide is told. Runs inside the sender's transaction."""
    request = (
        version.approval_requests.select_for_update(of=("self",))
        .filter(status__in=[RequestStatus.OPEN, RequestStatus.APPROVED])
        .order_by("-id")
        .first()
    )
    if request is None or version.stage not in (Stage.IN_REVIEW, Stage.APPROVED):
        return None
    document, digest = evidence.current(version)
    if digest == request.evidence_digest and version.artifact_sha256 == request.artifact_sha256:
        return None
    what = evidence.changes(request.evidence, document) or ["the evidence"]
    before = {"status": request.status, "freeze": request.freeze, "evidence_digest": request.evidence_digest}
    request.status = RequestStatus.OPEN
    request.closed_at = request.approved_at = None
    request.artifact_sha256, request.evidence_digest, request.evidence = version.artifact_sha256, digest, document
    request.freeze += 1
    request.frozen_at = timezone.now()
    request.stale_reason = f"{reason} Changed: {', '.join(what)}."[:300]
    governing = selectors.policy_revision_if_changed(request=request, model=version.model)
    if governing is not None:  # the model's tier (or assigned policy) now chooses another policy
        before["policy_revision"] = request.policy_revision_id
        request.policy_revision = governing
        request.assignment = selectors.assignment_governing(version.model)
        wanted = selectors.revision_rules(governing).wanted_from_outside(request.environments)
        request.wants_other_team_reviewer = "reviewer" in wanted
        request.wants_other_team_approver = "approver" in wanted
    request.save()
    audit.record(
        action=AuditAction.REVIEW_STALE, obj=request, before=before,
        after={"status": request.status, "freeze": request.freeze, "evidence_digest": digest,
               **({"policy_revision": governing.pk} if governing is not None else {})},
        changes={"reason": request.stale_reason}, actor=actor,
    )  # fmt: skip
    if version.stage == Stage.APPROVED:
        registry.version_transition_by_review(
            actor=actor, version=version, to=Stage.IN_REVIEW, reason=f"Review #{request.pk} went stale: {reason}"
        )
    deciders = User.objects.filter(pk__in=request.decisions.values("decided_by")).distinct()
    if before["status"] == RequestStatus.APPROVED or deciders.exists():
        # only news when something was dismissed: evidence that lands before anyone decided (the
        # artifact inspection finishing just after the request, say) simply joins the freeze
        _notify_reviewers(
            request, event="review.stale", actor=actor, title=f"Review went stale: {version}",
            body=f"{request.stale_reason} Approvals given before no longer count; please review again.",
            extra=deciders,
        )  # fmt: skip
    return request
