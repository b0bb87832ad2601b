"""Regulatory mapping (issue 14, point 5): the frameworks ship with a fresh database, the report of a
model lists each item covered or missing with links to the evidence or to where to add it, and only
site administrators edit the mappings, each edit a kept revision and an audit event."""

from __future__ import annotations

import io

import joblib
import pytest
from sklearn.linear_model import LogisticRegression

from governance.approvals import services as approvals
from governance.audit.models import AuditEvent
from governance.compliance import evidence
from governance.compliance.models import Framework, MappingItem, MappingRevision
from governance.core.context import audit_context
from governance.evaluations import services as evaluations
from governance.evaluations.models import RunStatus
from governance.registry import services as registry
from tests.conftest import assert_error, make_artifact, signed_in
from tests.test_approvals import NO_GATES_ONE_APPROVER, decide, request
from tests.test_evaluations_api import credit_frame, csv_upload
from workers.evaluations import run_evaluation

pytestmark = pytest.mark.usefixtures("fast_passwords")

FEATURES = ["income", "debt", "age"]
WRITTEN = {
    "model_details": "Logistic regression on income, debt and age, trained by the credit risk team.",
    "intended_use": "Scoring retail credit applications; not for employment or insurance decisions.",
}


def govern(model, superuser, rules: dict, name: str = "Test policy"):
    """Give the model a site-wide policy with these rules (created by the site administrator)."""
    with audit_context(source="cli", actor=superuser):
        policy = approvals.policy_create(actor=superuser, name=name, rules=rules)
        approvals.policy_assign(actor=superuser, policy=policy, model=model)
    return policy


def _item(framework: str, reference: str) -> MappingItem:
    return MappingItem.objects.get(framework__key=framework, reference=reference)


def _row(body: dict, framework: str, reference: str) -> dict:
    section = next(f for f in body["frameworks"] if f["key"] == framework)
    return next(i for i in section["items"] if i["reference"] == reference)


def _check(row: dict, requirement: str) -> dict:
    return next(c for c in row["evidence"] if c["requirement"] == requirement)


@pytest.fixture
def world(users, superuser, model, make_version, django_capture_on_commit_callbacks):
    """credit-scoring v1 with two card sections written, a performance evaluation that really ran, and a
    review approved under a one-approver policy; v2 a bare draft."""
    govern(model, superuser, NO_GATES_ONE_APPROVER)
    frame = credit_frame(200)
    buffer = io.BytesIO()
    joblib.dump(LogisticRegression().fit(frame[FEATURES], frame["default"]), buffer)
    with audit_context(source="cli", actor=users.author):
        v1 = registry.version_create(actor=users.author, model=model, artifact=make_artifact(buffer.getvalue()))
        registry.card_save(actor=users.author, version=v1, sections=WRITTEN)
        run = evaluations.run_request(
            actor=users.author, version=v1, kind="performance", target_column="default", data=csv_upload(frame)
        ).run
    with django_capture_on_commit_callbacks(execute=True):
        run_evaluation(run.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    review = request(v1, users.author, environments=("staging",))
    decide(review, users.approver)
    review.refresh_from_db()
    assert review.status == "approved"
    v2 = make_version(model)
    return {"v1": v1, "v2": v2, "run": run, "review": review}


def test_a_fresh_database_has_the_four_frameworks_with_references_and_known_evidence(db):
    frameworks = {f.key: f for f in Framework.objects.all()}
    assert set(frameworks) == {"eu-ai-act", "nist-ai-rmf", "iso-42001", "sr-11-7"}
    expected = {
        ("eu-ai-act", "Art. 9"), ("eu-ai-act", "Art. 15"), ("eu-ai-act", "Annex IV §2(d)"),
        ("nist-ai-rmf", "GOVERN 1.1"), ("nist-ai-rmf", "MAP 2.3"), ("nist-ai-rmf", "MEASURE 2.11"),
        ("nist-ai-rmf", "MANAGE 4.1"), ("iso-42001", "A.6.2.4"), ("iso-42001", "A.7.4"),
        ("sr-11-7", "SR 11-7 V.1"),
    }  # fmt: skip
    found = set(MappingItem.objects.values_list("framework__key", "reference"))
    assert expected <= found
    assert {f"Art. {n}" for n in range(9, 16)} <= {ref for key, ref in found if key == "eu-ai-act"}
    for item in MappingItem.objects.all():
        assert item.evidence and not evidence.unknown(item.evidence), item
        assert len(item.summary) <= 600 and item.revision == 1
        assert item.revisions.get().summary == item.summary
    assert MappingItem.objects.filter(evidence__contains=["monitoring"]).exists()


def test_the_report_of_a_model_lists_covered_and_missing_items_with_links(api, users, model, world):
    client = api.as_user(users.viewer)
    r = client.get(f"/api/v1/compliance/models/{model.pk}/report/")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["version"]["id"] == world["v2"].pk and body["latest"] is True  # the newest by default
    r = client.get(f"/api/v1/compliance/models/{model.pk}/report/?version={world['v1'].pk}")
    body = r.json()
    assert body["version"]["number"] == 1 and body["latest"] is False

    # Art. 11 asks for two sections v1 has written, and the audit trail: covered, with links to each
    art11 = _row(body, "eu-ai-act", "Art. 11")
    assert art11["status"] == "covered"
    assert _check(art11, "card.intended_use")["link"] == f"/versions/{world['v1'].pk}/#card"
    audit = _check(art11, "audit")
    assert audit["status"] == "covered" and f"object_id={world['v1'].pk}" in audit["link"]
    # Art. 10 needs training data and a data-quality evaluation v1 lacks: missing, linking to where to add them
    art10 = _row(body, "eu-ai-act", "Art. 10")
    assert art10["status"] == "missing"
    assert _check(art10, "card.training_data")["link"] == f"/versions/{world['v1'].pk}/card/#id_training_data"
    assert _check(art10, "evaluation.data_quality")["link"] == f"/versions/{world['v1'].pk}/evaluate/"
    # the evaluation that ran and the approved review are linked as evidence
    measure = _row(body, "nist-ai-rmf", "MEASURE 2.3")
    assert _check(measure, "evaluation.performance")["status"] == "covered"
    assert _check(measure, "evaluation.performance")["link"] == f"/evaluations/{world['run'].pk}/"
    assert measure["status"] == "missing"  # quantitative analyses are not written
    go = _row(body, "nist-ai-rmf", "MANAGE 1.1")
    assert go["status"] == "covered" and _check(go, "approval")["link"] == f"/reviews/{world['review'].pk}/"
    # monitoring: never covered, and says why
    monitoring = _check(_row(body, "nist-ai-rmf", "MEASURE 2.4"), "monitoring")
    assert monitoring["status"] == "missing" and "no production monitoring" in monitoring["detail"]
    counts = {f["key"]: (f["covered"], f["missing"]) for f in body["frameworks"]}
    assert all(covered >= 1 and missing >= 1 for covered, missing in counts.values()), counts

    # every link of the report opens for the person who read it
    browser = signed_in(users.viewer)
    links = {c["link"] for f in body["frameworks"] for i in f["items"] for c in i["evidence"] if c["link"]}
    for link in sorted(links):
        if "/card/" in link or "/evaluate/" in link:
            continue  # forms for authors: the viewer may not write (their own tests)
        assert browser.get(link).status_code == 200, link

    # the bare draft v2: the approval is missing, and the report points at requesting a review
    bare = client.get(f"/api/v1/compliance/models/{model.pk}/report/").json()
    approval = _check(_row(bare, "nist-ai-rmf", "MANAGE 1.1"), "approval")
    assert approval["status"] == "missing" and approval["link"] == f"/versions/{world['v2'].pk}/request-review/"


def test_the_report_page_shows_the_same_items_and_links(users, model, world):
    page = signed_in(users.viewer).get(f"/compliance/models/{model.pk}/?version={world['v1'].pk}")
    assert page.status_code == 200
    html = page.content.decode()
    for text in ("EU AI Act", "NIST AI RMF", "ISO/IEC 42001", "SR 11-7", "Annex IV §2(g)", "Covered", "Missing"):
        assert text in html, text
    assert f'href="/evaluations/{world["run"].pk}/"' in html
    assert f'href="/reviews/{world["review"].pk}/"' in html
    assert f'href="/versions/{world["v1"].pk}/card/#id_training_data"' in html
    assert signed_in(users.viewer).get("/compliance/").status_code == 200


def test_only_those_who_see_the_model_read_its_report(api, users, model, version, other_team, make_model):
    assert api.as_user(users.viewer).get(f"/api/v1/compliance/models/{model.pk}/report/").status_code == 200
    assert_error(api.as_user(users.outsider).get(f"/api/v1/compliance/models/{model.pk}/report/"), 404)
    assert signed_in(users.outsider).get(f"/compliance/models/{model.pk}/").status_code == 404
    foreign = make_model("campaign-uplift", owner_team=other_team, actor=users.outsider)
    with audit_context(source="cli", actor=users.outsider):
        other = registry.version_create(actor=users.outsider, model=foreign, artifact=make_artifact())
    r = api.as_user(users.superuser).get(f"/api/v1/compliance/models/{model.pk}/report/?version={other.pk}")
    assert_error(r, 404, "version_not_found")
    assert_error(api.as_user(users.viewer).get(f"/api/v1/compliance/models/{model.pk}/report/?version=x"), 400)
    assert_error(api.as_user(users.viewer).get(f"/api/v1/compliance/models/{model.pk}/report/?colour=red"), 400)


def test_a_model_without_versions_is_reported_missing_everywhere_but_the_audit_trail(api, users, make_model):
    empty = make_model("no-versions-yet")
    body = api.as_user(users.viewer).get(f"/api/v1/compliance/models/{empty.pk}/report/").json()
    assert body["version"] is None
    for framework in body["frameworks"]:
        for item in framework["items"]:
            for check in item["evidence"]:
                assert (check["status"] == "covered") == (check["requirement"] == "audit"), check
            if any(c["requirement"] != "audit" for c in item["evidence"]):
                assert item["status"] == "missing"
    card = _check(_row(body, "eu-ai-act", "Art. 11"), "card.model_details")
    assert card["link"] == f"/models/{empty.pk}/versions/new/"


def test_editing_a_mapping_makes_a_revision_and_an_audit_event_and_others_get_403(api, users, model, version):
    item = _item("eu-ai-act", "Art. 12")
    url = f"/api/v1/compliance/mapping-items/{item.pk}/revisions/"
    change = {"evidence": ["audit"], "comment": "Serving logs are the operator's, not ours.", "based_on": 1}
    for role in ("viewer", "author", "approver", "admin", "auditor"):  # a team admin is no site administrator
        assert_error(api.as_user(getattr(users, role)).post(url, change), 403)
    assert MappingItem.objects.get(pk=item.pk).revision == 1 and item.revisions.count() == 1
    refused = AuditEvent.objects.filter(action="permission.denied", object_id=f"POST {url}")
    assert refused.count() == 5  # a refused write is evidence too

    r = api.as_user(users.superuser).post(url, change)
    assert r.status_code == 201, r.content
    assert r.json()["number"] == 2 and r.json()["created_by"] == "root"
    item.refresh_from_db()
    assert (item.revision, item.evidence) == (2, ["audit"])
    revisions = api.as_user(users.viewer).get(url).json()
    assert [rev["number"] for rev in revisions] == [2, 1]
    assert revisions[1]["evidence"] == ["audit", "monitoring"]  # the old revision stays readable
    event = AuditEvent.objects.get(action="compliance.item.revise", object_id=str(item.pk))
    assert event.actor == users.superuser and '"evidence":["audit","monitoring"]' in event.changes

    # the report judges by the new revision and says which one it used
    body = api.as_user(users.viewer).get(f"/api/v1/compliance/models/{model.pk}/report/").json()
    art12 = _row(body, "eu-ai-act", "Art. 12")
    assert art12["revision"] == 2 and art12["status"] == "covered"

    # a stale or empty change is a 409 and stores nothing
    assert_error(api.as_user(users.superuser).post(url, {"title": "Logs", "based_on": 1}), 409, "revision_stale")
    assert_error(api.as_user(users.superuser).post(url, {"evidence": ["audit"]}), 409, "revision_unchanged")
    assert_error(api.as_user(users.superuser).post(url, {"evidence": ["card.nonsense"]}), 400)
    assert_error(api.as_user(users.superuser).post(url, {"title": "  ...  "}), 400)
    assert MappingRevision.objects.filter(item=item).count() == 2

    # withdrawn: out of the report, still readable
    assert api.as_user(users.superuser).post(url, {"active": False}).status_code == 201
    body = api.as_user(users.viewer).get(f"/api/v1/compliance/models/{model.pk}/report/").json()
    assert "Art. 12" not in {i["reference"] for f in body["frameworks"] for i in f["items"]}
    assert api.as_user(users.viewer).get(f"/api/v1/compliance/mapping-items/{item.pk}/").json()["active"] is False


def test_adding_an_item_is_for_site_administrators_and_a_duplicate_reference_conflicts(api, users):
    framework = Framework.objects.get(key="iso-42001")
    body = {"framework": framework.pk, "reference": "A.6.2.3-bis", "title": "Design records",
            "summary": "Design decisions are written down as they are made.", "evidence": ["card.model_details"]}  # fmt: skip
    assert_error(api.as_user(users.admin).post("/api/v1/compliance/mapping-items/", body), 403)
    r = api.as_user(users.superuser).post("/api/v1/compliance/mapping-items/", body)
    assert r.status_code == 201, r.content
    assert r.json()["revision"] == 1 and r.json()["framework_key"] == "iso-42001"
    assert AuditEvent.objects.filter(action="compliance.item.create", object_id=str(r.json()["id"])).exists()
    again = api.as_user(users.superuser).post("/api/v1/compliance/mapping-items/", {**body, "reference": "a.6.2.3-BIS"})
    assert_error(again, 409, "duplicate_reference")
    missing = api.as_user(users.superuser).post("/api/v1/compliance/mapping-items/", {**body, "framework": 987654})
    assert_error(missing, 404, "framework_not_found")
    listed = api.as_user(users.viewer).get(f"/api/v1/compliance/mapping-items/?framework={framework.pk}").json()
    assert "A.6.2.3-bis" in {row["reference"] for row in listed["results"]}
    frameworks = api.as_user(users.viewer).get("/api/v1/compliance/frameworks/").json()
    assert [f["key"] for f in frameworks] == ["eu-ai-act", "nist-ai-rmf", "iso-42001", "sr-11-7"]
    assert {f["key"]: f["item_count"] for f in frameworks}["iso-42001"] == framework.items.count()


def test_the_mapping_pages_let_site_administrators_revise_and_refuse_everyone_else(users):
    item = _item("sr-11-7", "SR 11-7 V.2")
    page = f"/compliance/items/{item.pk}/"
    form = {"title": "Ongoing monitoring", "summary": "Once in use, the model is watched to confirm it still works.",
            "evidence": ["monitoring", "audit"], "active": "on", "comment": "", "based_on": "1"}  # fmt: skip
    admin = signed_in(users.admin)
    assert 'id="revise"' not in admin.get(page).content.decode()
    assert admin.post(page, form).status_code == 403
    assert MappingItem.objects.get(pk=item.pk).revision == 1
    assert admin.get(f"/compliance/frameworks/{item.framework_id}/items/new/").status_code == 403

    root = signed_in(users.superuser)
    assert 'id="revise"' in root.get(page).content.decode()
    r = root.post(page, form)
    assert r.status_code == 302, r.content.decode()[:2000]
    item.refresh_from_db()
    assert item.revision == 2 and item.evidence == ["audit", "monitoring"]
    html = root.get(page).content.decode()
    assert "r2 · Ongoing monitoring" in html and "r1 · Ongoing monitoring" in html
    created = root.post(
        f"/compliance/frameworks/{item.framework_id}/items/new/",
        {"reference": "SR 11-7 V (vendors)", "title": "Vendor models", "summary": "Bought models are validated too.",
         "evidence": ["approval"], "comment": "Added for the vendor scoring model."},
    )  # fmt: skip
    assert created.status_code == 302
    assert MappingItem.objects.filter(reference="SR 11-7 V (vendors)").exists()


def test_the_report_reads_a_fixed_number_of_queries_whatever_the_mappings_hold(api, users, model, world):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = api.as_user(users.viewer)
    url = f"/api/v1/compliance/models/{model.pk}/report/?version={world['v1'].pk}"
    client.get(url)  # the session and roles warm up
    with CaptureQueriesContext(connection) as first:
        assert client.get(url).status_code == 200
    framework = Framework.objects.get(key="nist-ai-rmf")
    for n in range(30):
        MappingItem.objects.create(
            framework=framework, reference=f"EXTRA {n}", position=100 + n, title="Extra", summary="An extra item.",
            evidence=["card.metrics", "evaluation.fairness", "approval"],
        )  # fmt: skip
    with CaptureQueriesContext(connection) as second:
        assert client.get(url).status_code == 200
    assert len(second) == len(first) <= 15, [q["sql"][:120] for q in second.captured_queries]
