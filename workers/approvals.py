"""Celery tasks of the approvals app."""

from django.conf import settings

from governance.celery import AuditedTask, app


@app.task(base=AuditedTask, name="workers.approvals.announce_expiring_approvals")
def announce_expiring_approvals() -> int:
    """Tell people once about approvals that stop counting within APPROVAL_EXPIRY_NOTICE_DAYS (daily)."""
    from governance.approvals.services import approvals_expiring_notify

    return approvals_expiring_notify(within_days=settings.APPROVAL_EXPIRY_NOTICE_DAYS)
