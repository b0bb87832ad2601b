"""The one place the browser UI turns a domain error into a form error or a message."""

from __future__ import annotations

from django import forms
from django.contrib import messages

from governance.core.errors import DomainError, record_denied_write


def show_domain_error(request, exc: DomainError, form: forms.Form | None = None) -> None:
    """Show a service's refusal where the person acted: on the form, or as a message.

    A refusal for lack of a role is evidence, as it is for the API: it goes to the audit log.
    """
    if exc.status == 403:
        record_denied_write(request, exc.code, exc.detail)
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
