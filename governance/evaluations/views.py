"""Browser views of the evaluations app: request a run, follow it live, read and compare results."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from governance.core.errors import DomainError
from governance.core.ui import show_domain_error
from governance.evaluations import presenters, selectors, services
from governance.evaluations.forms import RunRequestForm
from governance.registry import selectors as registry_selectors


@login_required
def run_request(request, pk: int):
    version = get_object_or_404(registry_selectors.version_list(user=request.user), pk=pk)
    form = RunRequestForm(request.POST or None, request.FILES or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            made = services.run_request(
                actor=request.user, version=version, kind=data["kind"], data=data["data"],
                target_column=data["target_column"], sensitive_features=data["sensitive_features"],
                parameters=data["parameters"] or {}, retain_data=data["retain_data"],
            )  # fmt: skip
            return redirect(made.run)
        except DomainError as exc:
            show_domain_error(request, exc, form)
            status = exc.status
    elif request.method == "POST":
        status = 400
    return render(request, "evaluations/run_request.html", {"form": form, "version": version}, status=status)


def _visible_run(request, pk: int):
    return get_object_or_404(selectors.run_list(user=request.user), pk=pk)


@login_required
def run_detail(request, pk: int):
    run = _visible_run(request, pk)
    return render(request, "evaluations/run_detail.html", {"run": run, "view": presenters.present(run)})


@login_required
def run_progress(request, pk: int):
    """The live part of the run page (htmx polls it while the run is queued or running)."""
    run = _visible_run(request, pk)
    response = render(request, "evaluations/_progress.html", {"run": run, "oob": True})  # oob: the header badge too
    if not run.is_active:
        response["HX-Refresh"] = "true"  # finished: reload the whole page with its results
    return response


@login_required
@require_POST
def run_cancel(request, pk: int):
    run = _visible_run(request, pk)
    try:
        services.run_cancel(actor=request.user, run=run)
    except DomainError as exc:
        show_domain_error(request, exc)
        if exc.status == 403:
            return render(request, "evaluations/run_detail.html",
                          {"run": run, "view": presenters.present(run)}, status=403)  # fmt: skip
    return redirect(run)


@login_required
def run_compare(request):
    """The same evaluation on two versions, side by side: ?a=<run>&b=<run>."""
    runs = selectors.run_list(user=request.user)
    try:
        a = runs.get(pk=int(request.GET.get("a", "")))
        b = runs.get(pk=int(request.GET.get("b", "")))
    except (ValueError, runs.model.DoesNotExist):
        raise Http404("Pick two runs you can see.") from None
    return render(request, "evaluations/run_compare.html", {"a": a, "b": b, "view": presenters.compare(a, b)})
