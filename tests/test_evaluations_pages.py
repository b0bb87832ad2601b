"""The evaluation pages: request form, the run page (live progress while active, results once done),
the comparison of two versions, and who may see and do what."""

from __future__ import annotations

import pytest
from django.urls import reverse

from governance.core.context import audit_context
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
    # the header's badge follows the progress: swapped out of band by its id, no longer "Queued"
    badge = partial.content.decode().split('id="run-status"', 1)[1].split("</span>", 1)[0]
    assert 'hx-swap-oob="true"' in badge and "run-running" in badge and "Running" in badge and "Queued" not in badge
    assert page.count('id="run-status"') == 1 and "hx-swap-oob" not in page
    finished(run, {"accuracy": 0.9})
    done = client.get(reverse("evaluation-progress", args=[run.pk]))
    assert done["HX-Refresh"] == "true" and "every 1s" not in done.content.decode()


def test_a_finished_run_shows_summary_tables_figures_and_environment(login, users, version):
    run = finished(queued(version, users.author), {"accuracy": 0.9125, "roc_auc": 0.88})
    body = login(users.viewer).get(run.get_absolute_url()).content.decode()
    assert "0.9125" in body and "By group" in body and "LinearExplainer" in body
    assert 'data-figure="figure-' in body and "js/figures.js" in body and "test-host" in body  # plotly: any bundle
    assert reverse("api:evaluationrun-download", args=[run.pk]) in body
    assert "deleted" in body  # the data file went with the run


def test_compare_shows_the_same_evaluation_on_two_versions(login, users, model, version, make_version):
    newer = make_version(model)
    a = finished(queued(version, users.author), {"accuracy": 0.80})
    b = finished(queued(newer, users.author), {"accuracy": 0.85})
    client = login(users.viewer)
    body = client.get(reverse("evaluation-compare"), {"a": a.pk, "b": b.pk}).content.decode()
    assert "0.8000" in body and "0.8500" in body and "+0.0500" in body and "delta-better" in body
    assert client.get(reverse("evaluation-compare"), {"a": a.pk, "b": "x"}).status_code == 404


def _change_class(body: str, label: str) -> str:
    row = body.split(f"<td>{label}</td>", 1)[1].split("</tr>", 1)[0]
    return row.split('class="delta', 1)[1].split('"', 1)[0].strip()


def test_compare_colours_each_change_by_whether_it_is_better_for_that_measure(login, users, model, version,
                                                                              make_version):  # fmt: skip
    newer = make_version(model)
    before = {"demographic_parity_difference": 0.05, "demographic_parity_ratio": 0.80, "selection_rate": 0.30,
              "log_loss": 0.40, "roc_auc": 0.80}  # fmt: skip
    after = {"demographic_parity_difference": 0.12, "demographic_parity_ratio": 0.70, "selection_rate": 0.35,
             "log_loss": 0.30, "roc_auc": 0.80}  # fmt: skip
    a = finished(queued(version, users.author, kind="fairness"), before)
    b = finished(queued(newer, users.author, kind="fairness"), after)
    body = login(users.viewer).get(reverse("evaluation-compare"), {"a": a.pk, "b": b.pk}).content.decode()
    assert _change_class(body, "Demographic parity difference") == "delta-worse"  # a higher difference is worse
    assert _change_class(body, "Demographic parity ratio") == "delta-worse"
    assert _change_class(body, "Log loss") == "delta-better"
    assert _change_class(body, "Selection rate (all rows)") == ""  # neither way is better: no colour
    assert _change_class(body, "ROC AUC") == ""  # no change


def test_nested_figures_are_flattened_named_and_paired_by_name(login, users, model, version, make_version):
    """Fairness stores figures per sensitive feature and LIME a list: one chart each, in both runs."""
    newer = make_version(model)
    nested = {"sex": {"selection_rate": FIGURE, "error_rates": FIGURE}, "lime_rows": [FIGURE, FIGURE]}
    a = finished(queued(version, users.author, kind="fairness"), {"accuracy": 0.8}, figures=nested)
    only_selection = {"sex": {"selection_rate": FIGURE}}
    b = finished(queued(newer, users.author, kind="fairness"), {"accuracy": 0.8}, figures=only_selection)
    client = login(users.viewer)
    body = client.get(a.get_absolute_url()).content.decode()
    assert body.count("data-figure=") == 4 and "Selection rate · sex" in body
    assert "Error rates (TPR and FPR) · sex" in body
    assert "This chart is drawn in the browser" in body  # what a page without JavaScript says in its place
    compare = client.get(reverse("evaluation-compare"), {"a": a.pk, "b": b.pk}).content.decode()
    pairs = compare.split('<div class="grid grid-2"')[1:]
    selection = next(p for p in pairs if "Selection rate · sex" in p)
    assert selection.count("data-figure=") == 2  # the same figure of both runs, side by side
    assert sum("Not in this run." in p for p in pairs) == 3  # error rates and the two LIME rows: v1 only


def test_summary_labels_read_as_written_by_a_person(login, users, version):
    run = finished(queued(version, users.author), {"roc_auc": 0.88, "mean_abs_shap.debt_ratio": 0.2,
                                                   "accuracy.delta_at_noise_0.05": -0.01, "f1_macro": 0.7})  # fmt: skip
    body = login(users.viewer).get(run.get_absolute_url()).content.decode()
    for label in ("ROC AUC", "Mean |SHAP|: debt_ratio", "Accuracy: change under noise 0.05×σ", "F1 (macro average)"):
        assert f"<dt>{label}</dt>" in body, label
    assert "Roc auc" not in body and "Mean abs shap" not in body


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
