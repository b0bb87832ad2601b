"""The "Evidence" card of the version page: the version's evaluation runs, newest per kind."""

from __future__ import annotations

from django import template

from governance.accounts.capabilities import Capability
from governance.accounts.permissions import can
from governance.evaluations import selectors

register = template.Library()


@register.inclusion_tag("evaluations/_version_evidence.html", takes_context=True)
def version_evidence_panel(context, version):
    user = context["request"].user
    return {
        "version": version,
        "rows": selectors.evidence_table(version=version),
        "may_request": can(user, Capability.EVALUATION_REQUEST, version.model.team_id),
    }
