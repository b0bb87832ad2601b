"""Browser pages of the compliance app: the regulatory report of a model, the record of what was
decided and live, and the regulatory mappings (edited by site administrators)."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render

from governance.compliance import evidence, selectors, services
from governance.compliance.forms import MappingItemForm, MappingRevisionForm, RecordForm
from governance.core.errors import DomainError
from governance.core.ui import show_domain_error
from governance.registry import selectors as registry_selectors

PAGE_SIZE = 25
VERSION_CHOICES = 50  # the newest versions the report page offers to choose from


def _frameworks(user):
    # an aggregate drops Meta.ordering: the order is said again
    return (
        selectors.framework_list(user=user)
        .annotate(item_count=Count("items", filter=Q(items__active=True)))
        .order_by("position", "id")
    )


@login_required
def compliance_home(request):
    user = request.user
    q = request.GET.get("q", "").strip()[:120]
    models = registry_selectors.model_list(user=user).order_by("name", "id")
    if q:
        models = models.filter(name__icontains=q)
    page = Paginator(models, PAGE_SIZE).get_page(request.GET.get("page"))
    page.object_list = list(page.object_list)
    context = {
        "frameworks": list(_frameworks(user)),
        "page": page,
        "q": q,
        "retention": {
            "results": settings.EVALUATION_RESULT_RETENTION_DAYS,
            "data": settings.EVALUATION_DATA_RETENTION_DAYS,
        },
    }
    return render(request, "compliance/home.html", context)


@login_required
def model_report(request, pk: int):
    user = request.user
    model = get_object_or_404(registry_selectors.model_list(user=user), pk=pk)
    versions = list(
        registry_selectors.version_list(user=user, model=model)
        .order_by("-number")
        .values("id", "number", "stage")[:VERSION_CHOICES]
    )
    version = None
    chosen = request.GET.get("version", "")
    if chosen:
        if not (chosen.isascii() and chosen.isdigit()):
            raise Http404("No such version of this model.")
        version = get_object_or_404(registry_selectors.version_list(user=user, model=model), pk=int(chosen))
    report = selectors.model_report(user=user, model=model, version=version)
    return render(request, "compliance/model_report.html", {"report": report, "versions": versions})


def _record_inputs(request) -> tuple[RecordForm, dt.date, int] | tuple[RecordForm, None, None]:
    form = RecordForm(request.GET or None, initial={"until": dt.datetime.now(dt.UTC).date(), "days": 30})
    if form.is_bound and not form.is_valid():
        return form, None, None
    data = form.cleaned_data if form.is_bound else {}
    return form, data.get("until") or dt.datetime.now(dt.UTC).date(), data.get("days") or 30


@login_required
def decision_record(request):
    form, until, days = _record_inputs(request)
    if until is None:
        return render(request, "compliance/decision_record.html", {"form": form, "record": None}, status=400)
    record = selectors.decision_record(user=request.user, until=until, days=days)
    return render(
        request, "compliance/decision_record.html",
        {"form": form, "record": record, "pdf_query": f"until={record['until']}&days={record['days']}"},
    )  # fmt: skip


@login_required
def decision_record_pdf(request):
    form, until, days = _record_inputs(request)
    if until is None:
        return render(request, "compliance/decision_record.html", {"form": form, "record": None}, status=400)
    record = selectors.decision_record(user=request.user, until=until, days=days)
    from governance.compliance import pdf  # fpdf and its fonts load on the first PDF, not in every process

    return pdf.response(record, user=request.user)


@login_required
def framework_detail(request, pk: int):
    framework = get_object_or_404(_frameworks(request.user), pk=pk)
    items = framework.items.order_by("position", "id")
    context = {
        "framework": framework,
        "items": [(item, [evidence.LABELS.get(code, code) for code in item.evidence]) for item in items],
        "may_edit": selectors.may_edit_mappings(request.user),
    }
    return render(request, "compliance/framework_detail.html", context)


@login_required
def item_create(request, pk: int):
    framework = get_object_or_404(selectors.framework_list(user=request.user), pk=pk)
    if request.method != "POST" and not selectors.may_edit_mappings(request.user):
        raise PermissionDenied("Only site administrators edit the regulatory mappings.")
    form = MappingItemForm(request.POST or None)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                item = services.mapping_item_create(actor=request.user, framework=framework, **form.cleaned_data)
                messages.success(request, f"Added {item.reference} to {framework.name}.")
                return redirect(item)
            except DomainError as exc:
                show_domain_error(request, exc, form)
                status = exc.status
    return render(request, "compliance/item_form.html", {"framework": framework, "form": form}, status=status)


@login_required
def item_detail(request, pk: int):
    item = get_object_or_404(selectors.item_list(user=request.user), pk=pk)
    may_edit = selectors.may_edit_mappings(request.user)
    initial = {"title": item.title, "summary": item.summary, "evidence": item.evidence, "active": item.active,
               "based_on": item.revision}  # fmt: skip
    form = MappingRevisionForm(request.POST or None, initial=initial)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                revision = services.mapping_item_revise(actor=request.user, item=item, **form.cleaned_data)
                messages.success(request, f"Saved revision {revision.number} of {item.reference}.")
                return redirect(item)
            except DomainError as exc:
                show_domain_error(request, exc, form)
                status = exc.status
        may_edit = True  # show the refused form with its errors
    revisions = [
        (revision, [evidence.LABELS.get(code, code) for code in revision.evidence])
        for revision in selectors.revision_list(item=item)
    ]
    context = {"item": item, "revisions": revisions, "form": form if may_edit else None}
    return render(request, "compliance/item_detail.html", context, status=status)
