"""The review page shows the evidence as a reviewer needs it: each evaluation's key numbers (with the
policy's thresholds) and its main chart inline, a link to the full run, the frozen digests folded
away; evidence that arrives before anyone decided is news, not an alarm; and the version page says
who acts on a version in review instead of calling it final."""

from __future__ import annotations

import io
import re

import joblib
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from sklearn.linear_model import LogisticRegression

from governance.approvals import services
from governance.core.context import audit_context
from governance.evaluations import services as evaluations
from governance.evaluations.models import EvaluationRun
from governance.registry import services as registry
from tests.conftest import make_artifact, move
from tests.test_approvals import decide, full_card, request
from tests.test_evaluations_api import credit_frame, csv_upload
from workers.evaluations import run_evaluation

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords")]

FEATURES = ["income", "debt", "age"]
EVIDENCE_RULES = {
    "environments": {"production": {"min_approvals": 2, "roles": [{"role": "approver"}, {"role": "reviewer"}]}},
    "gates": [
        {"kind": "metric", "metric": "roc_auc", "min": 0.6},
        {"kind": "fairness", "features": ["sex"], "dp_ratio_min": 0.8, "eo_diff_max": 0.2},
    ],
}
# what each kind is asked to run on: the model's own columns, plus the target and the sensitive feature
PLANS = {
    "performance": ({}, []),
    "fairness": ({"bootstrap": 20}, ["sex"]),
    "explainability": ({"lime_rows": 1}, []),
}


def trained_version(model, users):
    frame = credit_frame(300)
    buffer = io.BytesIO()
    joblib.dump(LogisticRegression(max_iter=500).fit(frame[FEATURES], frame["default"]), buffer)
    with audit_context(source="cli", actor=users.author):
        version = registry.version_create(
            actor=users.author, model=model, artifact=make_artifact(buffer.getvalue()), metrics={"accuracy": 0.9}
        )
    full_card(version, users.author)
    return version


def evaluate(version, users, kind: str) -> EvaluationRun:
    """A real evaluation run in-process by the worker's task (its engines on a real model)."""
    parameters, sensitive = PLANS[kind]
    frame = credit_frame(300)[[*FEATURES, *sensitive, "default"]]
    with audit_context(source="cli", actor=users.author):
        run = evaluations.run_request(
            actor=users.author, version=version, kind=kind, data=csv_upload(frame), target_column="default",
            sensitive_features=sensitive, parameters=parameters,
        ).run  # fmt: skip
    assert run_evaluation(run.pk) == "succeeded", EvaluationRun.objects.get(pk=run.pk).error_message
    run.refresh_from_db()
    return run


def make_evidence_review(users, superuser, model):
    """credit-scoring v1 with a real model, its fairness, performance and explainability evaluations,
    up for review under a policy with a metric and a fairness gate: (the review, the runs by kind)."""
    with audit_context(source="cli", actor=superuser):
        policy = services.policy_create(actor=superuser, name="Evidence policy", rules=EVIDENCE_RULES)
        services.policy_assign(actor=superuser, policy=policy, model=model)
    version = trained_version(model, users)
    runs = {kind: evaluate(version, users, kind) for kind in PLANS}
    return request(version, users.author), runs


@pytest.fixture
def evidence_review(users, superuser, model):
    return make_evidence_review(users, superuser, model)


def _evaluations_card(page: str) -> str:
    return page.split('id="evaluations"', 1)[1].split('id="evidence"', 1)[0]


def test_the_review_shows_key_numbers_and_main_charts_inline_and_folds_the_digests(login, users, evidence_review):
    review, runs = evidence_review
    page = login(users.reviewer).get(reverse("review-detail", args=[review.pk])).content.decode()
    card = _evaluations_card(page)

    # no raw JSON dump of the manifest's evaluations anywhere
    assert '<pre class="json">' not in page and '"result_digest"' not in page
    # performance: its numbers, the policy's threshold beside ROC AUC
    auc = runs["performance"].result["metrics"]["roc_auc"]
    assert "ROC AUC" in card and f"{auc:.3f}" in card and "policy ≥ 0.6" in card
    # fairness: disparities per sensitive feature with the gate's thresholds, the gated analysis marked
    disparities = runs["fairness"].result["overall"]
    for label in ("DP ratio", "DP difference", "EO difference"):
        assert label in card
    assert f"{disparities['demographic_parity_ratio']:.3f}" in card
    assert "≥ 0.8" in card and "≤ 0.2" in card and "gated" in card
    # explainability: the top features by mean |SHAP|
    top = runs["explainability"].result["ranking"][0]
    assert "top features by mean |SHAP|" in card and top in card
    # one main chart per evaluation, each with its spec beside it
    figures = re.findall(r'data-figure="([^"]+)"', card)
    assert len(figures) == 3 and all(f'id="{f}"' in card for f in figures)
    assert any("selection_rate" in f for f in figures) and any("importance" in f for f in figures)
    assert any(f.endswith("-roc") for f in figures)
    # each evaluation links to its run page, never back to this review
    for run in runs.values():
        assert f'href="{run.get_absolute_url()}">Open the full evaluation →' in card
    assert review.get_absolute_url() not in card
    # the digests an approval binds to: there, folded in a details block
    details = card.split('<details class="ev-digests">', 1)[1].split("</details>", 1)[0]
    for run in runs.values():
        assert run.result_digest[:17] in details
    # the plotly bundle and the figure script are on the page
    assert "js/figures.js" in page and "plotly" in page


def test_gate_lines_on_the_review_link_to_evaluations_and_not_back_to_the_review(login, users, evidence_review):
    review, runs = evidence_review
    page = login(users.reviewer).get(reverse("review-detail", args=[review.pk])).content.decode()
    gate = page.split('id="gate"', 1)[1].split('id="decisions"', 1)[0]
    links = re.findall(r'<a href="([^"]+)" class="gl-link">([^<]+)</a>', gate)
    assert links, gate[:500]
    assert all(href != review.get_absolute_url() for href, _ in links)
    assert (runs["fairness"].get_absolute_url(), "evaluation →") in links
    assert (runs["performance"].get_absolute_url(), "evaluation →") in links
    # on the version page, the same quorum lines lead to the review
    version_page = login(users.reviewer).get(review.version.get_absolute_url()).content.decode()
    assert f'<a href="{review.get_absolute_url()}" class="gl-link">review →</a>' in version_page


def test_the_review_page_query_count_does_not_grow_with_evaluations(login, users, superuser, model):
    with audit_context(source="cli", actor=superuser):
        policy = services.policy_create(actor=superuser, name="Evidence policy", rules=EVIDENCE_RULES)
        services.policy_assign(actor=superuser, policy=policy, model=model)
    version = trained_version(model, users)
    evaluate(version, users, "performance")
    review = request(version, users.author)
    client = login(users.reviewer)
    url = reverse("review-detail", args=[review.pk])

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(url).status_code == 200
        return len(ctx.captured_queries)

    one = count()
    evaluate(version, users, "fairness")  # each joins the freeze (nobody has decided yet)
    evaluate(version, users, "explainability")
    review.refresh_from_db()
    assert len(review.evidence["evaluations"]) == 3
    assert count() == one


def test_only_frozen_runs_of_the_reviewed_version_are_shown(login, users, evidence_review, model):
    review, runs = evidence_review
    other = trained_version(model, users)
    foreign_run = evaluate(other, users, "performance")
    # a tampered manifest naming another version's run shows nothing of it
    review.evidence["evaluations"].append({"kind": "performance", "run": foreign_run.pk, "result_digest": "x"})
    review.save(update_fields=["evidence"])
    card = _evaluations_card(login(users.reviewer).get(reverse("review-detail", args=[review.pk])).content.decode())
    assert foreign_run.get_absolute_url() not in card and f"Run #{foreign_run.pk} is not available" in card


def test_a_run_still_going_is_named_and_joins_without_alarm_when_it_finishes(login, users, superuser, model):
    with audit_context(source="cli", actor=superuser):
        policy = services.policy_create(actor=superuser, name="Evidence policy", rules=EVIDENCE_RULES)
        services.policy_assign(actor=superuser, policy=policy, model=model)
    version = trained_version(model, users)
    evaluate(version, users, "performance")
    frame = credit_frame(300)[[*FEATURES, "sex", "default"]]
    with audit_context(source="cli", actor=users.author):
        queued = evaluations.run_request(
            actor=users.author, version=version, kind="fairness", data=csv_upload(frame), target_column="default",
            sensitive_features=["sex"], parameters={"bootstrap": 20},
        ).run  # fmt: skip
    review = request(version, users.author)
    client = login(users.reviewer)
    url = reverse("review-detail", args=[review.pk])
    page = client.get(url).content.decode()
    assert "1 still running" in page and f'href="{queued.get_absolute_url()}"' in page

    assert run_evaluation(queued.pk) == "succeeded"
    review.refresh_from_db()
    assert review.freeze == 2 and review.stale_reason
    page = client.get(url).content.decode()
    assert "still running" not in _evaluations_card(page)
    assert "Evidence arrived after the review was requested" in page and review.stale_reason in page
    assert "no longer count" not in page and "alert-warning stale-notice" not in page


def test_evidence_that_dismisses_a_decision_is_still_a_warning(login, users, evidence_review):
    review, _runs = evidence_review
    decide(review, users.reviewer)
    with audit_context(source="task"):
        registry.version_record_inspection(
            version_id=review.version.pk, metadata={"sha256": review.version.artifact_sha256, "size": 1}
        )
    page = login(users.approver).get(reverse("review-detail", args=[review.pk])).content.decode()
    assert "The evidence changed after the review was requested" in page and "no longer count" in page


# --- the version page's next step ---------------------------------------------------------------------


def test_a_viewer_of_a_version_in_review_reads_who_acts_not_final(login, users, version):
    move(version, "in_review", actor=users.author)
    page = login(users.viewer).get(version.get_absolute_url()).content.decode()
    lifecycle = page.split('id="lifecycle"', 1)[1].split('<div class="card">', 1)[0]
    assert "is final" not in lifecycle
    assert "Waiting for review" in lifecycle and "Reviewers and approvers of Credit Risk" in lifecycle


def test_only_a_retired_version_is_called_final(login, users, version):
    move(version, "retired", actor=users.author)
    page = login(users.viewer).get(version.get_absolute_url()).content.decode()
    assert "Retired is final." in page


def test_a_rejected_version_is_not_final_it_can_still_be_retired(login, users, version):
    move(version, "in_review", "rejected", actor=users.author)
    page = login(users.viewer).get(version.get_absolute_url()).content.decode()
    lifecycle = page.split('id="lifecycle"', 1)[1].split('<div class="card">', 1)[0]
    assert "is final" not in lifecycle and "Retire" in lifecycle and "needs" in lifecycle
