"""Audit chain housekeeping: sign and export the chain head on a schedule (Celery beat)."""

from pathlib import Path

from django.conf import settings

from governance.celery import AuditedTask, app


@app.task(base=AuditedTask, name="workers.audit.checkpoint_chain")
def checkpoint_chain() -> dict:
    from governance.audit import services

    cp = services.checkpoint_create(export_dir=Path(settings.AUDIT_CHECKPOINT_DIR))
    return {"seq": cp.seq, "hash": cp.hash}
