"""Issue 12 through the application: what is stored keeps aggregates only (every kind run by the task and
read back from the database, the training profile registered through the API, and a result handed to
the storing service by anything), up to three sensitive features through the API, and the sample-weight
column checked before a run is queued."""

from __future__ import annotations

import io
import json

import joblib
import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier

from governance.core.context import audit_context
from governance.evaluations import services
from governance.evaluations.models import EvaluationRun, RunStatus
from governance.registry import services as registry
from governance.registry.models import ModelVersion
from tests.conftest import assert_error, make_artifact
from tests.engines.test_privacy import FEATURES, _planted_table, _planted_values
from tests.test_evaluations_api import credit_frame, csv_upload, post, stored_files
from workers.engines import privacy
from workers.engines.data_quality import profile
from workers.evaluations import run_evaluation

pytestmark = pytest.mark.usefixtures("fast_passwords")

RUNS = [
    ("explainability", {"sample_rows": 20, "lime_rows": 1, "max_evals": 500, "background_size": 10}, []),
    ("fairness", {"bootstrap": 20}, ["group"]),
    ("performance", {"slice_column": "name"}, []),
    ("performance", {"slice_column": "income"}, []),
    ("robustness", {"noise_levels": [0.1]}, []),
    ("data_quality", {}, []),
]


def _raw_profile(frame):
    """A profile as a client may still send it: every category value and the exact extremes."""
    raw = profile(frame, min_count=1)
    raw["columns"]["income"]["min"] = float(frame["income"].min())
    raw["columns"]["income"]["max"] = float(frame["income"].max())
    return raw


def test_every_kind_stored_by_the_task_keeps_no_planted_value(model, users, django_capture_on_commit_callbacks):
    frame = _planted_table()
    buffer = io.BytesIO()
    joblib.dump(GradientBoostingClassifier(n_estimators=10, max_depth=2, random_state=0).fit(
        frame[FEATURES], frame["default"]), buffer)  # fmt: skip
    raw = _raw_profile(frame)
    assert any(value in json.dumps(raw) for value in _planted_values())  # what the client sent holds them
    with audit_context(source="cli", actor=users.author):
        version = registry.version_create(
            actor=users.author, model=model, artifact=make_artifact(buffer.getvalue()), training_profile=raw
        )
    stored_profile = ModelVersion.objects.get(pk=version.pk).training_profile
    assert [v for v in _planted_values() if v in json.dumps(stored_profile)] == []
    for kind, parameters, sensitive in RUNS:
        with audit_context(source="cli", actor=users.author):
            run = services.run_request(
                actor=users.author, version=version, kind=kind, target_column="default", sensitive_features=sensitive,
                parameters=parameters, data=csv_upload(frame),
            ).run  # fmt: skip
        with django_capture_on_commit_callbacks(execute=True):
            assert run_evaluation(run.pk) == "succeeded", (kind, EvaluationRun.objects.get(pk=run.pk).error_message)
        stored = EvaluationRun.objects.get(pk=run.pk)
        text = json.dumps([stored.result, stored.figures])
        assert [v for v in _planted_values() if v in text] == [], kind


def test_a_training_profile_registered_through_the_api_keeps_aggregates_only(api, users, model):
    frame = _planted_table()
    r = api.as_user(users.author).post("/api/v1/versions/", {
        "model": model.pk, "artifact": make_artifact(), "training_profile": json.dumps(_raw_profile(frame)),
    }, format="multipart")  # fmt: skip
    assert r.status_code == 201, r.content[:300]
    stored = ModelVersion.objects.get(pk=r.json()["id"]).training_profile
    income = stored["columns"]["income"]
    assert "min" not in income and "max" not in income and income["quantiles"]["0.99"] < 900_000
    assert "Zebediah Quackenbush" not in stored["columns"]["name"]["categories"]
    assert stored["columns"]["name"]["categories"]["Alice"] > privacy.MIN_COUNT  # aggregates stay


def test_the_storing_service_withholds_a_small_group_whatever_produced_the_result(users, version):
    """A result that did not come through the runner (another worker, an older engine) is cleaned where
    every result is stored."""
    with audit_context(source="cli", actor=users.author):
        run = services.run_request(actor=users.author, version=version, kind="performance", target_column="default",
                                   data=csv_upload(credit_frame())).run  # fmt: skip
        started = services.run_start(run_id=run.pk, host="test")
        leaked = {
            "summary": {"accuracy": 0.9},
            "tables": [{"title": "By name", "columns": ["slice", "rows", "accuracy"],
                        "rows": [["Alice", 120, 0.91], ["Zebediah", 1, 1.0]]}],
            "report": {"slices": {"slices": [{"value": "Zebediah", "count": 1, "metrics": {"accuracy": 1.0}}]},
                       "profile": {"kind": "numeric", "missing_share": 0.0, "count": 400, "min": 987654.321}},
        }  # fmt: skip
        figures = {"slices": {"data": [{"type": "bar", "x": ["Alice", "Zebediah"], "y": [0.91, 1.0]}], "layout": {}}}
        services.run_finish(run_id=run.pk, result=leaked, figures=figures, environment={},
                            artifact_sha256=version.artifact_sha256, lease=started.lease_token)  # fmt: skip
    stored = EvaluationRun.objects.get(pk=run.pk)
    assert stored.status == RunStatus.SUCCEEDED
    text = json.dumps([stored.result, stored.figures])
    assert "Zebediah" not in text and "987654" not in text
    assert stored.result["tables"][0]["rows"] == [["Alice", 120, 0.91], [privacy.WITHHELD, 1, None]]
    assert stored.result["report"]["slices"]["slices"][0] == {
        "value": privacy.WITHHELD,
        "count": 1,
        "withheld": privacy.withheld_sentence(privacy.MIN_COUNT),
    }
    assert stored.figures["slices"]["data"][0]["x"] == ["Alice"] and stored.figures["slices"]["data"][0]["y"] == [0.91]


def test_three_sensitive_features_through_the_api(api, users, version):
    frame = credit_frame().assign(age_band=lambda f: np.where(f["age"] < 45, "young", "older"))
    client = api.as_user(users.author)
    r = post(client, version, data=csv_upload(frame), sensitive_features='["sex", "region", "age_band"]')
    assert r.status_code == 201, r.content[:300]
    assert r.json()["sensitive_features"] == ["sex", "region", "age_band"]
    four = frame.assign(flag=lambda f: np.where(f["debt"] > 10, "high", "low"))
    refused = post(client, version, data=csv_upload(four), sensitive_features='["sex", "region", "age_band", "flag"]')
    assert_error(refused, 400, "invalid_sensitive_features")
    assert EvaluationRun.objects.count() == 1 and len(stored_files()) == 1


def _weighted(weights):
    frame = credit_frame()
    frame["weight"] = weights(len(frame))
    return frame


@pytest.mark.parametrize(
    ("frame", "parameters", "code"),
    [
        pytest.param(credit_frame(), {"sample_weight_column": "weight"}, "missing_column", id="no-such-column"),
        pytest.param(_weighted(lambda n: ["heavy"] * n), {"sample_weight_column": "weight"}, "bad_sample_weight",
                     id="not-numbers"),
        pytest.param(_weighted(lambda n: np.where(np.arange(n) == 3, -1.0, 1.0)), {"sample_weight_column": "weight"},
                     "bad_sample_weight", id="negative"),
        pytest.param(_weighted(lambda n: np.where(np.arange(n) == 3, np.nan, 1.0)), {"sample_weight_column": "weight"},
                     "bad_sample_weight", id="missing-value"),
        pytest.param(_weighted(lambda n: np.where(np.arange(n) == 3, np.inf, 1.0)), {"sample_weight_column": "weight"},
                     "bad_sample_weight", id="infinite"),
        pytest.param(_weighted(lambda n: np.zeros(n)), {"sample_weight_column": "weight"}, "bad_sample_weight",
                     id="all-zero"),
        pytest.param(credit_frame(), {"sample_weight_column": "default"}, "bad_sample_weight", id="the-target"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("kind", ["fairness", "performance"])
def test_the_sample_weight_column_is_checked_before_a_run_is_queued(api, users, version, frame, parameters, code, kind):
    r = post(api.as_user(users.author), version, kind=kind, data=csv_upload(frame), parameters=json.dumps(parameters))
    body = assert_error(r, 400, code)
    assert "parameters.sample_weight_column" in body["fields"]
    assert EvaluationRun.objects.count() == 0 and stored_files() == []  # a refused request leaves nothing


@pytest.mark.parametrize("kind", ["fairness", "performance"])
def test_a_valid_sample_weight_column_is_recorded_with_the_run(api, users, version, kind):
    frame = _weighted(lambda n: np.random.default_rng(1).gamma(2.0, 1.0, n))
    r = post(api.as_user(users.author), version, kind=kind, data=csv_upload(frame),
             parameters='{"sample_weight_column": "weight"}')  # fmt: skip
    assert r.status_code == 201, r.content[:300]
    assert r.json()["parameters"]["sample_weight_column"] == "weight"
    robustness = post(api.as_user(users.author), version, kind="robustness", data=csv_upload(frame),
                      parameters='{"sample_weight_column": "weight"}')  # fmt: skip
    assert_error(robustness, 400, "invalid_parameters")  # the kinds that weigh their metrics take it
