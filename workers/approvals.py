"""Celery tasks of the approvals app (approval expiry reminders)."""
