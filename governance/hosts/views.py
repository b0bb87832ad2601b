"""Browser pages of compute hosts: the list (status, labels, GPUs, queue) and each host's page. Hosts are
site-wide, so every signed-in user sees them all; registering one is the host agent's business (the
empty list says how)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, render

from governance.accounts.capabilities import Capability
from governance.accounts.permissions import can_anywhere
from governance.hosts import presenters, selectors
from governance.hosts.filters import HostFilter
from governance.hosts.models import HostStatus

PAGE_SIZE = 50


@login_required
def host_list(request):
    hosts = selectors.host_list(user=request.user)
    filterset = HostFilter(request.GET or None, queryset=hosts, request=request)
    invalid = filterset.is_bound and not filterset.is_valid()
    shown = hosts if invalid else filterset.qs
    page = Paginator(shown, PAGE_SIZE).get_page(request.GET.get("page"))
    page.object_list = [presenters.row(host) for host in page.object_list]
    counts = selectors.status_counts(hosts)
    context = {
        "page": page,
        "counts": counts,
        "statuses": HostStatus.choices,
        "current": {k: request.GET.get(k, "") for k in ("status", "label")},
        "filters_active": any(request.GET.get(k) for k in ("status", "label")),
        "filter_errors": filterset.form.errors if invalid else {},
        "any_host": sum(counts.values()) > 0,
        "may_register": can_anywhere(request.user, Capability.HOST_REGISTER),
        "api_url": request.build_absolute_uri("/").rstrip("/"),
        "thresholds": selectors.thresholds(),
    }
    return render(request, "hosts/host_list.html", context, status=400 if invalid else 200)


@login_required
def host_detail(request, name: str):
    host = get_object_or_404(selectors.host_list(user=request.user), name=name)
    context = {
        "host": host,
        "row": presenters.row(host),
        "gpus": presenters.gpu_rows(host),
        "inventory": presenters.inventory_facts(host.inventory),
        "thresholds": selectors.thresholds(),
    }
    return render(request, "hosts/host_detail.html", context)
