"""Celery tasks of the notifications app (webhook deliveries)."""
