"""Sign-in, API tokens and team pages in the browser."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.db.models import Count, OuterRef, Subquery
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from governance.accounts import selectors, services
from governance.accounts.capabilities import Capability
from governance.accounts.forms import MembershipAddForm, TokenCreateForm
from governance.accounts.models import Role, Scope
from governance.accounts.permissions import can
from governance.core.errors import DomainError
from governance.core.ui import show_domain_error
from governance.registry.models import RegisteredModel


class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    redirect_authenticated_user = True


# --- tokens ---------------------------------------------------------------------------------


@never_cache
@login_required
def tokens(request):
    user = request.user
    teams = selectors.team_list(user=user)
    form = TokenCreateForm(request.POST or None, teams=teams)
    created = secret = None
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            data = form.cleaned_data
            try:
                created, secret = services.token_create(
                    actor=user, name=data["name"], scopes=data["scopes"], team=data["team"],
                    expires_in_days=data["expires_in_days"],
                )  # fmt: skip
            except DomainError as exc:
                show_domain_error(request, exc, form)
                status = exc.status
            else:
                status = 201
                form = TokenCreateForm(teams=teams)
    context = {
        "form": form,
        "tokens": list(selectors.token_list(user=user)),
        "created": created,
        "secret": secret,
        "scope_labels": dict(Scope.choices),
    }
    return render(request, "accounts/tokens.html", context, status=status)


@login_required
@require_POST
def token_revoke(request, pk: int):
    token = get_object_or_404(selectors.token_list(user=request.user), pk=pk)
    try:
        revoked = services.token_revoke(actor=request.user, token=token)
    except DomainError as exc:
        show_domain_error(request, exc)
    else:
        children = len(revoked.revoked_descendants)
        also = f" With it, {children} token{'s' if children != 1 else ''} it created." if children else ""
        messages.success(
            request, f"Revoked the token “{token.name}” ({token.prefix}…). It no longer authenticates.{also}"
        )
    return redirect("tokens")


# --- teams ----------------------------------------------------------------------------------


@login_required
def team_list(request):
    models_per_team = (
        RegisteredModel.objects.filter(team=OuterRef("pk"))
        .order_by()
        .values("team")
        .annotate(n=Count("id"))
        .values("n")
    )
    teams = selectors.team_list(user=request.user).annotate(
        member_count=Count("memberships__user", distinct=True), model_count=Subquery(models_per_team)
    )
    return render(request, "accounts/team_list.html", {"teams": teams})


def _team_page(request, team, *, form=None, status=200):
    memberships = selectors.membership_list(user=request.user).filter(team=team)
    members: dict[int, dict] = {}
    for membership in memberships:
        entry = members.setdefault(membership.user_id, {"user": membership.user, "memberships": []})
        entry["memberships"].append(membership)
    context = {
        "team": team,
        "members": sorted(members.values(), key=lambda m: m["user"].get_username().lower()),
        "may_manage": can(request.user, Capability.TEAM_MANAGE, team.pk),
        "form": form or MembershipAddForm(),
        "roles": Role.choices,
        "model_count": RegisteredModel.objects.filter(team=team).count(),
    }
    return render(request, "accounts/team_detail.html", context, status=status)


def _get_team(request, slug: str):
    return get_object_or_404(selectors.team_list(user=request.user), slug=slug)


@login_required
def team_detail(request, slug: str):
    return _team_page(request, _get_team(request, slug))


@login_required
@require_POST
def membership_add(request, slug: str):
    team = _get_team(request, slug)
    form = MembershipAddForm(request.POST)
    if not form.is_valid():
        return _team_page(request, team, form=form, status=400)
    try:
        services.membership_add(actor=request.user, team=team, user=form.user, role=form.cleaned_data["role"])
    except DomainError as exc:
        show_domain_error(request, exc, form)
        return _team_page(request, team, form=form, status=exc.status)
    messages.success(
        request, f"{form.user.get_username()} is now {Role(form.cleaned_data['role']).label.lower()} in {team}."
    )
    return redirect(team)


@login_required
@require_POST
def membership_remove(request, slug: str, pk: int):
    team = _get_team(request, slug)
    membership = get_object_or_404(selectors.membership_list(user=request.user).filter(team=team), pk=pk)
    try:
        services.membership_remove(actor=request.user, membership=membership)
    except DomainError as exc:
        show_domain_error(request, exc)
        return _team_page(request, team, status=exc.status)
    messages.success(request, f"Removed the {membership.role} role of {membership.user.get_username()} in {team}.")
    return redirect(team)
