"""Artifact tasks: bind the inspection engine to the database."""

from governance.celery import AuditedTask, app
from workers import inspect


@app.task(base=AuditedTask, name="workers.artifacts.inspect_artifact", time_limit=600)
def inspect_artifact(version_id: int) -> dict | None:
    from governance.registry import artifacts, services
    from governance.registry.models import ModelVersion

    version = ModelVersion.objects.filter(pk=version_id).first()
    if version is None:
        return None
    if version.artifact_metadata.get("sha256") == version.artifact_sha256:  # already done: a redelivery
        return version.artifact_metadata
    with artifacts.storage().open(version.artifact_path, "rb") as fh:
        report = inspect.inspect_stream(
            fh, name=version.artifact_name, expected_sha256=version.artifact_sha256,
            declared_format=version.artifact_format,
        )  # fmt: skip
    services.version_record_inspection(version_id=version_id, metadata=report)
    # the bytes were just re-hashed: that is an integrity check too (a mismatch fails the gate)
    services.artifact_integrity_record(
        sha256=version.artifact_sha256, problem=None if report["sha256_verified"] else artifacts.DIGEST_MISMATCH
    )
    # once the artifact is known good, the evaluations its policy runs on every new version
    from governance.approvals.services import evaluations_auto_request

    evaluations_auto_request(version_id=version_id)
    return report
