"""Requesting evaluation runs through the API: data and parameters are checked before anything is
queued, bad input is a 4xx that leaves nothing behind (no row, no file), and asking twice for the
same evaluation returns the first run."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from django.core.files.storage import storages
from django.core.files.uploadedfile import SimpleUploadedFile

from governance.audit.models import AuditEvent
from governance.evaluations.models import EvaluationRun
from tests.conftest import assert_error, governed_state

pytestmark = pytest.mark.usefixtures("fast_passwords")


def credit_frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "income": rng.normal(50, 10, n), "debt": rng.normal(10, 3, n), "age": rng.integers(18, 80, n),
        "sex": rng.choice(["f", "m"], n), "region": rng.choice(["north", "south"], n),
    })  # fmt: skip
    frame["default"] = (frame["debt"] * 3 - frame["income"] + rng.normal(0, 5, n) > -20).astype(int)
    return frame


def csv_upload(frame: pd.DataFrame, name: str = "holdout.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, frame.to_csv(index=False).encode(), content_type="text/csv")


def post(client, version, **fields):
    body = {"version": version.pk, "kind": "fairness", "target_column": "default", "sensitive_features": '["sex"]',
            **fields}  # fmt: skip
    body.setdefault("data", csv_upload(credit_frame()))
    return client.post("/api/v1/evaluations/", body, format="multipart")


def stored_files() -> list[str]:
    storage = storages["evaluation_data"]
    try:
        return sorted(storage.listdir("")[1])
    except FileNotFoundError:
        return []


def test_a_run_is_queued_once_per_identical_evaluation(api, users, version, django_capture_on_commit_callbacks):
    client = api.as_user(users.author)
    frame = credit_frame()
    with django_capture_on_commit_callbacks() as sent:
        r = post(client, version, data=csv_upload(frame), parameters='{"bootstrap": 50}')
    assert r.status_code == 201, r.content[:300]
    body = r.json()
    assert (body["status"], body["kind"], body["data_rows"], body["parameters"]["bootstrap"]) == (
        "queued", "fairness", 400, 50
    )  # fmt: skip
    assert body["parameters"]["min_group_size"] == 30  # defaults filled in and recorded
    assert len(sent) == 1 and len(stored_files()) == 1
    again = post(client, version, data=csv_upload(frame), parameters='{"bootstrap": 50}')
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    assert EvaluationRun.objects.count() == 1 and len(stored_files()) == 1
    other = post(client, version, data=csv_upload(frame), parameters='{"bootstrap": 60}')
    assert other.status_code == 201 and other.json()["id"] != body["id"]
    event = AuditEvent.objects.get(action="evaluation.request", object_id=str(body["id"]))
    assert event.actor == users.author and "income" not in event.changes  # names of columns at most, no rows


def _bad(frame_or_bytes, name="data.csv"):
    content = frame_or_bytes if isinstance(frame_or_bytes, bytes) else frame_or_bytes.to_csv(index=False).encode()
    return SimpleUploadedFile(name, content, content_type="text/csv")


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        pytest.param({"target_column": "approved"}, "missing_column", id="missing-target-column"),
        pytest.param({"target_column": ""}, "missing_target", id="no-target"),
        pytest.param({"data": _bad(credit_frame().assign(sex="f"))}, "single_group", id="one-group"),
        pytest.param({"data": _bad(credit_frame().iloc[:0])}, "empty_data", id="zero-rows"),
        pytest.param({"data": _bad(b"")}, "empty_data", id="empty-file"),
        pytest.param({"data": _bad(b"\x00\x01 not a table", name="x.parquet")}, "unreadable_data", id="garbage"),
        pytest.param({"data": _bad(b"a,b\n1,2\n", name="data.xlsx")}, "unsupported_data_format", id="xlsx"),
        pytest.param(
            {"sensitive_features": '["sex", "region", "age", "debt"]'}, "invalid_sensitive_features", id="four"
        ),
        pytest.param({"sensitive_features": "sex"}, "invalid", id="not-json"),
        pytest.param({"kind": "astrology"}, "invalid_kind", id="unknown-kind"),
        pytest.param({"parameters": '{"bootstrap": "many"}'}, "invalid_parameters", id="wrong-type"),
        pytest.param({"parameters": '{"bootstraps": 5}'}, "invalid_parameters", id="unknown-parameter"),
        pytest.param({"colour": "blue"}, "unknown_field", id="unknown-field"),
    ],
)
def test_bad_requests_leave_nothing_behind(api, users, version, fields, code):
    client = api.as_user(users.author)
    before = governed_state()
    body = assert_error(post(client, version, **fields), 400, code)
    assert "18" not in body["detail"] or code == "missing_column"  # no data values in messages
    assert governed_state() == before and not EvaluationRun.objects.exists()
    assert stored_files() == []


def test_a_file_over_the_size_limit_is_refused_before_it_is_kept(api, users, version, settings):
    settings.EVALUATION_DATA_MAX_BYTES = 1000
    r = post(api.as_user(users.author), version)
    assert_error(r, 413, "data_too_large")
    assert stored_files() == [] and not EvaluationRun.objects.exists()


def test_too_many_rows_is_refused(api, users, version, settings):
    settings.EVALUATION_MAX_ROWS = 100
    assert_error(post(api.as_user(users.author), version), 400, "too_many_rows")
    assert stored_files() == []


def test_who_may_request_and_cancel(api, users, version, django_capture_on_commit_callbacks):
    for role in ("viewer", "operator", "auditor"):
        assert_error(post(api.as_user(getattr(users, role)), version), 403)
    assert_error(post(api.as_user(users.outsider), version), 404, "version_not_found")
    run_id = post(api.as_user(users.reviewer), version).json()["id"]
    assert api.as_user(users.outsider).get(f"/api/v1/evaluations/{run_id}/").status_code == 404
    assert_error(api.as_user(users.viewer).post(f"/api/v1/evaluations/{run_id}/cancel/"), 403)
    author = api.as_user(users.author)
    with django_capture_on_commit_callbacks(execute=True):
        r = author.post(f"/api/v1/evaluations/{run_id}/cancel/")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert stored_files() == []  # the data goes with the run
    assert_error(api.as_user(users.author).post(f"/api/v1/evaluations/{run_id}/cancel/"), 409, "run_finished")
    assert_error(api.as_user(users.viewer).get(f"/api/v1/evaluations/{run_id}/download/"), 409, "no_result")


def test_parquet_is_accepted(api, users, version):
    buffer = io.BytesIO()
    credit_frame().to_parquet(buffer)
    upload = SimpleUploadedFile("holdout.parquet", buffer.getvalue(), content_type="application/octet-stream")
    r = post(api.as_user(users.author), version, data=upload, kind="performance", sensitive_features="[]")
    assert r.status_code == 201, r.content[:300]
    assert r.json()["data_rows"] == 400


def test_a_run_can_reuse_the_retained_data_of_an_earlier_run(api, users, version, make_version):
    client = api.as_user(users.author)
    kept = post(client, version, retain_data="true").json()
    assert kept["retain_data"] is True and len(stored_files()) == 1
    newer = make_version(version.model)
    r = client.post("/api/v1/evaluations/", {"version": newer.pk, "kind": "fairness", "target_column": "default",
                    "sensitive_features": '["sex"]', "data_from_run": kept["id"]}, format="multipart")  # fmt: skip
    assert r.status_code == 201, r.content[:300]
    assert r.json()["data_sha256"] == kept["data_sha256"] and r.json()["data_rows"] == 400
    assert len(stored_files()) == 2  # a copy: each run deletes its own
    not_kept = post(client, version, parameters='{"bootstrap": 7}').json()
    r = client.post("/api/v1/evaluations/", {"version": newer.pk, "kind": "fairness", "target_column": "default",
                    "sensitive_features": '["sex"]', "data_from_run": not_kept["id"]}, format="multipart")  # fmt: skip
    assert_error(r, 400, "data_not_retained")
    assert_error(client.post("/api/v1/evaluations/", {"version": newer.pk, "kind": "performance",
                 "target_column": "default", "data_from_run": 10**6}, format="multipart"), 404, "run_not_found")  # fmt: skip
    assert_error(client.post("/api/v1/evaluations/", {"version": newer.pk, "kind": "performance",
                 "target_column": "default"}, format="multipart"), 400, "missing_data")  # fmt: skip


def test_the_policy_runs_its_evaluations_on_every_new_version(api, users, superuser, model, version, make_version,
                                                              django_capture_on_commit_callbacks):  # fmt: skip
    from governance.approvals import services as approvals

    with audit_context_for(superuser):
        policy = approvals.policy_create(
            actor=superuser,
            name="Auto",
            rules={
                "environments": {"production": {"min_approvals": 1}},
                "auto_evaluations": ["fairness", "performance"],
            },
        )
        approvals.policy_assign(actor=superuser, policy=policy, model=model)
    client = api.as_user(users.author)
    kept = post(client, version, retain_data="true", parameters='{"bootstrap": 30}').json()
    r = client.post("/api/v1/versions/", {"model": model.pk, "artifact": _artifact()}, format="multipart")
    assert r.status_code == 201, r.content[:300]
    assert not EvaluationRun.objects.filter(version_id=r.json()["id"]).exists()  # registering pays nothing for it
    from workers.artifacts import inspect_artifact

    with django_capture_on_commit_callbacks() as sent:
        inspect_artifact(r.json()["id"])  # the worker: inspection first, then the policy's evaluations
        inspect_artifact(r.json()["id"])  # a redelivered inspection asks for nothing twice
    runs = EvaluationRun.objects.filter(version_id=r.json()["id"])
    # fairness again with the same parameters and a copy of the retained data; no performance run had data
    assert [(run.kind, run.parameters["bootstrap"], run.data_sha256) for run in runs] == [
        ("fairness", 30, kept["data_sha256"])
    ]
    assert runs[0].requested_by == users.author and runs[0].retain_data is False
    assert len(sent) == 1  # one evaluation queued
    assert AuditEvent.objects.filter(action="evaluation.request", object_id=str(runs[0].pk)).count() == 1


def audit_context_for(user):
    from governance.core.context import audit_context

    return audit_context(source="cli", actor=user)


def _artifact():
    from tests.conftest import make_artifact

    return make_artifact()
