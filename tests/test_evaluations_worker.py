"""An evaluation requested through the API runs in a real Celery worker on Redis: its progress is
visible while it runs, the data file is gone afterwards, and the result is evidence on the version
page (and in the version's gate)."""

from __future__ import annotations

import io
from pathlib import Path

import joblib
import pytest
from django.core.files.storage import storages
from sklearn.svm import SVC

from governance.evaluations.models import EvaluationRun
from tests.conftest import celery_worker, make_artifact, wait_for
from tests.test_evaluations_api import credit_frame, csv_upload

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_passwords")]
FEATURES = ["income", "debt", "age"]


def _register(api, users, model, estimator) -> int:
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    r = api.as_user(users.author).post(
        "/api/v1/versions/", {"model": model.pk, "artifact": make_artifact(buffer.getvalue(), name="svc.joblib")},
        format="multipart",
    )  # fmt: skip
    assert r.status_code == 201, r.content[:300]
    return r.json()["id"]


def test_an_explainability_run_in_a_real_worker(api, users, model, settings, login):
    frame = credit_frame(300)
    # an SVC is neither a tree nor linear: Kernel SHAP with a budget, long enough to watch it move
    version_id = _register(
        api, users, model, SVC(probability=True, random_state=0).fit(frame[FEATURES], frame["default"])
    )
    media_root = Path(settings.STORAGES["artifacts"]["OPTIONS"]["location"]).parent
    author = api.as_user(users.author)
    with celery_worker(queues="evaluations,default", media_root=media_root):
        r = author.post("/api/v1/evaluations/", {
            "version": version_id, "kind": "explainability", "target_column": "default",
            "data": csv_upload(frame.drop(columns=["sex", "region"])),
            "parameters": '{"sample_rows": 40, "lime_rows": 2, "max_evals": 2000, "background_size": 10}',
        }, format="multipart")  # fmt: skip
        assert r.status_code == 201, r.content[:300]
        run_id = r.json()["id"]
        seen = []

        def observe():
            body = author.get(f"/api/v1/evaluations/{run_id}/").json()
            seen.append((body["status"], body["progress"], body["progress_message"]))
            return body["status"] in ("succeeded", "failed", "cancelled")

        assert wait_for(observe, timeout=120, interval=0.05), seen[-3:]
    run = EvaluationRun.objects.get(pk=run_id)
    assert run.status == "succeeded", (run.error_code, run.error_message)
    moving = [p for status, p, _ in seen if status == "running" and 0 < p < 100]
    assert moving, f"never saw the run in progress: {sorted(set(seen))[:10]}"
    assert [p for _, p, _ in seen] == sorted(p for _, p, _ in seen)  # progress only goes forward
    # the data went with the run; only aggregates stayed
    assert run.data_deleted_at is not None
    assert not storages["evaluation_data"].exists(run.data_path)
    assert run.artifact_sha256 and run.result_digest and run.environment["libraries"]["shap"]
    assert set(run.result["ranking"]) == set(FEATURES)
    assert "Kernel" in " ".join(run.result["notes"]) or "Permutation" in " ".join(run.result["notes"])
    # evidence on the version page
    page = login(users.viewer).get(f"/versions/{version_id}/").content.decode()
    assert "Explainability" in page and "Succeeded" in page and run.get_absolute_url() in page
