"""Celery tasks of the evaluations app (queue "evaluations")."""
