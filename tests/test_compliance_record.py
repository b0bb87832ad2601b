"""What was decided and live (issue 14, point 4): the reviews closed in a period with who decided and
under which policy revision, the versions approved or deployed at the period's end, the open
exceptions; as JSON, a page and a PDF, for the teams the reader can see."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from pypdf import PdfReader

from governance.approvals import services as approvals
from governance.approvals.rules import DEFAULT_CHECKLIST
from governance.core.context import audit_context
from governance.registry import services as registry
from governance.registry.models import ModelVersion, Stage
from tests.conftest import assert_error, make_artifact, move, signed_in
from tests.test_approvals import NO_GATES_ONE_APPROVER, decide, full_card, request
from tests.test_compliance_mapping import govern

pytestmark = pytest.mark.usefixtures("fast_passwords")
URL = "/api/v1/compliance/decision-record/"


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


@pytest.fixture
def history(users, superuser, model, make_model, make_version, other_team):
    """credit-scoring under the limited tier's default policy: v1 approved for staging, then the model moved
    to the minimal tier (v1's review reopens under the minimal default) and approved again, then deployed;
    v2 rejected under a one-approver policy of its own model; v3 waiting in review. The other team's model
    has an approved version the credit team must not see."""
    v1 = make_version(model)
    full_card(v1, users.author)
    with audit_context(source="cli", actor=users.reviewer):
        for key, _ in DEFAULT_CHECKLIST:
            approvals.checklist_tick(actor=users.reviewer, version=v1, item=key, note="Checked.")
    first = request(v1, users.author, environments=("staging",))
    decide(first, users.approver, comment="Good enough for staging.")
    first.refresh_from_db()
    assert first.status == "approved" and first.policy_revision.policy.name == "Limited risk (default)"
    with audit_context(source="cli", actor=users.approver):
        registry.model_retier(actor=users.approver, model=model, risk_tier="minimal", reason="Internal use only.")
    first.refresh_from_db()
    assert first.status == "open" and first.policy_revision.policy.name == "Minimal risk (default)"
    decide(first, users.approver, comment="Approved again under the minimal tier.")
    v1 = move(ModelVersion.objects.get(pk=v1.pk), Stage.DEPLOYED, actor=users.operator)

    gated = make_model("limit-setter")
    govern(gated, superuser, NO_GATES_ONE_APPROVER, name="One approver")
    v2 = make_version(gated)
    rejected = request(v2, users.author)
    decide(rejected, users.approver, decision="reject", comment="The training window misses 2020.")
    v3 = make_version(gated)
    waiting = request(v3, users.author)

    foreign = make_model("campaign-uplift", owner_team=other_team, actor=users.outsider)
    govern(foreign, superuser, NO_GATES_ONE_APPROVER, name="Marketing policy")
    return {"v1": v1, "v2": v2, "v3": v3, "first": first, "rejected": rejected, "waiting": waiting, "foreign": foreign}


def _of(rows: list[dict], **match) -> list[dict]:
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def test_the_record_lists_what_was_approved_and_rejected_by_whom_under_which_policy(api, users, history):
    r = api.as_user(users.auditor).get(URL, {"days": 1})
    assert r.status_code == 200, r.content
    body = r.json()
    assert (body["since"], body["until"], body["days"]) == (str(_today()), str(_today()), 1)
    assert [t["name"] for t in body["teams"]] == ["Credit Risk"]

    closures = _of(body["decisions"], review=history["first"].pk)
    assert [c["outcome"] for c in closures] == ["approved", "approved"]
    # the first approval was judged under the limited tier's policy, though the review is under minimal now
    assert [c["policy_name"] for c in closures] == ["Limited risk (default)", "Minimal risk (default)"]
    assert [[d["comment"] for d in c["decisions"]] for c in closures] == [
        ["Good enough for staging."],
        ["Approved again under the minimal tier."],
    ]
    assert all(c["decisions"][0]["by"] == "approver" and c["decisions"][0]["decision"] == "approve" for c in closures)
    assert closures[0]["environments"] == ["staging"] and closures[0]["closed_by"] == "approver"
    rejected = _of(body["decisions"], review=history["rejected"].pk)[0]
    assert (rejected["outcome"], rejected["model_name"], rejected["version_number"]) == ("rejected", "limit-setter", 1)
    assert rejected["policy_name"] == "One approver" and rejected["policy_revision"] == 1
    assert rejected["decisions"][0]["comment"] == "The training window misses 2020."
    assert body["decisions_total"] == 3

    live = {(row["model_name"], row["version_number"]): row for row in body["live"]}
    assert set(live) == {("credit-scoring", 1)}
    assert live[("credit-scoring", 1)]["stage"] == "deployed"
    assert live[("credit-scoring", 1)]["approved_for"] == ["staging"]
    assert live[("credit-scoring", 1)]["review"] == history["first"].pk

    open_reviews = _of(body["exceptions"], kind="open_review")
    assert [x["review"] for x in open_reviews] == [history["waiting"].pk]
    assert "Charter has no serving records yet" in " ".join(body["notes"])


def test_a_day_before_anything_happened_has_nothing_decided_or_live(api, users, history):
    body = api.as_user(users.auditor).get(URL, {"until": str(_today() - dt.timedelta(days=1)), "days": 7}).json()
    assert body["decisions"] == [] and body["live"] == [] and body["exceptions"] == []
    assert body["decisions_total"] == 0 and body["live_total"] == 0


def test_the_record_shows_only_the_teams_the_reader_can_see(api, users, history, other_team):
    with audit_context(source="cli", actor=users.outsider):
        version = registry.version_create(actor=users.outsider, model=history["foreign"], artifact=make_artifact())
    body = api.as_user(users.outsider).get(URL, {"days": 1}).json()
    assert [t["name"] for t in body["teams"]] == ["Marketing"]
    assert body["decisions"] == [] and body["live"] == [] and body["exceptions"] == []
    assert version.model.team == other_team
    everything = api.as_user(users.superuser).get(URL, {"days": 1}).json()
    assert {t["name"] for t in everything["teams"]} == {"Credit Risk", "Marketing"}


def test_the_pdf_opens_and_its_text_names_the_versions_and_deciders(api, users, history):
    r = api.as_user(users.auditor).get(URL + "pdf/", {"days": 1})
    assert r.status_code == 200 and r["Content-Type"] == "application/pdf"
    assert r["Content-Disposition"].startswith('attachment; filename="charter-decisions-')
    reader = PdfReader(io.BytesIO(r.content))
    text = " ".join(page.extract_text() for page in reader.pages)
    for expected in ("credit-scoring v1", "limit-setter v1", "limit-setter v2", "approver", "Limited risk (default) r1",
                     "Minimal risk (default) r1", "The training window misses 2020", "open review"):  # fmt: skip
        assert expected in text, (expected, text[:3000])
    assert reader.metadata.title.startswith("Charter decision record")
    page = signed_in(users.auditor).get("/compliance/decisions.pdf", {"days": "1"})
    assert page.status_code == 200 and page.content.startswith(b"%PDF")


def test_the_page_shows_the_record_and_refuses_a_bad_date(users, history):
    client = signed_in(users.viewer)
    html = client.get("/compliance/decisions/", {"days": "1"}).content.decode()
    for expected in ("credit-scoring v1", "limit-setter v1", "Limited risk (default)", "Review open", "Download PDF"):
        assert expected in html, expected
    assert client.get("/compliance/decisions/", {"until": "2026-02-30"}).status_code == 400
    assert client.get("/compliance/decisions/").status_code == 200


@pytest.mark.parametrize(
    "query",
    [{"until": "2026-13-01"}, {"until": "20260101"}, {"until": "2026-W01-1"}, {"days": "0"}, {"days": "3661"},
     {"days": "ten"}],
)  # fmt: skip
def test_a_bad_period_is_a_400_naming_it(api, users, query):
    body = assert_error(api.as_user(users.viewer).get(URL, query), 400)
    assert set(query) & set(body.get("fields", {})), body
    assert_error(api.as_user(users.viewer).get(URL + "pdf/", query), 400)


def test_an_unknown_parameter_is_refused_not_ignored(api, users):
    body = assert_error(api.as_user(users.viewer).get(URL, {"since": "2026-01-01"}), 400, "unknown_field")
    assert "since" in body["detail"]


@pytest.mark.parametrize(
    "query",
    [{"until": "9999-12-31", "days": "3660"}, {"until": "0001-01-01", "days": "3660"}, {"until": "", "days": ""}],
)
def test_the_ends_of_the_calendar_and_empty_values_are_answered(api, users, history, query):
    r = api.as_user(users.viewer).get(URL, query)
    assert r.status_code == 200, r.content
