"""The one place the browser UI turns a domain error into a form error or a message."""

from __future__ import annotations

from django import forms
from django.contrib import messages

from governance.core.errors import DomainError, record_refused_write


def show_domain_error(request, exc: DomainError, form: forms.Form | None = None) -> None:
    """Show a service's refusal where the person acted: on the form, or as a message.

    A refusal is evidence, as it is for the API: a 403, and any refusal of a governed write, go to
    the audit log (``record_refused_write``).
    """
    record_refused_write(request, exc)
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
