"""The evaluation pages: request form, the run page (live progress while active, results once done),
the comparison of two versions, and who may see and do what."""

from __future__ import annotations

import pytest
from django.urls import reverse

from governance.audit.context import audit_context
from governance.evaluations import services
from governance.evaluations.models import EvaluationRun, RunStatus
from tests.test_evaluations_api import credit_frame, csv_upload

pytestmark = pytest.mark.usefixtures("fast_passwords")

FIGURE = {"data": [{"type": "bar", "x": ["f", "m"], "y": [0.31, 0.52]}], "layout": {"title": {"text": "Selection"}}}


def queued(version, actor, kind="performance", **kw) -> EvaluationRun:
    with audit_context(source="cli", actor=actor):
        return services.run_request(
            actor=actor, version=version, kind=kind, data=csv_upload(credit_frame()), target_column="default",
            sensitive_features=["sex"] if kind == "fairness" else [], **kw,
        ).run  # fmt: skip


def finished(run, summary, figures=None) -> EvaluationRun:
    """What the worker stores (its engines are tested in tests/engines and by the worker test)."""
    with audit_context(source="task"):
        services.run_start(run_id=run.pk, host="test-host")
        services.run_finish(
            run_id=run.pk, result={"summary": summary, "tables": [{"title": "By group", "columns": ["group", "n"],
                                   "rows": [["f", 201], ["m", 199]]}], "notes": ["Logistic regression: LinearExplainer."]},
            figures=figures or {"selection_rate": FIGURE}, environment={"host": "test-host", "libraries": {"numpy": "2"}},
            artifact_sha256=run.version.artifact_sha256,
        )  # fmt: skip
    run.refresh_from_db()
    return run


def test_request_form_queues_a_run_and_shows_errors_in_place(login, users, version):
    client = login(users.author)
    url = reverse("evaluation-request", args=[version.pk])
    assert client.get(url).status_code == 200
    bad = client.post(url, {"kind": "fairness", "data": csv_upload(credit_frame()), "target_column": "default",
                            "sensitive_features": "nationality"})  # fmt: skip
    assert bad.status_code == 400 and "Not in the data: nationality" in bad.content.decode()
    assert not EvaluationRun.objects.exists()
    ok = client.post(url, {"kind": "fairness", "data": csv_upload(credit_frame()), "target_column": "default",
                           "sensitive_features": "sex, region", "parameters": '{"bootstrap": 20}'})  # fmt: skip
    run = EvaluationRun.objects.get()
    assert ok.status_code == 302 and ok["Location"] == run.get_absolute_url()
    assert run.sensitive_features == ["sex", "region"] and run.parameters["bootstrap"] == 20
    assert login(users.viewer).post(url, {"kind": "performance"}).status_code in (400, 403)


def test_an_active_run_page_polls_its_progress_and_reloads_when_done(login, users, version):
    run = queued(version, users.author)
    client = login(users.viewer)
    page = client.get(run.get_absolute_url()).content.decode()
    assert 'hx-trigger="every 1s"' in page and "Queued" in page
    with audit_context(source="task"):
        services.run_start(run_id=run.pk, host="h")
        services.run_progress(run_id=run.pk, percent=42, message="Explaining rows")
    partial = client.get(reverse("evaluation-progress", args=[run.pk]))
    assert "42%" in partial.content.decode() and "Explaining rows" in partial.content.decode()
    assert "HX-Refresh" not in partial
    finished(run, {"accuracy": 0.9})
    done = client.get(reverse("evaluation-progress", args=[run.pk]))
    assert done["HX-Refresh"] == "true" and "every 1s" not in done.content.decode()


def test_a_finished_run_shows_summary_tables_figures_and_environment(login, users, version):
    run = finished(queued(version, users.author), {"accuracy": 0.9125, "roc_auc": 0.88})
    body = login(users.viewer).get(run.get_absolute_url()).content.decode()
    assert "0.9125" in body and "By group" in body and "LinearExplainer" in body
    assert 'data-figure="figure-' in body and "vendor/plotly.min.js" in body and "test-host" in body
    assert reverse("api:evaluationrun-download", args=[run.pk]) in body
    assert "deleted" in body  # the data file went with the run


def test_compare_shows_the_same_evaluation_on_two_versions(login, users, model, version, make_version):
    newer = make_version(model)
    a = finished(queued(version, users.author), {"accuracy": 0.80})
    b = finished(queued(newer, users.author), {"accuracy": 0.85})
    client = login(users.viewer)
    body = client.get(reverse("evaluation-compare"), {"a": a.pk, "b": b.pk}).content.decode()
    assert "0.8000" in body and "0.8500" in body and "0.0500" in body and "delta-up" in body
    assert client.get(reverse("evaluation-compare"), {"a": a.pk, "b": "x"}).status_code == 404


def test_other_teams_see_nothing_and_viewers_cannot_cancel(login, users, version):
    run = queued(version, users.author)
    assert login(users.outsider).get(run.get_absolute_url()).status_code == 404
    assert login(users.outsider).get(reverse("evaluation-request", args=[version.pk])).status_code == 404
    assert login(users.viewer).post(reverse("evaluation-cancel", args=[run.pk])).status_code == 403
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED
    response = login(users.author).post(reverse("evaluation-cancel", args=[run.pk]))
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED


def test_the_version_page_lists_its_evidence_with_a_comparison_link(login, users, model, version, make_version):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = login(users.author)
    empty = client.get(version.get_absolute_url()).content.decode()
    assert "No evaluations yet" in empty and reverse("evaluation-request", args=[version.pk]) in empty
    newer = make_version(model)
    finished(queued(version, users.author), {"accuracy": 0.80})
    latest = finished(queued(newer, users.author), {"accuracy": 0.85})
    queued(newer, users.author, kind="fairness")
    with CaptureQueriesContext(connection) as few:
        page = client.get(newer.get_absolute_url()).content.decode()
    assert "Performance" in page and "Fairness" in page and "compare with v1" in page
    assert f"b={latest.pk}" in page
    finished(queued(newer, users.author, parameters={"slice_column": "sex"}), {"accuracy": 0.86})
    finished(queued(newer, users.author, kind="data_quality"), {"rows": 400})
    with CaptureQueriesContext(connection) as more:
        client.get(newer.get_absolute_url())
    assert len(more) == len(few)  # the evidence card does not grow with its runs
    assert login(users.viewer).get(newer.get_absolute_url()).content.decode().count("Run an evaluation") == 0


def test_the_version_page_says_whether_evaluations_will_load_a_pickle(login, users, model, make_version):
    from governance.accounts.models import Membership, Role

    trusted = make_version(model)  # joblib, uploaded by the team's author
    page = login(users.viewer).get(trusted.get_absolute_url()).content.decode()
    assert "evaluations load it because an author of Credit Risk uploaded it" in page
    Membership.objects.filter(user=users.author, role=Role.AUTHOR).delete()
    page = login(users.viewer).get(trusted.get_absolute_url()).content.decode()
    assert "evaluations will not load it" in page
