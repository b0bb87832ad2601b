"""Every action the audit log records: one enum, ``AuditAction``, read by ``audit.record``, the
filters, the pages and a test.

An action code is ``<domain>.<what>``; it is stored and hashed with the event, so a code never
changes once written (add a new member instead). Each member carries the verb a timeline shows:
"<actor> <verb> <subject>". ``governance.audit.services.record`` takes only an ``AuditAction``
member (a plain string is a ``TypeError``), so an action that is not listed here cannot be recorded.
"""

from __future__ import annotations

from enum import StrEnum


class AuditAction(StrEnum):
    verb: str

    def __new__(cls, value: str, verb: str):
        member = str.__new__(cls, value)
        member._value_ = value
        member.verb = verb
        return member

    @property
    def refused(self) -> AuditAction:
        """The action recorded when this write is refused, ``<code>.refused`` (a ``ValueError`` when
        there is none)."""
        return AuditAction(f"{self.value}.refused")

    # registry
    MODEL_CREATE = "model.create", "registered"
    MODEL_UPDATE = "model.update", "edited"
    MODEL_DELETE = "model.delete", "deleted"
    MODEL_POLICY = "model.policy", "changed the approval policy of"
    MODEL_POLICY_REFUSED = "model.policy.refused", "was refused a change of the approval policy of"
    MODEL_RETIER = "model.retier", "changed the risk tier of"
    VERSION_CREATE = "version.create", "registered"
    VERSION_UPDATE = "version.update", "edited"
    VERSION_TRANSITION = "version.transition", "moved"
    VERSION_TRANSITION_REFUSED = "version.transition.refused", "was refused a lifecycle step of"
    VERSION_ARTIFACT_INSPECTED = "version.artifact_inspected", "inspected the artifact of"
    VERSION_INTEGRITY_FAILED = "version.integrity_failed", "found the stored artifact changed or missing for"
    VERSION_INTEGRITY_RESTORED = "version.integrity_restored", "found the stored artifact intact again for"
    VERSION_BUNDLE = "version.bundle", "downloaded the evidence bundle of"
    CARD_SAVE = "card.save", "edited the model card of"
    # approvals
    POLICY_CREATE = "policy.create", "created an approval policy"
    POLICY_CREATE_REFUSED = "policy.create.refused", "was refused creating an approval policy"
    POLICY_UPDATE = "policy.update", "edited an approval policy"
    POLICY_UPDATE_REFUSED = "policy.update.refused", "was refused an edit of an approval policy"
    POLICY_REVISION_PROPOSE = "policy.revision.propose", "proposed a looser revision of an approval policy"
    POLICY_REVISION_APPROVE = "policy.revision.approve", "approved a looser revision of an approval policy"
    POLICY_REVISION_REJECT = "policy.revision.reject", "rejected a proposed revision of an approval policy"
    POLICY_REVISION_REFUSED = "policy.revision.refused", "was refused a decision on a proposed policy revision"
    POLICY_ASSIGN_PROPOSED = "policy.assign.proposed", "proposed a looser approval policy for"
    POLICY_ASSIGN_APPROVED = "policy.assign.approved", "approved a looser approval policy for"
    POLICY_ASSIGN_REJECTED = "policy.assign.rejected", "rejected a proposed approval policy for"
    POLICY_ASSIGN_REFUSED = "policy.assign.refused", "was refused a decision on a proposed approval policy for"
    REVIEW_REQUEST = "review.request", "requested a review"
    REVIEW_REQUEST_REFUSED = "review.request.refused", "was refused a review request for"
    REVIEW_DECIDE = "review.decide", "recorded a review decision"
    REVIEW_DECIDE_REFUSED = "review.decide.refused", "was refused a review decision"
    REVIEW_APPROVED = "review.approved", "closed a review as approved"
    REVIEW_REJECTED = "review.rejected", "closed a review as rejected"
    REVIEW_CHANGES_REQUESTED = "review.changes_requested", "closed a review asking for changes"
    REVIEW_WITHDRAWN = "review.withdrawn", "withdrew a review request"
    REVIEW_STALE = "review.stale", "marked a review stale"
    CHECKLIST_TICK = "checklist.tick", "ticked a checklist item of"
    CHECKLIST_UNTICK = "checklist.untick", "unticked a checklist item of"
    CHECKLIST_TICK_REFUSED = "checklist.tick.refused", "was refused a checklist tick on"
    # evaluations
    EVALUATION_REQUEST = "evaluation.request", "requested an evaluation"
    EVALUATION_REQUEST_REFUSED = "evaluation.request.refused", "was refused an evaluation of"
    EVALUATION_SUCCEED = "evaluation.succeed", "completed an evaluation"
    EVALUATION_FAIL = "evaluation.fail", "recorded a failed evaluation"
    EVALUATION_CANCEL = "evaluation.cancel", "cancelled an evaluation"
    EVALUATION_REQUEUE = "evaluation.requeue", "re-queued an evaluation whose worker was lost"
    EVALUATION_RESULT_PURGE = "evaluation.result_purge", "deleted, past its retention period, the stored result of"
    EVALUATION_DATA_PURGE = "evaluation.data_purge", "deleted, past its retention period, the retained data of"
    # compliance
    COMPLIANCE_ITEM_CREATE = "compliance.item.create", "added a regulatory mapping item"
    COMPLIANCE_ITEM_REVISE = "compliance.item.revise", "revised a regulatory mapping item"
    # serving
    SERVING_BACKEND_CREATE = "serving.backend.create", "registered a serving backend"
    SERVING_ENVIRONMENT_CREATE = "serving.environment.create", "created a serving environment"
    SERVING_ENVIRONMENT_UPDATE = "serving.environment.update", "changed a serving environment's health policy"
    SERVING_PROBE_SET = "serving.probe.set", "set the probe request of"
    SERVING_ACTION = "serving.action", "asked to change what is live:"
    SERVING_ACTION_REFUSED = "serving.action.refused", "was refused a change of what is live:"
    SERVING_ACTION_SUCCEEDED = "serving.action.succeeded", "changed what is live:"
    SERVING_ACTION_FAILED = "serving.action.failed", "failed to change what is live:"
    SERVING_ACTION_ROLLED_BACK = "serving.action.rolled_back", "rolled back by itself, after a failed check:"
    SERVING_ACTION_REQUEUE = "serving.action.requeue", "queued again after its worker was lost:"
    SERVING_DRIFT = "serving.drift", "found the backend serving something else than recorded for"
    SERVING_ACTION_RESTORE = "serving.action.restore", "put the backend back as recorded, after a lost worker:"
    SERVING_DRIFT_RESOLVED = "serving.drift.resolved", "found the backend serving again what is recorded for"
    # compute hosts (a heartbeat is no event: one every few seconds per host would drown the log)
    HOST_REGISTER = "host.register", "registered a compute host"
    HOST_REREGISTER = "host.reregister", "registered again, with changes, a compute host"
    # notifications
    WEBHOOK_CREATE = "webhook.create", "created a webhook"
    WEBHOOK_UPDATE = "webhook.update", "edited a webhook"
    WEBHOOK_DELETE = "webhook.delete", "deleted a webhook"
    WEBHOOK_TEST = "webhook.test", "sent a test delivery of a webhook"
    # accounts
    TEAM_CREATE = "team.create", "created team"
    TEAM_UPDATE = "team.update", "edited team"
    MEMBERSHIP_ADD = "membership.add", "added a membership in"
    MEMBERSHIP_REMOVE = "membership.remove", "removed a membership in"
    TOKEN_CREATE = "token.create", "created an API token"
    TOKEN_CREATE_REFUSED = "token.create.refused", "was refused an API token"
    TOKEN_REVOKE = "token.revoke", "revoked an API token"
    TOKEN_REVOKE_REFUSED = "token.revoke.refused", "was refused revoking an API token"
    USER_LOGIN = "user.login", "signed in"
    USER_LOGIN_FAILED = "user.login_failed", "failed to sign in"
    USER_LOCKED_OUT = "user.locked_out", "was locked out of signing in after repeated failures"
    PERMISSION_DENIED = "permission.denied", "was refused"
    # the audit log itself
    AUDIT_EXPORT = "audit.export", "exported audit events"


# The heading of each domain in the action filter, in the order the filter lists them.
DOMAINS = {
    "model": "Models",
    "version": "Versions",
    "card": "Model cards",
    "review": "Reviews",
    "checklist": "Review checklists",
    "policy": "Approval policies",
    "evaluation": "Evaluations",
    "compliance": "Regulatory mappings",
    "serving": "Serving",
    "host": "Compute hosts",
    "webhook": "Webhooks",
    "team": "Teams",
    "membership": "Memberships",
    "token": "API tokens",
    "user": "Sign-ins",
    "permission": "Refusals",
    "audit": "Audit log",
}

PREFIX_SUFFIX = ".*"

_BY_CODE = {a.value: a for a in AuditAction}


def domain(code: str) -> str:
    return code.split(".", 1)[0]


def verb(code: str) -> str:
    """The verb a timeline shows for ``code``; an unknown code shows as itself."""
    action = _BY_CODE.get(code)
    return action.verb if action is not None else code


def under(prefix: str) -> list[str]:
    """The codes of one domain, ``prefix`` given as ``review`` or ``review.*``."""
    name = prefix.removesuffix(PREFIX_SUFFIX)
    return [a.value for a in AuditAction if domain(a.value) == name]


def grouped() -> list[tuple[str, str, list[str]]]:
    """(heading, ``<domain>.*``, codes) per domain: the action filter's option groups."""
    order = list(DOMAINS) + sorted({domain(a.value) for a in AuditAction} - set(DOMAINS))
    return [(DOMAINS.get(name, name), name + PREFIX_SUFFIX, under(name)) for name in order]


def filter_choices() -> list[tuple[str, str]]:
    """Every value the ``action`` filter accepts: each domain's ``<domain>.*`` and each code."""
    choices = []
    for heading, prefix, codes in grouped():
        choices.append(
            (prefix, f"{heading}: every action whose code starts with {prefix.removesuffix(PREFIX_SUFFIX)}.")
        )
        choices.extend((code, f"the actor {verb(code)}") for code in codes)
    return choices
