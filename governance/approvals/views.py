"""Browser pages of the approvals app: the review queue, the review page, review requests,
checklist ticks and policies.

Thin views over the same selectors and services as the API: a request is looked up through
``selectors.request_list`` (so an independent reviewer from another team reaches the version
through the request they were asked to review), every write is a service call, and a refusal
becomes a form error or a message with the service's status code.
"""

from __future__ import annotations

import datetime as dt

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from governance.accounts.capabilities import Capability
from governance.accounts.permissions import can, can_anywhere
from governance.accounts.selectors import team_list
from governance.approvals import presenters, selectors, services
from governance.approvals.forms import (
    QUEUE_TABS,
    ChecklistTickForm,
    DecisionForm,
    PolicyForm,
    ProposalDecisionForm,
    QueueFilterForm,
    ReviewRequestForm,
    WithdrawForm,
    rules_error_on_field,
)
from governance.approvals.models import ApprovalRequest, RequestStatus
from governance.core.errors import DomainError
from governance.core.ui import page_again, show_domain_error
from governance.registry import selectors as registry_selectors
from governance.registry.models import CARD_SECTION_MIN_CHARS, CARD_SECTIONS, RiskTier

PAGE_SIZE = 25
REVISIONS_SHOWN = 50


def _page(qs, number):
    page = Paginator(qs, PAGE_SIZE).get_page(number)
    page.object_list = list(page.object_list)
    return page


# --- the queue --------------------------------------------------------------------------------


@login_required
def review_queue(request):
    user = request.user
    teams = list(team_list(user=user))
    form = QueueFilterForm(request.GET, teams=teams, auto_id="f-%s")
    form.is_valid()  # a bad filter is ignored (and said so), the page still shows
    data = form.cleaned_data
    tab = data.get("tab") or "awaiting"
    if tab == "awaiting":
        qs = selectors.request_awaiting(user=user).order_by("id")
    elif tab == "open":
        qs = selectors.request_list(user=user).filter(status=RequestStatus.OPEN).order_by("id")
    else:
        qs = selectors.request_list(user=user).exclude(status=RequestStatus.OPEN).order_by("-id")
    if data.get("team"):
        qs = qs.filter(version__model__team_id=data["team"])
    if data.get("risk_tier"):
        qs = qs.filter(version__model__risk_tier=data["risk_tier"])
    if data.get("older_than"):
        qs = qs.filter(requested_at__lte=timezone.now() - dt.timedelta(days=data["older_than"]))
    page = _page(presenters.with_approval_counts(qs), request.GET.get("page"))
    filters = {k: request.GET.get(k, "") for k in ("team", "risk_tier", "older_than")}
    context = {
        "tab": tab,
        "tabs": QUEUE_TABS,
        "form": form,
        "filter_errors": form.errors,
        "current": filters,
        "filters_active": any(filters.values()),
        "page": page,
        "rows": presenters.queue_rows(page.object_list),
        "decides_anywhere": presenters.decides_anywhere(user),
    }
    return render(request, "approvals/review_queue.html", context)


# --- the review page --------------------------------------------------------------------------


def _get_request(request, pk: int) -> ApprovalRequest:
    return get_object_or_404(
        selectors.request_list(user=request.user).select_related("version__created_by", "policy_revision"), pk=pk
    )


def _card_sections(card) -> list[dict]:
    sections = []
    for key, title, help_text in CARD_SECTIONS:
        text = (card.sections.get(key) or "") if card else ""
        sections.append(
            {"key": key, "title": title, "help": help_text, "text": text,
             "filled": len(text.strip()) >= CARD_SECTION_MIN_CHARS}
        )  # fmt: skip
    return sections


def _review_page(request, review: ApprovalRequest, *, form: DecisionForm | None = None, status: int = 200):
    user = request.user
    version = review.version  # through the request: an independent reviewer may not see it otherwise
    model = version.model
    decisions = selectors.decision_list(request=review)
    right = presenters.decision_right(user, review, decisions)
    card = registry_selectors.card_current(version=version)
    baseline = presenters.deployed_baseline(version)
    policy = presenters.policy_view(review.policy_revision.rules)
    evidence = presenters.evidence_view(review.evidence)
    frozen_runs, active_runs = selectors.review_runs(user=user, request=review)
    context = {
        "review": review,
        "version": version,
        "model": model,
        "environments": [presenters.environment_label(e) for e in review.environments],
        "policy": review.policy_revision.policy,
        "revision": review.policy_revision,
        "policy_view": policy,
        "card": card,
        "sections": _card_sections(card),
        "completeness": card.completeness if card else 0,
        "card_changed": card is not None and (evidence["card"] or {}).get("revision") not in (None, card.revision),
        "evidence": evidence,
        "evaluations": presenters.review_evaluations(review, frozen_runs),
        "active_runs": active_runs,
        "baseline": baseline,
        "diff": registry_selectors.version_diff(old=baseline, new=version) if baseline is not None else None,
        "panels": presenters.gate_panel(user=user, version=version, environments=review.environments),
        "decisions": presenters.decision_rows(review, decisions),
        "decisions_dismissed": sum(d.freeze != review.freeze for d in decisions),
        "right": right,
        "form": form or DecisionForm(),
        "may_withdraw": review.is_open and can(user, Capability.REVIEW_REQUEST, model.team_id),
        "may_see_version": registry_selectors.version_list(user=user).filter(pk=version.pk).exists(),
        "artifact_short": presenters.digest_short(review.artifact_sha256),
        "evidence_short": presenters.digest_short(review.evidence_digest),
    }
    return render(request, "approvals/review_detail.html", context, status=status)


@login_required
def review_detail(request, pk: int):
    return _review_page(request, _get_request(request, pk))


@login_required
@require_POST
def review_decide(request, pk: int):
    review = _get_request(request, pk)
    form = DecisionForm(request.POST)
    if not form.is_valid():
        return _review_page(request, review, form=form, status=400)
    decision = form.cleaned_data["decision"]
    try:
        services.request_decide(
            actor=request.user, request=review, decision=decision, comment=form.cleaned_data["comment"]
        )
    except DomainError as exc:
        show_domain_error(request, exc, form)
        return _review_page(request, _get_request(request, pk), form=form, status=exc.status)
    review = _get_request(request, pk)
    messages.success(
        request,
        {
            "approve": "Approved.",
            "request_changes": "Changes requested: the author has been told.",
            "reject": "Rejected: the author has been told.",
        }[decision]
        + f" Review #{review.pk} is now {review.get_status_display().lower()}.",
    )
    return redirect(review)


@login_required
@require_POST
def review_withdraw(request, pk: int):
    review = _get_request(request, pk)
    form = WithdrawForm(request.POST)
    form.is_valid()
    try:
        services.request_withdraw(actor=request.user, request=review, reason=form.cleaned_data.get("reason", ""))
    except DomainError as exc:
        show_domain_error(request, exc)
        return _review_page(request, review, status=exc.status)
    messages.success(request, f"Review #{review.pk} withdrawn: version {review.version.number} is a draft again.")
    return redirect(review.version)


# --- asking for a review ----------------------------------------------------------------------


@login_required
def review_request(request, pk: int):
    user = request.user
    version = get_object_or_404(registry_selectors.version_list(user=user), pk=pk)
    model = version.model
    if request.method != "POST" and not can(user, Capability.REVIEW_REQUEST, model.team_id):
        raise PermissionDenied(f"You need the author or admin role in {model.team} to request a review.")
    try:
        policy = selectors.policy_for_model(model)
    except DomainError as exc:
        policy, policy_view, revision, problem = None, None, None, exc.detail
    else:
        revision = selectors.policy_revision_current(policy)
        policy_view = presenters.policy_view(revision.rules)
        problem = ""
    environments = [(e, presenters.environment_label(e)) for e in (policy_view.environments if policy_view else [])]
    form = ReviewRequestForm(request.POST or None, environments=environments)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                made = services.request_review(
                    actor=user,
                    version=version,
                    environments=form.cleaned_data["environments"],
                    comment=form.cleaned_data["comment"],
                )
            except DomainError as exc:
                show_domain_error(request, exc, form)
                status = exc.status
            else:
                messages.success(
                    request, f"Review #{made.pk} requested for {', '.join(made.environments)}: reviewers are told."
                )
                return redirect(made)
    open_review = selectors.request_list(user=user).filter(version=version, status=RequestStatus.OPEN).first()
    context = {
        "version": version,
        "model": model,
        "form": form,
        "policy": policy,
        "revision": revision,
        "policy_view": policy_view,
        "problem": problem,
        "editable": version.is_editable,
        "open_review": open_review,
    }
    return render(request, "approvals/review_request.html", context, status=status)


# --- checklist --------------------------------------------------------------------------------


def _safe_next(request, target: str, default: str) -> str:
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, require_https=request.is_secure()):
        return target
    return default


@login_required
@require_POST
def checklist_tick(request, pk: int):
    version = get_object_or_404(registry_selectors.version_list(user=request.user), pk=pk)
    form = ChecklistTickForm(request.POST)
    back = reverse("version-detail", args=[version.pk]) + "#gate"
    if not form.is_valid():
        messages.error(request, "That checklist action was not understood; nothing changed.")
        return redirect(back)
    data = form.cleaned_data
    try:
        services.checklist_tick(
            actor=request.user, version=version, item=data["item"], ticked=data["ticked"], note=data["note"]
        )
    except DomainError as exc:
        show_domain_error(request, exc)
        return page_again(request, "version-detail", pk=version.pk, status=exc.status)  # the panel's page
    messages.success(request, f"{'Ticked' if data['ticked'] else 'Unticked'} “{data['item']}”.")
    return redirect(_safe_next(request, data["next"], back))


# --- policies ---------------------------------------------------------------------------------


@login_required
def policy_list(request):
    user = request.user
    policies = list(selectors.policy_list(user=user))
    site_wide = [p for p in policies if p.team_id is None]
    tiers = list(RiskTier.values)
    site_wide.sort(key=lambda p: (tiers.index(p.risk_tier) if p.risk_tier in tiers else len(tiers), p.name.lower()))
    context = {
        "site_wide": site_wide,
        "team_policies": [p for p in policies if p.team_id is not None],
        "may_create": user.is_superuser or can_anywhere(user, Capability.POLICY_MANAGE),
    }
    return render(request, "approvals/policy_list.html", context)


def _get_policy(request, pk: int):
    return get_object_or_404(selectors.policy_list(user=request.user), pk=pk)


@login_required
def policy_detail(request, pk: int, status: int = 200):
    policy = _get_policy(request, pk)
    revisions = presenters.policy_revisions(policy, limit=REVISIONS_SHOWN)
    current = next((r for r in revisions if r.number == policy.revision), None) or selectors.policy_revision_current(
        policy
    )
    proposal = selectors.policy_proposal(policy)
    context = {
        "policy": policy,
        "current": current,
        "view": presenters.policy_view(current.rules),
        "revisions": revisions,
        "may_edit": presenters.may_edit_policy(request.user, policy),
        "open_requests": presenters.open_request_count(policy),
        "proposal": proposal,
        "proposal_right": presenters.proposal_right(request.user, proposal) if proposal else None,
        "proposal_form": ProposalDecisionForm(),
        "assignments": presenters.assignment_proposals(
            request.user, selectors.assignment_proposals_to(user=request.user, policy=policy)
        ),
    }
    return render(request, "approvals/policy_detail.html", context, status=status)


def _proposal_decision(request, pk: int, number: int, *, approve: bool):
    policy = _get_policy(request, pk)
    revision = get_object_or_404(policy.revisions.select_related("policy", "policy__team"), number=number)
    form = ProposalDecisionForm(request.POST)
    form.is_valid()
    try:
        if approve:
            services.policy_revision_approve(
                actor=request.user, revision=revision, comment=form.cleaned_data["comment"]
            )
        else:
            services.policy_revision_reject(actor=request.user, revision=revision, comment=form.cleaned_data["comment"])
    except DomainError as exc:
        show_domain_error(request, exc)
        return policy_detail(request, pk, status=exc.status)
    if approve:
        messages.success(request, f"Approved: revision {number} of “{policy.name}” is now in force.")
    else:
        messages.success(request, f"Rejected: “{policy.name}” keeps revision {policy.revision}.")
    return redirect(policy)


@login_required
@require_POST
def policy_revision_approve(request, pk: int, number: int):
    return _proposal_decision(request, pk, number, approve=True)


@login_required
@require_POST
def policy_revision_reject(request, pk: int, number: int):
    return _proposal_decision(request, pk, number, approve=False)


def _admin_teams(user):
    """The teams whose policies the user may write (a queryset, for the form's choices)."""
    return team_list(user=user).filter(
        pk__in=[t.pk for t in team_list(user=user) if can(user, Capability.POLICY_MANAGE, t.pk)]
    )


@login_required
def policy_create(request):
    user = request.user
    teams = _admin_teams(user)
    admin_somewhere = teams.exists()
    if request.method != "POST" and not (user.is_superuser or admin_somewhere):
        raise PermissionDenied("Only site administrators and team admins write policies.")
    # Someone who may write no policy at all still has their POST judged (and audited) by the service.
    site_wide = user.is_superuser or not admin_somewhere
    form = PolicyForm(request.POST or None, teams=teams, site_wide=site_wide)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            data = form.cleaned_data
            try:
                policy = services.policy_create(
                    actor=user,
                    name=data["name"],
                    rules=data["rules"],
                    team=data.get("team"),
                    risk_tier=data.get("risk_tier") or "",
                    description=data["description"],
                    comment=data["comment"],
                )
            except DomainError as exc:
                show_domain_error(request, rules_error_on_field(exc), form)
                status = exc.status
            else:
                messages.success(request, f"Created policy “{policy.name}” (revision 1).")
                return redirect(policy)
    context = {"form": form, "policy": None, "editing": False}
    return render(request, "approvals/policy_form.html", context, status=status)


@login_required
def policy_edit(request, pk: int):
    user = request.user
    policy = _get_policy(request, pk)
    if request.method != "POST" and not presenters.may_edit_policy(user, policy):
        raise PermissionDenied(
            "Only site administrators edit site-wide policies."
            if policy.team_id is None
            else f"Only admins of {policy.team} edit its policies."
        )
    current = selectors.policy_revision_current(policy)
    initial = {
        "name": policy.name,
        "description": policy.description,
        "rules": presenters.rules_json(current.rules),
    }
    form = PolicyForm(request.POST or None, initial=initial, editing=True)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            data = form.cleaned_data
            before = policy.revision
            try:
                policy = services.policy_update(
                    actor=user,
                    policy=policy,
                    name=data["name"],
                    description=data["description"],
                    rules=data["rules"],
                    comment=data["comment"],
                )
            except DomainError as exc:
                show_domain_error(request, rules_error_on_field(exc), form)
                status = exc.status
            else:
                proposal = selectors.policy_proposal(policy)
                if policy.revision != before:
                    messages.success(request, f"Saved revision {policy.revision} of “{policy.name}”.")
                elif proposal is not None and proposal.created_by_id == user.pk and proposal.number > before:
                    messages.warning(
                        request,
                        f"These rules loosen “{policy.name}”: revision {proposal.number} is proposed and takes effect "
                        f"once a second admin approves it; revision {policy.revision} stays in force until then.",
                    )
                else:
                    messages.info(request, f"Saved “{policy.name}”; the rules did not change, so no new revision.")
                return redirect(policy)
    context = {
        "form": form,
        "policy": policy,
        "current": current,
        "editing": True,
        "open_requests": presenters.open_request_count(policy),
    }
    return render(request, "approvals/policy_form.html", context, status=status)


@login_required
@require_POST
def model_policy(request, pk: int):
    """Give a model its own policy, or send it back to its risk tier's default (team admins). A
    looser choice is proposed and waits for a second admin; the panel on the model page shows it."""
    model = get_object_or_404(registry_selectors.model_list(user=request.user), pk=pk)
    choice = request.POST.get("policy", "")
    policy = None
    if choice:
        visible = selectors.policy_list(user=request.user)
        policy = visible.filter(pk=int(choice)).first() if choice.isascii() and choice.isdigit() else None
        if policy is None:
            messages.error(request, "Choose one of the listed policies.")
            return redirect(model)
    try:
        change = services.policy_assign(actor=request.user, policy=policy, model=model)
    except DomainError as exc:
        show_domain_error(request, exc)
        if exc.status == 403:
            raise PermissionDenied(exc.detail) from None
        return redirect(model)
    try:
        chosen = f"“{selectors.policy_for_model(model).name}”"
    except DomainError:
        chosen = "no policy (its risk tier has none)"
    if change is not None and change.is_proposed:
        messages.warning(
            request,
            f"Giving {model.name} {change.describe()} loosens the rules its versions are reviewed under, so it is "
            f"proposed and takes effect once a second admin approves it; {chosen} governs until then.",
        )
    else:
        messages.success(request, f"{model.name} is now governed by {chosen}.")
    return redirect(model)


def _assignment_decision(request, pk: int, assignment: int, *, approve: bool):
    model = get_object_or_404(registry_selectors.model_list(user=request.user), pk=pk)
    change = get_object_or_404(selectors.assignment_list(user=request.user).filter(model=model), pk=assignment)
    form = ProposalDecisionForm(request.POST)
    form.is_valid()
    try:
        if approve:
            services.policy_assignment_approve(
                actor=request.user, assignment=change, comment=form.cleaned_data["comment"]
            )
        else:
            services.policy_assignment_reject(
                actor=request.user, assignment=change, comment=form.cleaned_data["comment"]
            )
    except DomainError as exc:
        show_domain_error(request, exc)
        return page_again(request, "model-detail", pk=model.pk, status=exc.status)  # the panel's page
    if approve:
        messages.success(request, f"Approved: {model.name} is now governed by {change.describe()}.")
    else:
        messages.success(request, f"Rejected: {model.name} keeps its policy.")
    return redirect(_safe_next(request, request.POST.get("next", ""), model.get_absolute_url()))


@login_required
@require_POST
def model_policy_approve(request, pk: int, assignment: int):
    return _assignment_decision(request, pk, assignment, approve=True)


@login_required
@require_POST
def model_policy_reject(request, pk: int, assignment: int):
    return _assignment_decision(request, pk, assignment, approve=False)
