"""Template helpers of the approvals pages: status badges, and the deployment gate panel of a version."""

from __future__ import annotations

from django import template
from django.utils.html import format_html

from governance.approvals import presenters, selectors

register = template.Library()

# Request statuses reuse the lifecycle colours of the stage they lead to.
_REQUEST_CLASSES = {
    "open": "stage-in_review",
    "approved": "stage-approved",
    "rejected": "stage-rejected",
    "changes_requested": "stage-changes_requested",
    "withdrawn": "stage-draft",
}
_DECISION_CLASSES = {
    "approve": "stage-approved",
    "request_changes": "stage-changes_requested",
    "reject": "stage-rejected",
}
_DECISION_LABELS = {"approve": "Approved", "request_changes": "Changes requested", "reject": "Rejected"}


@register.simple_tag
def request_badge(status: str) -> str:
    return format_html(
        '<span class="badge stage {}">{}</span>',
        _REQUEST_CLASSES.get(status, ""),
        presenters.request_status_label(status),
    )


@register.simple_tag
def decision_badge(decision: str) -> str:
    return format_html(
        '<span class="badge {}">{}</span>',
        _DECISION_CLASSES.get(decision, ""),
        _DECISION_LABELS.get(decision, decision),
    )


@register.simple_tag
def verdict_badge(verdict: str) -> str:
    return format_html(
        '<span class="badge verdict verdict-{}">{}</span>', verdict, presenters.VERDICT_LABELS.get(verdict, verdict)
    )


@register.simple_tag
def short_digest(value: str) -> str:
    return format_html('<code class="digest-short" title="{}">{}</code>', value, presenters.digest_short(value))


@register.inclusion_tag("approvals/_version_gate.html", takes_context=True)
def version_gate_panel(context, version):
    """The "Deployment gate" card of the version page. Loaded here rather than by the view, so that
    every path that renders the version page (a refused transition or checklist tick too) has it."""
    request = context["request"]
    user = request.user
    from governance.accounts.capabilities import Capability
    from governance.accounts.permissions import can

    return {
        "request": request,
        "version": version,
        "panels": presenters.gate_panel(user=user, version=version),
        "links": presenters.version_review_links(user=user, version=version),
        "may_request": can(user, Capability.REVIEW_REQUEST, version.model.team_id) and version.is_editable,
        "csrf_token": context.get("csrf_token"),
        "next": "",
    }


@register.filter
def request_status(status: str) -> str:
    return presenters.request_status_label(status).lower()


@register.inclusion_tag("approvals/_model_policy.html", takes_context=True)
def model_policy_panel(context, model):
    """The model's governing policy on its page, and the choice of another for team admins."""
    from governance.accounts.capabilities import Capability
    from governance.accounts.permissions import can
    from governance.approvals.models import ModelPolicy
    from governance.core.errors import DomainError

    user = context["request"].user
    try:
        current = selectors.policy_for_model(model)
    except DomainError:
        current = None
    overridden = ModelPolicy.objects.filter(model=model).exists()
    may_assign = can(user, Capability.POLICY_MANAGE, model.team_id)
    choices = []
    if may_assign:
        choices = [p for p in selectors.policy_list(user=user) if p.team_id in (None, model.team_id)]
    proposal = selectors.assignment_proposal(model)
    governing = selectors.assignment_governing(model)
    return {"model": model, "current": current, "overridden": overridden, "may_assign": may_assign,
            "choices": choices, "csrf_token": context.get("csrf_token"), "proposal": proposal,
            "proposal_right": presenters.assignment_right(user, proposal) if proposal is not None else None,
            "loosened_by": governing if governing is not None and governing.is_loosening else None}  # fmt: skip
