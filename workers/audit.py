"""Audit chain housekeeping: sign and export the chain head on a schedule (Celery beat)."""

from governance.celery import AuditedTask, app


@app.task(base=AuditedTask, name="workers.audit.checkpoint_chain")
def checkpoint_chain() -> dict:
    from governance.audit import services

    cp = services.checkpoint_create()  # the configured checkpoint storage: AUDIT_CHECKPOINT_DIR or S3
    return {"seq": cp.seq, "hash": cp.hash}
