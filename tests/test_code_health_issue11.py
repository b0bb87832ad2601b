"""Issue 11, code health found on the way: a policy naming a gate nothing can feed is refused at
save; the evaluation parameter ``sample_rows`` has one real limit, refused above it with a 400; the
"Edit model card" button shows only where the card can be edited."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse
from django.utils.html import escape

from governance.approvals import rules as R
from governance.approvals import selectors
from governance.approvals.models import Policy, PolicyRevision
from governance.evaluations.models import EvaluationRun
from governance.registry.models import ModelCard
from tests.conftest import assert_error, governed_state, move
from tests.test_evaluations_api import post as post_evaluation

pytestmark = pytest.mark.usefixtures("fast_passwords")

QUORUM = {"production": {"min_approvals": 1, "roles": [{"role": "approver"}], "expiry_days": 90}}
UNFED = [
    pytest.param({"kind": "latency", "host_class": "a100", "p95_ms_max": 30}, "latency", id="latency"),
    pytest.param({"kind": "gpu_memory"}, "gpu_memory", id="gpu-memory"),
    pytest.param({"kind": "evaluation", "evaluation": "benchmark"}, "evaluation: benchmark", id="benchmark"),
]


def _rules(*gates, auto=()) -> dict:
    return {
        "environments": QUORUM,
        "gates": [{"kind": "card_completeness", "min": 50}, *gates],
        "auto_evaluations": list(auto),
    }


def _assert_gate_not_fed(body: dict, field: str, named: str) -> None:
    assert body["code"] == "gate_not_fed", body
    assert f"'{named}'" in body["detail"] and "issue 15" in body["detail"], body["detail"]
    assert "nothing can feed" in body["detail"]
    assert field in body["fields"], body["fields"]


# --- 1. a policy that names a gate nothing can feed yet --------------------------------------------


@pytest.mark.parametrize(("gate", "named"), UNFED)
def test_a_policy_naming_a_gate_nothing_feeds_is_refused_at_save_by_the_api(api, users, gate, named):
    client = api.as_user(users.superuser)
    before = (governed_state(), Policy.objects.count(), PolicyRevision.objects.count())
    body = assert_error(client.post("/api/v1/policies/", {"name": "Fast", "rules": _rules(gate)}, format="json"), 400)
    _assert_gate_not_fed(body, "rules.gates.1", named)
    assert (governed_state(), Policy.objects.count(), PolicyRevision.objects.count()) == before

    # an update: adding the gate (a tightening, adopted at once) and dropping a gate with it (a
    # loosening, proposed) are both refused, and no revision is stored either way
    created = client.post("/api/v1/policies/", {"name": "Fast", "rules": _rules()}, format="json")
    assert created.status_code == 201, created.content
    pk = created.json()["id"]
    revisions = PolicyRevision.objects.filter(policy_id=pk).count()
    for rules in (_rules(gate), {"environments": QUORUM, "gates": [gate]}):
        body = assert_error(client.patch(f"/api/v1/policies/{pk}/", {"rules": rules}, format="json"), 400)
        assert body["code"] == "gate_not_fed", body
        assert PolicyRevision.objects.filter(policy_id=pk).count() == revisions
    assert client.get(f"/api/v1/policies/{pk}/").json()["rules"]["gates"] == R.dump(R.parse(_rules()))["gates"]


def test_a_benchmark_auto_evaluation_is_refused_and_each_unfed_entry_is_named(api, users):
    rules = _rules(
        {"kind": "gpu_memory"}, {"kind": "latency", "host_class": "h200", "p95_ms_max": 5}, auto=["benchmark"]
    )
    r = api.as_user(users.superuser).post("/api/v1/policies/", {"name": "All", "rules": rules}, format="json")
    body = assert_error(r, 400, "gate_not_fed")
    assert set(body["fields"]) == {"rules.gates.1", "rules.gates.2", "rules.auto_evaluations.0"}
    assert "(and 2 more like it)" in body["detail"]


@pytest.mark.parametrize(("gate", "named"), UNFED)
def test_a_policy_naming_a_gate_nothing_feeds_is_refused_at_save_by_the_form(login, users, gate, named):
    client = login(users.superuser)
    response = client.post(
        reverse("policy-create"), {"name": "Fast", "rules": json.dumps(_rules(gate)), "description": "", "comment": ""}
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert f"Nothing can feed the {escape(repr(named))} gate" in page and "issue 15" in page  # under the rules
    assert not Policy.objects.filter(name="Fast").exists()
    policy = Policy.objects.get(team=None, risk_tier="high")
    revision = policy.revision
    response = client.post(
        reverse("policy-edit", args=[policy.pk]),
        {"name": policy.name, "description": "", "comment": "", "rules": json.dumps(_rules(gate))},
    )
    assert response.status_code == 400 and "Nothing can feed" in response.content.decode()
    policy.refresh_from_db()
    assert policy.revision == revision and not policy.revisions.filter(number__gt=revision).exists()


def test_the_default_policies_and_the_demo_name_no_gate_nothing_feeds(db):
    from governance.registry.management.commands import seed_demo

    for policy in Policy.objects.all():
        R.refuse_unfed(selectors.current_rules(policy))  # raises gate_not_fed otherwise
    for tier in ("minimal", "limited", "high", "unacceptable"):
        R.refuse_unfed(R.parse(R.default_rules(tier)))
    R.refuse_unfed(R.parse(seed_demo.credit_rules()))


def test_a_revision_stored_before_still_reads_and_can_be_renamed(api, login, users):
    """Refused at save only: a policy stored with such a gate before still shows (the gate missing)."""
    client = api.as_user(users.superuser)
    pk = client.post("/api/v1/policies/", {"name": "Old", "rules": _rules()}, format="json").json()["id"]
    legacy = R.dump(R.parse(_rules({"kind": "gpu_memory"})))
    PolicyRevision.objects.filter(policy_id=pk, number=1).update(rules=legacy)
    assert client.get(f"/api/v1/policies/{pk}/").json()["rules"]["gates"][1]["kind"] == "gpu_memory"
    assert login(users.superuser).get(reverse("policy-detail", args=[pk])).status_code == 200
    r = client.patch(f"/api/v1/policies/{pk}/", {"name": "Older", "rules": legacy}, format="json")
    assert r.status_code == 200, r.content
    assert Policy.objects.get(pk=pk).name == "Older"


# --- 2. sample_rows: one limit, refused above it -----------------------------------------------------


def test_sample_rows_over_its_limit_is_refused_with_the_limit_named(api, users, version):
    client = api.as_user(users.author)
    before = governed_state()
    r = post_evaluation(client, version, kind="explainability", sensitive_features="[]",
                        parameters='{"sample_rows": 2001}')  # fmt: skip
    body = assert_error(r, 400, "invalid_parameters")
    assert "sample_rows" in body["detail"] and "2000" in body["detail"], body["detail"]
    assert governed_state() == before and not EvaluationRun.objects.exists()
    ok = post_evaluation(client, version, kind="explainability", sensitive_features="[]",
                         parameters='{"sample_rows": 2000}')  # fmt: skip
    assert ok.status_code == 201, ok.content
    assert ok.json()["parameters"]["sample_rows"] == 2000


# --- 3. the "Edit model card" button -----------------------------------------------------------------


def test_the_edit_model_card_button_shows_only_where_the_card_can_be_edited(login, users, version):
    author = login(users.author)
    card_url = reverse("card-edit", args=[version.pk])
    page = author.get(reverse("version-detail", args=[version.pk])).content.decode()
    assert card_url in page and "Edit model card" in page  # a draft, and an author

    viewer_page = login(users.viewer).get(reverse("version-detail", args=[version.pk])).content.decode()
    assert card_url not in viewer_page  # a draft, but a role that may not edit cards

    approved = move(version, "in_review", "approved", actor=users.approver)
    page = author.get(reverse("version-detail", args=[approved.pk])).content.decode()
    assert card_url not in page and "Edit model card" not in page and "Write the model card" not in page
    # the URL itself refuses the save with a clear 409, not a 500, and stores nothing
    cards = ModelCard.objects.filter(version=approved).count()
    response = author.post(card_url, {"intended_use": "Scoring loan applications in the EU." * 2, "comment": ""})
    assert response.status_code == 409
    assert "frozen" in response.content.decode()
    assert ModelCard.objects.filter(version=approved).count() == cards
    assert author.get(card_url).status_code < 500
