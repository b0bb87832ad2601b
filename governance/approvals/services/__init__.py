"""Approvals writes: policies, review requests, decisions, checklist ticks, stale evidence.

Every write locks what two people could change at once, records its audit event in the same
transaction, and sends notifications on commit. A request's row lock serialises decisions on
it, so concurrent approvals are counted once each and the request closes exactly once.

Locks are taken in the order written down in ``governance/audit/services.py``: the model row, the
version row, then the version's review request (``locks._locked_review``), the audit chain head last. A
finishing evaluation run locks the version and then (the re-freeze) its request, so a service that
locked the request first would deadlock with it. Policies and revisions are locked ``FOR NO KEY
UPDATE``: a request, a revision or an assignment that references them (whose deferred foreign-key
check takes ``FOR KEY SHARE`` at commit, after the chain head) is never blocked by it.

By concern: ``policies`` (create, update, loosening proposals of rules), ``assignments`` (which
policy governs a model), ``reviews`` (request, decide, withdraw, settle), ``checklist``,
``staleness`` (the re-freeze on new evidence, auto evaluations), ``reminders`` (expiring
approvals); ``locks`` and ``notify`` are what they share. Importing the package connects the
``evidence_changed`` receiver (``governance/approvals/apps.py``).
"""

from governance.approvals.services.assignments import (
    policy_assign,
    policy_assignment_approve,
    policy_assignment_reject,
)
from governance.approvals.services.checklist import checklist_tick
from governance.approvals.services.notify import eligible_reviewers
from governance.approvals.services.policies import (
    policy_create,
    policy_revision_approve,
    policy_revision_reject,
    policy_update,
)
from governance.approvals.services.reminders import approvals_expiring_notify
from governance.approvals.services.reviews import request_decide, request_review, request_settle, request_withdraw
from governance.approvals.services.staleness import evaluations_auto_request, request_refreeze

__all__ = [
    "approvals_expiring_notify",
    "checklist_tick",
    "eligible_reviewers",
    "evaluations_auto_request",
    "policy_assign",
    "policy_assignment_approve",
    "policy_assignment_reject",
    "policy_create",
    "policy_revision_approve",
    "policy_revision_reject",
    "policy_update",
    "request_decide",
    "request_refreeze",
    "request_review",
    "request_settle",
    "request_withdraw",
]
