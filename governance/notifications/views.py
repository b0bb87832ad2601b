"""Browser pages: your notifications, and a team's webhooks (for its admins)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from governance.audit.refusals import record_denied_write
from governance.core.errors import DomainError, NotFound, NotPermitted
from governance.core.ui import show_domain_error
from governance.notifications import selectors, services
from governance.notifications.forms import WebhookForm
from governance.notifications.models import EventKind

PAGE_SIZE = 25


def _page(qs, number):
    page = Paginator(qs, PAGE_SIZE).get_page(number)
    page.object_list = list(page.object_list)
    return page


# --- notifications --------------------------------------------------------------------------


@login_required
def notification_list(request):
    page = _page(selectors.notification_inbox(user=request.user).select_related("team"), request.GET.get("page"))
    return render(request, "notifications/notification_list.html", {"page": page})


@login_required
@require_POST
def notification_read(request, pk: int):
    notification = get_object_or_404(selectors.notification_list(user=request.user), pk=pk)
    services.notification_mark_read(user=request.user, notification=notification)
    target = notification.url
    if (
        request.POST.get("open")
        and target
        and url_has_allowed_host_and_scheme(
            target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        )
    ):
        return redirect(target)
    return redirect(_back_to_list(request))


@login_required
@require_POST
def notification_read_all(request):
    marked = services.notification_mark_all_read(user=request.user)
    if marked:
        messages.success(request, f"Marked {marked} notification{'s' if marked != 1 else ''} read.")
    return redirect("notifications")


def _back_to_list(request) -> str:
    page = request.POST.get("page", "")
    return reverse("notifications") + (f"?page={page}" if page.isdigit() else "")


# --- webhooks -------------------------------------------------------------------------------


def _refused(request, exc: NotPermitted) -> PermissionDenied:
    record_denied_write(request, exc.code, exc.detail)  # a refused write is evidence, as in the API
    return PermissionDenied(exc.detail)


def _team(request, pk: int):
    try:
        return selectors.webhook_team(user=request.user, pk=pk)
    except NotFound:
        raise Http404 from None
    except NotPermitted as exc:
        raise _refused(request, exc) from None


def _webhook(request, team, webhook_pk: int):
    try:
        webhook = selectors.webhook_get(user=request.user, pk=webhook_pk)
    except NotFound:
        raise Http404 from None
    except NotPermitted as exc:
        raise _refused(request, exc) from None
    if webhook.team_id != team.pk:
        raise Http404
    return webhook


@never_cache
@login_required
def team_webhooks(request, pk: int):
    user = request.user
    team = _team(request, pk)
    form = WebhookForm(request.POST or None)
    created = secret = None
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            data = form.cleaned_data
            try:
                created, secret = services.webhook_create(
                    actor=user, team=team, url=data["url"], events=data["events"], secret=data["secret"] or None
                )
            except DomainError as exc:
                show_domain_error(request, exc, form)
                status = exc.status
            else:
                status = 201
                form = WebhookForm()
    context = {
        "team": team,
        "form": form,
        "created": created,
        "secret": secret,
        "webhooks": list(selectors.webhook_list(user=user).filter(team=team)),
        "deliveries": _page(selectors.delivery_list(user=user, team=team), request.GET.get("page")),
        "event_labels": dict(EventKind.choices),
    }
    return render(request, "notifications/team_webhooks.html", context, status=status)


@login_required
@require_POST
def webhook_test(request, pk: int, webhook_pk: int):
    team = _team(request, pk)
    webhook = _webhook(request, team, webhook_pk)
    try:
        services.webhook_test(actor=request.user, webhook=webhook)
    except DomainError as exc:
        show_domain_error(request, exc)
    else:
        messages.success(request, f"Queued a test ping to {webhook.url}. Its result appears in the delivery log.")
    return redirect("team-webhooks", pk=team.pk)


@login_required
@require_POST
def webhook_delete(request, pk: int, webhook_pk: int):
    team = _team(request, pk)
    webhook = _webhook(request, team, webhook_pk)
    try:
        services.webhook_delete(actor=request.user, webhook=webhook)
    except DomainError as exc:
        show_domain_error(request, exc)
    else:
        messages.success(request, f"Deleted the webhook to {webhook.url} and its delivery log.")
    return redirect("team-webhooks", pk=team.pk)
