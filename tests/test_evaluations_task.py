"""The evaluation task in-process: failures end as a clear error on the run and touch nothing else."""

from __future__ import annotations

import io

import joblib
import pytest
from django.core.files.storage import storages
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

from governance.audit.models import AuditEvent
from governance.core.context import audit_context
from governance.evaluations import services
from governance.evaluations.models import EvaluationRun, RunStatus
from governance.registry import services as registry
from governance.registry.models import ModelVersion
from tests.conftest import make_artifact
from tests.test_evaluations_api import credit_frame, csv_upload
from workers.evaluations import run_evaluation

pytestmark = pytest.mark.usefixtures("fast_passwords")
FEATURES = ["income", "debt", "age"]


class RaisesOnPredict(ClassifierMixin, BaseEstimator):
    def fit(self, X, y):
        self.classes_ = [0, 1]
        return self

    def predict(self, X):
        raise RuntimeError(f"refusing row {list(X[0])}")  # the message quotes data


def _version(model, users, estimator) -> ModelVersion:
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    with audit_context(source="cli", actor=users.author):
        return registry.version_create(actor=users.author, model=model, artifact=make_artifact(buffer.getvalue()))


def _run(version, users, kind="performance") -> EvaluationRun:
    frame = credit_frame(200).drop(columns=["region"])
    with audit_context(source="cli", actor=users.author):
        made = services.run_request(actor=users.author, version=version, kind=kind, target_column="default",
                                    sensitive_features=["sex"], data=csv_upload(frame))  # fmt: skip
    return made.run


def _execute(run, capture):
    with capture(execute=True):
        result = run_evaluation(run.pk)
    run.refresh_from_db()
    return result


def test_a_healthy_run_succeeds_and_a_redelivered_task_does_nothing(model, users, django_capture_on_commit_callbacks):
    frame = credit_frame(200)
    version = _version(model, users, LogisticRegression().fit(frame[FEATURES], frame["default"]))
    run = _run(version, users)
    assert _execute(run, django_capture_on_commit_callbacks) == "succeeded"
    assert run.status == RunStatus.SUCCEEDED and 0.5 < run.result["metrics"]["accuracy"] <= 1
    digest = run.result_digest
    assert _execute(run, django_capture_on_commit_callbacks) == "skipped"  # acks_late redelivery
    run.refresh_from_db()
    assert run.result_digest == digest
    assert AuditEvent.objects.filter(action="evaluation.succeed", object_id=str(run.pk)).count() == 1


def test_an_artifact_whose_digest_no_longer_matches_fails_the_run(model, users, django_capture_on_commit_callbacks):
    frame = credit_frame(200)
    version = _version(model, users, LogisticRegression().fit(frame[FEATURES], frame["default"]))
    bystander = _run(_version(model, users, LogisticRegression(C=0.5).fit(frame[FEATURES], frame["default"])), users)
    run = _run(version, users)
    with storages["artifacts"].open(version.artifact_path, "wb") as handle:  # swapped on disk behind Charter
        handle.write(b"\x80\x04not the registered bytes")
    assert _execute(run, django_capture_on_commit_callbacks) == "failed"
    assert (run.status, run.error_code) == (RunStatus.FAILED, "digest_mismatch")
    assert "not loaded" in run.error_message or "not the" in run.error_message
    assert run.data_deleted_at is not None and not storages["evaluation_data"].exists(run.data_path)
    bystander.refresh_from_db()
    assert bystander.status == RunStatus.QUEUED  # nothing else affected
    assert ModelVersion.objects.get(pk=version.pk).artifact_sha256 == version.artifact_sha256


def test_a_model_that_raises_on_predict_fails_without_leaking_rows(model, users, django_capture_on_commit_callbacks):
    version = _version(model, users, RaisesOnPredict().fit(None, None))
    run = _run(version, users)
    assert _execute(run, django_capture_on_commit_callbacks) == "failed"
    assert run.error_code == "model_failed" and "RuntimeError" in run.error_message
    assert "refusing row" not in run.error_message and run.result == {}


def test_a_cancelled_run_is_not_started(model, users, django_capture_on_commit_callbacks):
    frame = credit_frame(200)
    version = _version(model, users, LogisticRegression().fit(frame[FEATURES], frame["default"]))
    run = _run(version, users)
    with audit_context(source="cli", actor=users.author):
        services.run_cancel(actor=users.author, run=run)
    assert _execute(run, django_capture_on_commit_callbacks) == "skipped"
    assert run.status == RunStatus.CANCELLED and run.started_at is None


def test_data_quality_compares_evaluation_data_with_the_registered_training_profile(
    model, users, tmp_path, django_capture_on_commit_callbacks
):
    import json

    from django.core.management import call_command

    train = credit_frame(400, seed=1)
    train.to_csv(tmp_path / "train.csv", index=False)
    out = io.StringIO()
    call_command("profile_data", str(tmp_path / "train.csv"), stdout=out)
    profile = json.loads(out.getvalue())
    assert profile["n_rows"] == 400 and "income" in profile["columns"]
    buffer = io.BytesIO()
    joblib.dump(LogisticRegression().fit(train[FEATURES], train["default"]), buffer)
    with audit_context(source="cli", actor=users.author):
        version = registry.version_create(
            actor=users.author, model=model, artifact=make_artifact(buffer.getvalue()), training_profile=profile
        )
    shifted = credit_frame(300, seed=2).drop(columns=["region"])
    shifted["income"] = shifted["income"] + 40  # the evaluation data no longer looks like training
    with audit_context(source="cli", actor=users.author):
        run = services.run_request(actor=users.author, version=version, kind="data_quality",
                                   data=csv_upload(shifted)).run  # fmt: skip
    assert _execute(run, django_capture_on_commit_callbacks) == "succeeded", run.error_message
    assert run.result["summary"]["missing_columns"] == 1  # "region" was in training
    assert run.result["comparison"]["columns"]["income"]["psi_level"] == "major shift"
    assert any("income" in note for note in run.result["notes"])
    assert set(run.figures) == {"psi", "missing"} and "figures" not in run.result["comparison"]  # drawn, not buried


def test_a_malformed_training_profile_is_refused_at_registration(api, users, model):
    r = api.as_user(users.author).post("/api/v1/versions/", {
        "model": model.pk, "artifact": make_artifact(), "training_profile": '{"rows": [[1, 2, 3]]}',
    }, format="multipart")  # fmt: skip
    assert r.status_code == 400 and "training_profile" in r.json()["fields"]
    assert not ModelVersion.objects.filter(model=model).exists()
