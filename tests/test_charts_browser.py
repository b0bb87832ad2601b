"""Every chart Charter draws, drawn for real: the evaluation page of every kind of evaluation (run
by the real engines on a small real model, through the worker's own task body), the comparison page
of two runs of the same kinds, and the home page, opened in headless Chromium. Each chart must have
become a Plotly plot with at least one trace that carries data; an empty set of axes fails.

Screenshots of the fairness page and of a comparison go to var/screenshots/."""

from __future__ import annotations

import io
from pathlib import Path

import joblib
import pytest
from sklearn.linear_model import LogisticRegression

from governance.core.context import audit_context
from governance.evaluations import measures, services
from governance.evaluations.models import EvaluationKind, RunStatus
from governance.registry import services as registry
from tests.browser import assert_charts_drew, watch_csp
from tests.conftest import make_artifact
from tests.test_approvals_browser import _sign_in
from tests.test_evaluations_api import credit_frame, csv_upload
from tests.test_run_command import CHROMIUM, CHROMIUM_FLAGS

# every kind but the benchmark, which runs only on a registered host's own worker (tests/test_benchmark_e2e.py)
IN_PROCESS_KINDS = [kind for kind in EvaluationKind if kind != EvaluationKind.BENCHMARK]
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_passwords")]

SCREENSHOTS = Path(__file__).resolve().parent.parent / "var" / "screenshots"
FEATURES = ["income", "debt", "age", "senior"]
# Small and quick: a few hundred rows, a short bootstrap, two LIME rows.
PARAMETERS = {
    EvaluationKind.EXPLAINABILITY: {"lime_rows": 2, "sample_rows": 100},
    EvaluationKind.FAIRNESS: {"bootstrap": 20},
    EvaluationKind.PERFORMANCE: {"slice_column": "senior"},
    EvaluationKind.ROBUSTNESS: {"noise_levels": [0.05, 0.2]},
    EvaluationKind.DATA_QUALITY: {},
}
COMPARED = (EvaluationKind.FAIRNESS, EvaluationKind.EXPLAINABILITY)


def _frame(n: int, seed: int):
    frame = credit_frame(n, seed=seed)
    frame["senior"] = (frame["age"] > 60).astype(int)  # a group named "1": a category, not the number 1
    return frame


def _version(model, users, C: float, train):
    from workers.engines.data_quality import profile

    buffer = io.BytesIO()
    joblib.dump(LogisticRegression(C=C, max_iter=500).fit(train[FEATURES], train["default"]), buffer)
    with audit_context(source="cli", actor=users.author):
        return registry.version_create(actor=users.author, model=model, artifact=make_artifact(buffer.getvalue()),
                                       training_profile=profile(train))  # fmt: skip


def _evaluate(version, users, kind, data):
    """Request the run as a user would, then run the worker's task body in-process."""
    from workers.evaluations import run_evaluation

    with audit_context(source="cli", actor=users.author):
        run = services.run_request(
            actor=users.author, version=version, kind=kind, data=csv_upload(data),
            target_column="" if kind == EvaluationKind.DATA_QUALITY else "default",
            sensitive_features=["sex", "senior"] if kind == EvaluationKind.FAIRNESS else [],
            parameters=PARAMETERS[kind],
        ).run  # fmt: skip
    assert run_evaluation(run.pk) == "succeeded"
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    return run


@pytest.fixture
def runs(model, users, monkeypatch):
    """v2 evaluated in every kind; v1 in the kinds the comparison pages show."""
    monkeypatch.setattr("governance.celery.app.send_task", lambda *a, **k: None)  # the test runs the task itself
    train, holdout = _frame(300, seed=1), _frame(240, seed=2)
    v1, v2 = _version(model, users, 0.1, train), _version(model, users, 1.0, train)
    latest = {kind: _evaluate(v2, users, kind, holdout) for kind in IN_PROCESS_KINDS}
    earlier = {kind: _evaluate(v1, users, kind, holdout) for kind in COMPARED}
    return {"latest": latest, "earlier": earlier}


def test_every_chart_on_evaluation_compare_and_home_pages_draws_data(live_server, users, runs):
    from playwright.sync_api import sync_playwright

    base = live_server.url
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    pages = {f"{kind} run": f"/evaluations/{run.pk}/" for kind, run in runs["latest"].items()}
    for kind in COMPARED:
        pages[f"{kind} comparison"] = f"/evaluations/compare/?a={runs['earlier'][kind].pk}&b={runs['latest'][kind].pk}"
    pages["home"] = "/"
    spelled_out = {k for run in runs["latest"].values() for k in run.result["summary"] if not measures.known(k)}
    assert not spelled_out, f"summary keys without a written label: {spelled_out}"
    failures, drawn = [], {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = _sign_in(browser, base, "viewer")
        csp_violations = watch_csp(page)  # Plotly draws under the Content-Security-Policy, or this says why not
        for name, path in pages.items():
            page.goto(base + path)
            try:
                drawn[name] = assert_charts_drew(page, at_least=1)
            except AssertionError as exc:  # every page's verdict, not only the first
                failures.append(f"{name}: {exc}")
            if name in ("fairness run", "performance run", "fairness comparison", "explainability comparison"):
                page.screenshot(path=str(SCREENSHOTS / f"charts-{name.replace(' ', '-')}.png"), full_page=True)

        # without JavaScript every chart card says where its numbers are; once drawn, the sentence goes
        fairness = pages["fairness run"]
        assert page.goto(base + fairness) and page.locator("[data-figure] .figure-fallback").count() == 0
        bare = browser.new_context(java_script_enabled=False, storage_state=page.context.storage_state())
        plain = bare.new_page()
        plain.goto(base + fairness)
        charts, sentences = plain.locator("[data-figure]").count(), plain.locator("[data-figure] .figure-fallback")
        assert charts >= 2 and sentences.count() == charts and sentences.first.is_visible()
        assert "JavaScript" in sentences.first.inner_text()
        bare.close()
        browser.close()
    assert not failures, "\n".join(failures)
    assert not csp_violations, "\n".join(csp_violations)

    # numeric-looking groups ("0", "1") and confusion-matrix labels stay categories on their axes
    confusion = [s for s in drawn["performance run"] if "confusion" in s["label"]]
    assert confusion and confusion[0]["axes"] == {"x": "category", "y": "category"}, confusion
    groups = [s for s in drawn["fairness run"] if "senior" in s["label"]]
    assert groups and all(s["axes"]["x"] == "category" for s in groups), groups


def _as_the_worker(work) -> None:
    """Run ``work`` as the worker would, on its own thread (Playwright's event loop owns this one)."""
    import threading

    from django.db import connection

    def target():
        try:
            with audit_context(source="task"):
                work()
        finally:
            connection.close()

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()


def test_the_status_badge_follows_the_polled_progress(live_server, users, version, monkeypatch):
    """The header badge said "Queued" while the progress bar moved: the poll now swaps it too."""
    from playwright.sync_api import sync_playwright

    monkeypatch.setattr("governance.celery.app.send_task", lambda *a, **k: None)  # nobody runs it but this test
    with audit_context(source="cli", actor=users.author):
        run = services.run_request(actor=users.author, version=version, kind=EvaluationKind.PERFORMANCE,
                                   data=csv_upload(_frame(60, seed=3)), target_column="default").run  # fmt: skip
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = _sign_in(browser, live_server.url, "viewer")
        page.goto(f"{live_server.url}/evaluations/{run.pk}/")
        assert page.inner_text("#run-status") == "Queued"
        _as_the_worker(lambda: (services.run_start(run_id=run.pk, host="h"),
                                services.run_progress(run_id=run.pk, percent=37, message="Scoring")))  # fmt: skip
        # htmx settles the swapped badge's classes a moment after its text: wait for both.
        # a function, not an expression: Playwright evaluates an expression with eval, which the page's
        # Content-Security-Policy refuses
        page.wait_for_function(
            "() => { const b = document.querySelector('#run-status');"
            " return b.textContent.trim() === 'Running' && b.classList.contains('run-running'); }"
        )
        assert "37%" in page.inner_text("#run-progress")
        assert page.locator("#run-status").count() == 1
        browser.close()
