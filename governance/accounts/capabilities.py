"""Who may do what: one enum, ``Capability``, and the one table of the team roles that hold each.

A capability is something a person may do in a team (``<object>.<verb>``). ``require``, ``can``
and ``can_anywhere`` in ``governance.accounts.permissions`` take only a ``Capability`` member (a
plain string is a ``TypeError``), and the few places that need the roles themselves (a
``Membership`` query, a set of roles held) read them with ``roles_for``. No other module writes a
set of roles down: ``tests/test_capabilities.py`` scans the code for one.

Site administrators hold every role in every team (``permissions.roles_in``). Lifecycle steps carry
their roles in the transition table of ``governance/registry/models.py`` (they differ per step and
per stage left, so no capability states the same rule); the table builds each set with
``transition_roles``.
"""

from __future__ import annotations

from enum import StrEnum

from governance.accounts.models import Role


class Capability(StrEnum):
    VIEW = "view"
    # registry
    MODEL_CREATE = "model.create"
    MODEL_UPDATE = "model.update"
    MODEL_DELETE = "model.delete"
    MODEL_RETIER = "model.retier"
    VERSION_CREATE = "version.create"
    VERSION_UPDATE = "version.update"
    CARD_EDIT = "card.edit"
    # approvals
    REVIEW_REQUEST = "review.request"
    APPROVAL_DECIDE = "approval.decide"
    CHECKLIST_TICK = "checklist.tick"
    POLICY_MANAGE = "policy.manage"
    # evaluations
    EVALUATION_REQUEST = "evaluation.request"
    # serving: deploy, canary, promote, roll back, retire, and a version's probe request
    DEPLOY = "serving.deploy"
    # hosts: register a compute host (and own a host-scoped token for its agent)
    HOST_REGISTER = "hosts.register"
    # accounts and audit
    TEAM_MANAGE = "team.manage"
    AUDIT_VERIFY = "audit.verify"


ALL_ROLES: frozenset[str] = frozenset(Role)
_AUTHORS = frozenset({Role.AUTHOR, Role.ADMIN})

# The one table. Admins hold every capability of their team except deciding reviews: only these
# roles give approvals that count, and the version's author and the requester never do (the
# approvals selectors add that separation of duties).
_ROLES: dict[Capability, frozenset[str]] = {
    Capability.VIEW: ALL_ROLES,
    Capability.MODEL_CREATE: _AUTHORS,
    Capability.MODEL_UPDATE: _AUTHORS,
    Capability.MODEL_DELETE: frozenset({Role.ADMIN}),
    # the risk tier chooses the default policy: admins and approvers, never a plain author
    Capability.MODEL_RETIER: frozenset({Role.APPROVER, Role.ADMIN}),
    # also whose uploads the evaluation worker trusts to unpickle: someone who may register a version
    Capability.VERSION_CREATE: _AUTHORS,
    Capability.VERSION_UPDATE: _AUTHORS,
    Capability.CARD_EDIT: _AUTHORS,
    # requesting a review and withdrawing it
    Capability.REVIEW_REQUEST: _AUTHORS,
    Capability.APPROVAL_DECIDE: frozenset({Role.REVIEWER, Role.APPROVER}),
    # the version's author and the review's requester never tick (approvals selectors)
    Capability.CHECKLIST_TICK: frozenset({Role.AUTHOR, Role.REVIEWER, Role.APPROVER, Role.ADMIN}),
    # a team's policies and which one governs its models; site-wide policies are site administrators'
    Capability.POLICY_MANAGE: frozenset({Role.ADMIN}),
    # requesting an evaluation and cancelling one
    Capability.EVALUATION_REQUEST: frozenset({Role.AUTHOR, Role.REVIEWER, Role.APPROVER, Role.ADMIN}),
    # what is live: operators (and admins) act; authors may not serve their own work
    Capability.DEPLOY: frozenset({Role.OPERATOR, Role.ADMIN}),
    # compute hosts are shared hardware the platform team runs: operators and admins of any team register them
    Capability.HOST_REGISTER: frozenset({Role.OPERATOR, Role.ADMIN}),
    # a team's name, members and webhooks
    Capability.TEAM_MANAGE: frozenset({Role.ADMIN}),
    Capability.AUDIT_VERIFY: frozenset({Role.AUDITOR, Role.ADMIN}),
}

_missing = set(Capability) - set(_ROLES)
if _missing:  # pragma: no cover - a new member without its roles fails at import, not at first use
    raise RuntimeError(f"Capabilities without roles: {', '.join(sorted(_missing))}.")


def capability(value) -> Capability:
    """``value`` itself when it is a ``Capability``; a ``TypeError`` otherwise (a plain string too)."""
    if not isinstance(value, Capability):
        raise TypeError(f"Permission checks take a Capability member, not {type(value).__name__} {value!r}.")
    return value


def roles_for(cap: Capability) -> frozenset[str]:
    """The team roles that hold the capability."""
    return _ROLES[capability(cap)]


def transition_roles(*roles: Role) -> frozenset[str]:
    """The roles that may take a lifecycle step by hand: those the transition table names, and the
    team's admins."""
    return frozenset({*roles, Role.ADMIN})
