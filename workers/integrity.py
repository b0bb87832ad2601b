"""The artifact integrity scrub (Celery beat): re-hash stored artifacts, oldest-checked first."""

from governance.celery import AuditedTask, app


@app.task(base=AuditedTask, name="workers.integrity.scrub_artifacts", time_limit=3600)
def scrub_artifacts(max_artifacts: int | None = None, max_bytes: int | None = None) -> dict:
    """One throttled pass (INTEGRITY_SCRUB_MAX_ARTIFACTS / INTEGRITY_SCRUB_MAX_BYTES); a mismatch fails
    the versions' gate, is audited and is announced to their team."""
    from governance.registry import services

    return services.artifacts_scrub(max_artifacts=max_artifacts, max_bytes=max_bytes).as_dict()
