"""The lease sweep (Celery beat, queue "default"): long-running task records whose worker died are
re-queued or failed (``governance.core.leases``)."""

from governance.celery import AuditedTask, app


@app.task(base=AuditedTask, name="workers.leases.recover_expired")
def recover_expired() -> dict:
    from governance.core import leases

    return leases.recover_expired()
