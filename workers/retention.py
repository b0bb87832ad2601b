"""Retention (Celery beat, daily): delete evaluation payloads past their retention period.

The rules are the service's (``governance.compliance.services.retention_purge``): never a result an
open or approved review froze, never the audit log.
"""

from governance.celery import AuditedTask, app


@app.task(base=AuditedTask, name="workers.retention.purge_expired", time_limit=3600)
def purge_expired() -> dict:
    from governance.compliance import services

    return services.retention_purge().as_dict()
