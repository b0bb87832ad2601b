"""Sign-in lockout (django-axes): its page and its audit event.

django-axes counts failed sign-ins per username *and* client address (``AXES_LOCKOUT_PARAMETERS``)
and, at ``AXES_FAILURE_LIMIT``, refuses that pair for ``AXES_COOLOFF_TIME``, even with the right
password; another user, or the same user from another address, is unaffected. Every refused
attempt stays a ``user.login_failed`` event (Django sends ``user_login_failed`` for it); the moment
of the lockout is one ``user.locked_out`` event. An admin unlocks early with
``manage.py axes_reset_username <username>`` (or ``axes_reset_ip_username``), or by deleting the
row under "Access attempts" in the Django admin.
"""

from __future__ import annotations

from axes.helpers import get_client_username, get_cool_off, get_failure_limit
from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.db import transaction
from django.dispatch import receiver
from django.shortcuts import render

from governance.audit import services as audit
from governance.audit.actions import AuditAction
from governance.core import context


def _minutes(request) -> int:
    cool_off = get_cool_off(request)
    return max(1, round(cool_off.total_seconds() / 60)) if cool_off else 0


def lockout_message(request) -> str:
    locked = "Too many failed sign-ins for this username from your address: signing in is locked"
    minutes = _minutes(request)
    if not minutes:
        return f"{locked} until an administrator unlocks it."
    return (
        f"{locked} for {minutes} minute{'s' if minutes != 1 else ''}, even with the right password. "
        "Try again later, or ask an administrator to unlock it."
    )


def locked_out_response(request, original_response=None, credentials=None):
    """The sign-in page again, saying why and for how long (``AXES_LOCKOUT_CALLABLE``)."""
    username = get_client_username(request, credentials) or ""
    form = AuthenticationForm(request, initial={"username": username})
    response = render(
        request,
        "accounts/login.html",
        {"form": form, "locked_out": lockout_message(request), "next": request.POST.get("next", "")},
        status=settings.AXES_HTTP_RESPONSE_CODE,
    )
    if minutes := _minutes(request):
        response["Retry-After"] = str(minutes * 60)
    return response


@receiver(user_locked_out, dispatch_uid="accounts.audit_lockout")
def _audit_lockout(sender, request, username, ip_address, **kwargs):
    # axes also sends this for each attempt refused during a lockout; only the attempt that
    # reached the limit has its failure count set (the refused ones are user.login_failed events)
    failures = getattr(request, "axes_failures_since_start", None)
    if failures is None or context.current() is None:
        return
    with transaction.atomic():
        audit.record(
            action=AuditAction.USER_LOCKED_OUT,
            object_type="auth.user",
            object_id="",
            changes={
                "username": str(username or "")[:150],
                "ip_address": ip_address or "",
                "failures": failures,
                "failure_limit": get_failure_limit(request, None),
                "cool_off_minutes": _minutes(request),
            },
        )
