"""The one place the browser UI turns a domain error into a form error or a message."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpResponse
from django.urls import resolve, reverse

from governance.core.errors import DomainError, write_refused


def show_domain_error(request, exc: DomainError, form: forms.Form | None = None) -> None:
    """Show a service's refusal where the person acted: on the form, or as a message.

    A refusal is evidence, as it is for the API: a 403, and any refusal of a governed write, go to
    the audit log (``governance.audit.refusals.record_refused_write``).
    """
    write_refused.send(sender=type(exc), request=request, exc=exc, data=None)
    if form is None:
        messages.error(request, exc.detail)
        return
    placed = False
    for field, problem in (exc.fields or {}).items():
        if field in form.fields:
            form.add_error(field, problem if isinstance(problem, list | str) else str(problem))
            placed = True
    if not placed:
        form.add_error(None, exc.detail)


def page_again(request, view_name: str, *, status: int, **kwargs) -> HttpResponse:
    """The page at the URL named ``view_name`` rendered for this request again, answered ``status``:
    a refused action whose form is a panel on another app's page shows the refusal on that page.

    Reached by its URL name, as a link reaches it, so that no app's views import another app's.
    """
    match = resolve(reverse(view_name, kwargs=kwargs))
    response = match.func(request, *match.args, **match.kwargs)
    response.status_code = status
    return response
