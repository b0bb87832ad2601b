"""Issue 14: a model's and a version's audit trail hold every event about them, not only the events
whose object is the model or version row (a model's trail held one event, ``model.create``).

Card revisions, review requests, decisions and evaluation runs are recorded under their own object
(``approvals.decision:7``); the trail follows them back to their version and model. Checklist ticks
and refusals name the version itself. The trails' schema lists what they read (a cursor and a page
size), not the model and version lists' filters, which used to filter the object itself away.
"""

from __future__ import annotations

import io

import pytest
import yaml
from django.core.management import call_command

from governance.approvals import services as approvals
from governance.audit.models import AuditEvent
from governance.core.context import audit_context
from governance.core.errors import DomainError
from governance.registry import services as registry
from tests.test_approvals import NO_GATES_ONE_APPROVER
from tests.test_evaluations_api import post as request_evaluation

pytestmark = pytest.mark.usefixtures("fast_passwords")


def _trail(client, url: str, page_size: int = 200) -> list[dict]:
    found, page = [], client.get(url, {"page_size": page_size}).json()
    while True:
        found += page["results"]
        if not page["next"]:
            return found
        page = client.get(page["next"]).json()


@pytest.fixture
def worked(api, users, superuser, make_model, make_version):
    """A version taken through a card, a review with a decision, a refused checklist tick and an
    evaluation; a second version and another model of the same team, for what must stay out."""
    model = make_model("credit-scoring")
    version = make_version(model)
    other_version = make_version(model)
    bystander = make_model("bystander")
    make_version(bystander)
    with audit_context(source="cli", actor=superuser):
        policy = approvals.policy_create(actor=superuser, name="One approver", rules=NO_GATES_ONE_APPROVER)
        approvals.policy_assign(actor=superuser, policy=policy, model=model)
    with audit_context(source="cli", actor=users.author):
        card = registry.card_save(actor=users.author, version=version, sections={"model_details": "Trees."})
        review = approvals.request_review(actor=users.author, version=version, environments=["production"])
        with pytest.raises(DomainError):  # the author may not tick: refused, and the refusal recorded
            approvals.checklist_tick(actor=users.author, version=version, item="nothing-such")
    with audit_context(source="cli", actor=users.approver):
        decision = approvals.request_decide(actor=users.approver, request=review, decision="approve")
    response = request_evaluation(api.as_user(users.author), version)
    assert response.status_code == 201, response.content[:300]
    return {
        "model": model, "version": version, "other_version": other_version, "bystander": bystander,
        "card": card, "review": review, "decision": decision, "run_id": response.json()["id"],
    }  # fmt: skip


def _refs(events: list[dict]) -> set[tuple[str, str, str]]:
    return {(e["action"], e["object_type"], e["object_id"]) for e in events}


def test_the_model_trail_includes_version_card_review_decision_checklist_and_evaluation_events(api, users, worked):
    w = worked
    trail = _trail(api.as_user(users.viewer), f"/api/v1/models/{w['model'].pk}/audit/")
    expected = {
        ("model.create", "registry.registeredmodel", str(w["model"].pk)),
        ("model.policy", "registry.registeredmodel", str(w["model"].pk)),
        ("version.create", "registry.modelversion", str(w["version"].pk)),
        ("version.create", "registry.modelversion", str(w["other_version"].pk)),
        ("card.save", "registry.modelcard", str(w["card"].pk)),
        ("review.request", "approvals.approvalrequest", str(w["review"].pk)),
        ("review.decide", "approvals.decision", str(w["decision"].pk)),
        ("review.approved", "approvals.approvalrequest", str(w["review"].pk)),
        ("checklist.tick.refused", "registry.modelversion", str(w["version"].pk)),
        ("evaluation.request", "evaluations.evaluationrun", str(w["run_id"])),
    }
    assert expected <= _refs(trail), expected - _refs(trail)
    # nothing of the other model, newest first, and exactly the events about this model's objects
    about = AuditEvent.objects.filter(team_id=w["model"].team_id).exclude(object_id=str(w["bystander"].pk))
    assert [e["seq"] for e in trail] == sorted((e["seq"] for e in trail), reverse=True)
    assert str(w["bystander"].pk) not in {
        e["object_id"] for e in trail if e["object_type"] == "registry.registeredmodel"
    }
    bystander_versions = {str(v.pk) for v in w["bystander"].versions.all()}
    assert not {e["object_id"] for e in trail if e["object_type"] == "registry.modelversion"} & bystander_versions
    assert len(trail) == len({e["id"] for e in trail}) <= about.count()


def test_the_version_trail_includes_its_own_parts_and_nothing_of_its_siblings(api, users, worked):
    w = worked
    trail = _trail(api.as_user(users.viewer), f"/api/v1/versions/{w['version'].pk}/audit/")
    actions = {e["action"] for e in trail}
    assert {"version.create", "card.save", "review.request", "review.decide", "review.approved",
            "checklist.tick.refused", "evaluation.request"} <= actions  # fmt: skip
    assert "model.create" not in actions
    assert str(w["other_version"].pk) not in {
        e["object_id"] for e in trail if e["object_type"] == "registry.modelversion"
    }
    sibling = _trail(api.as_user(users.viewer), f"/api/v1/versions/{w['other_version'].pk}/audit/")
    assert [e["action"] for e in sibling] == ["version.create"]


def test_a_trail_pages_through_every_event_and_stays_in_its_team(api, users, worked):
    w = worked
    url = f"/api/v1/models/{w['model'].pk}/audit/"
    whole = _trail(api.as_user(users.viewer), url)
    paged = _trail(api.as_user(users.viewer), url, page_size=2)
    assert [e["id"] for e in paged] == [e["id"] for e in whole]
    assert api.as_user(users.outsider).get(url).status_code == 404


def test_the_model_and_version_pages_show_the_whole_trail(login, users, worked):
    w = worked
    model_page = login(users.viewer).get(w["model"].get_absolute_url()).content.decode()
    version_page = login(users.viewer).get(w["version"].get_absolute_url()).content.decode()
    for page in (model_page, version_page):
        for verb in ("requested a review", "recorded a review decision", "requested an evaluation"):
            assert verb in page, verb


def test_a_big_models_trail_walks_the_log_and_finds_the_same_events(api, users, worked, settings, monkeypatch):
    """Past ``PROBE_MAX_VERSIONS`` versions the trail is read another way (see the selector): same answer."""
    from governance.audit import selectors

    url = f"/api/v1/models/{worked['model'].pk}/audit/"
    probed = _trail(api.as_user(users.viewer), url)
    monkeypatch.setattr(selectors, "PROBE_MAX_VERSIONS", 0)
    walked = _trail(api.as_user(users.viewer), url)
    assert [e["id"] for e in walked] == [e["id"] for e in probed] and len(probed) > 10


@pytest.fixture(scope="module")
def schema(tmp_path_factory):
    path = tmp_path_factory.mktemp("schema") / "openapi.yaml"
    call_command("spectacular", "--validate", "--file", str(path), stdout=io.StringIO())
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("path", ["/api/v1/models/{id}/audit/", "/api/v1/versions/{id}/audit/"])
def test_the_trails_schema_lists_only_what_they_read(schema, path):
    operation = schema["paths"][path]["get"]
    assert {p["name"] for p in operation["parameters"] if p["in"] == "query"} == {"cursor", "page_size"}
    body = operation["responses"]["200"]["content"]["application/json"]["schema"]
    listed = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    assert {"next", "previous", "results"} <= set(listed["properties"]) and "count" not in listed["properties"]


def test_a_list_filter_sent_to_a_trail_no_longer_hides_the_object(api, users, worked):
    """The version list's filters used to apply to the trail's own lookup: ``?stage=approved`` on a
    draft version's trail was a 404."""
    version = worked["other_version"]
    r = api.as_user(users.viewer).get(f"/api/v1/versions/{version.pk}/audit/", {"stage": "approved", "model": 999})
    assert r.status_code == 200 and [e["action"] for e in r.json()["results"]] == ["version.create"]
