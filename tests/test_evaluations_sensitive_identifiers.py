"""Issue 10, finding 7: no identifier is ever stored as a group label.

A fairness run stores every distinct value of its sensitive feature as a group label. A column of
e-mail addresses (or phone numbers, UUIDs, one value per row, or simply too many values) is
refused before the run is queued, through the API and the form, with a code that names the
column; and the worker refuses it again, so a run that reached the queue some other way (a
forged row or task message) stores nothing of it either.
"""

from __future__ import annotations

import io

import joblib
import pandas as pd
import pytest
from django.core.files.storage import storages
from django.urls import reverse
from sklearn.linear_model import LogisticRegression

from governance.audit.models import AuditEvent
from governance.core.context import audit_context
from governance.evaluations import services
from governance.evaluations.models import EvaluationRun, RunStatus
from tests.conftest import assert_error, governed_state
from tests.test_evaluations_api import credit_frame, csv_upload, post, stored_files
from workers.engines.errors import EngineError
from workers.engines.fairness import sensitive_column_problem
from workers.engines.loading import wrap_estimator
from workers.engines.runner import evaluate
from workers.evaluations import run_evaluation

pytestmark = pytest.mark.usefixtures("fast_passwords")
FEATURES = ["income", "debt", "age"]


def with_emails(n: int = 400) -> pd.DataFrame:
    frame = credit_frame(n)
    frame["email"] = [f"customer{i % (n // 2)}@example.com" for i in range(n)]  # two rows each: not unique per row
    return frame


def test_a_fairness_run_over_an_email_column_is_refused_before_anything_is_stored(api, users, version):
    client = api.as_user(users.author)
    before = governed_state()
    r = post(client, version, data=csv_upload(with_emails()), sensitive_features='["email"]')
    body = assert_error(r, 400, "sensitive_feature_identifier")
    assert "'email'" in body["detail"] and "e-mail" in body["detail"]
    assert "@" not in r.content.decode()  # the refusal names the column, never a value
    assert "sensitive_features" in body["fields"]
    assert not EvaluationRun.objects.exists() and stored_files() == []
    after = governed_state()
    assert {k: v for k, v in after.items() if k != "events"} == {k: v for k, v in before.items() if k != "events"}
    assert not AuditEvent.objects.filter(changes__contains="@example.com").exists()  # a refusal keeps no address


@pytest.mark.parametrize(
    ("values", "code"),
    [
        pytest.param(
            lambda n: [f"+49 151 {1000000 + i % 100}" for i in range(n)],
            "sensitive_feature_identifier",
            id="phone-numbers",
        ),
        pytest.param(
            lambda n: [f"{i % 20:08x}-1234-5678-9abc-def012345678" for i in range(n)],
            "sensitive_feature_identifier",
            id="uuids",
        ),
        pytest.param(
            lambda n: [f"applicant-{i:06d}" for i in range(n)], "sensitive_feature_identifier", id="unique-per-row"
        ),
        pytest.param(lambda n: [f"branch {i % 60}" for i in range(n)], "too_many_groups", id="too-many-groups"),
    ],
)
def test_identifier_like_sensitive_columns_are_refused_by_the_api(api, users, version, values, code):
    frame = credit_frame(400)
    frame["group"] = values(len(frame))
    r = post(api.as_user(users.author), version, data=csv_upload(frame), sensitive_features='["group"]')
    body = assert_error(r, 400, code)
    assert "'group'" in body["detail"]
    assert not EvaluationRun.objects.exists() and stored_files() == []


def test_the_group_limit_is_a_setting(api, users, version, settings):
    frame = credit_frame(400)
    frame["region4"] = [f"region {i % 4}" for i in range(len(frame))]
    settings.EVALUATION_MAX_SENSITIVE_GROUPS = 3
    body = assert_error(post(api.as_user(users.author), version, data=csv_upload(frame),
                             sensitive_features='["region4"]'), 400, "too_many_groups")  # fmt: skip
    assert "4 distinct values; the limit is 3" in body["detail"]
    settings.EVALUATION_MAX_SENSITIVE_GROUPS = 4
    r = post(api.as_user(users.author), version, data=csv_upload(frame), sensitive_features='["region4"]')
    assert r.status_code == 201, r.content[:300]


def test_the_request_form_refuses_an_email_column_on_the_field(login, users, version):
    client = login(users.author)
    response = client.post(
        reverse("evaluation-request", args=[version.pk]),
        {"kind": "fairness", "data": csv_upload(with_emails()), "target_column": "default",
         "sensitive_features": "sex, email"},
    )  # fmt: skip
    page = response.content.decode()
    assert response.status_code == 400 and "sensitive column &#x27;email&#x27; holds values shaped like e-mail" in page
    assert "customer1@example.com" not in page
    assert not EvaluationRun.objects.exists() and stored_files() == []


def test_the_engine_refuses_identifier_columns_directly():
    frame = with_emails(200)
    model = wrap_estimator(LogisticRegression().fit(frame[FEATURES], frame["default"]))
    with pytest.raises(EngineError) as refused:
        evaluate("fairness", model, frame, target="default", sensitive=["email"], parameters={"bootstrap": 0})
    assert refused.value.code == "sensitive_feature_identifier" and "@" not in refused.value.message
    many = frame.assign(branch=[f"b{i % 30}" for i in range(len(frame))])
    with pytest.raises(EngineError) as refused:
        evaluate("fairness", model, many, target="default", sensitive=["branch"], parameters={"bootstrap": 0},
                 max_sensitive_groups=10)  # fmt: skip
    assert refused.value.code == "too_many_groups"
    result, _ = evaluate("fairness", model, frame, target="default", sensitive=["sex"], parameters={"bootstrap": 0})
    assert {g["key"]["sex"] for g in result["report"]["analyses"][0]["groups"]} == {"f", "m"}


@pytest.mark.parametrize(
    ("values", "code"),
    [
        (["f", "m", "f", "m"], None),
        (["18-25", "26-35", "18-25", "66+"], None),
        (["10000-20000", "20000-30000", "10000-20000", "1990-1999"], None),  # bands are not phone numbers
        ([18, 25, 18, 25], None),
        ([0.123456789, 0.2, 0.123456789, 0.2], None),
        ([True, False, True, False], None),
        (["a@x.com", "b@y.org", "a@x.com", "b@y.org"], "sensitive_feature_identifier"),
        (["(555) 123-4567", "x", "x", "y"], "sensitive_feature_identifier"),
        (["+44 20 7946 0958", "x", "x", "y"], "sensitive_feature_identifier"),
        ([4915112345678, 1, 1, 2], "sensitive_feature_identifier"),
        (["123e4567-e89b-12d3-a456-426614174000", "x", "x", "y"], "sensitive_feature_identifier"),
        (["a", "b", "c", "d"], "sensitive_feature_identifier"),  # one value per row: a key
        ([f"g{i % 51}" for i in range(102)], "too_many_groups"),
    ],
)
def test_the_rule_of_what_may_be_a_group(values, code):
    problem = sensitive_column_problem(pd.Series(values), "column")
    assert (problem[0] if problem else None) == code


def test_a_forged_run_over_an_email_column_fails_in_the_worker_and_stores_no_label(
    model, users, make_version, django_capture_on_commit_callbacks
):
    """A run row that skipped the request's validation (written directly, then queued) is refused
    by the worker: failed with the code, no result, no address anywhere on the run."""
    frame = with_emails(200)
    fitted = LogisticRegression().fit(frame[FEATURES], frame["default"])
    buffer = io.BytesIO()
    joblib.dump(fitted, buffer)
    version = make_version(model, content=buffer.getvalue())
    with audit_context(source="cli", actor=users.author):
        run = services.run_request(
            actor=users.author, version=version, kind="fairness", target_column="default", sensitive_features=["sex"],
            data=csv_upload(frame.drop(columns=["email"])), parameters={"bootstrap": 0},
        ).run  # fmt: skip
    # forged: the stored data now carries e-mail addresses and the run names them as the sensitive feature
    with storages["evaluation_data"].open(run.data_path, "wb") as handle:
        handle.write(frame.to_csv(index=False).encode())
    EvaluationRun.objects.filter(pk=run.pk).update(sensitive_features=["email"])
    with django_capture_on_commit_callbacks(execute=True):
        assert run_evaluation(run.pk) == "failed"
    run.refresh_from_db()
    assert (run.status, run.error_code) == (RunStatus.FAILED, "sensitive_feature_identifier")
    assert not run.result and not run.figures
    stored = EvaluationRun.objects.filter(pk=run.pk).values().get()
    assert "@example.com" not in repr(stored)
