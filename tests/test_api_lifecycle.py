"""The lifecycle over the API: every step of ``TRANSITIONS`` by each role, and every step it lacks.

A role the table allows gets 200 and one ``version.transition`` event; a team role it does not
allow gets 403 and the stage stays; the outsider gets 404. A step the table does not list is a
409 ``transition_not_allowed`` whoever asks, and the stage stays. A step that belongs to the
approval workflow (into and out of review) is a 409 ``approval_workflow_required`` by hand,
whoever asks, site administrators included; one that follows serving (into and out of "deployed")
is a 409 ``deploy_through_serving``.
"""

from __future__ import annotations

import json

import pytest

from governance.accounts.models import Role
from governance.audit.models import AuditEvent
from governance.registry.models import TRANSITIONS, ModelVersion, Stage
from tests.conftest import assert_error, governed_state, move

pytestmark = pytest.mark.usefixtures("fast_passwords")

# How an admin walks a fresh draft to each stage.
PATH_TO: dict[str, tuple[str, ...]] = {
    Stage.DRAFT: (),
    Stage.IN_REVIEW: (Stage.IN_REVIEW,),
    Stage.CHANGES_REQUESTED: (Stage.IN_REVIEW, Stage.CHANGES_REQUESTED),
    Stage.REJECTED: (Stage.IN_REVIEW, Stage.REJECTED),
    Stage.APPROVED: (Stage.IN_REVIEW, Stage.APPROVED),
    Stage.DEPLOYED: (Stage.IN_REVIEW, Stage.APPROVED, Stage.DEPLOYED),
    Stage.DEPRECATED: (Stage.IN_REVIEW, Stage.APPROVED, Stage.DEPRECATED),
    Stage.RETIRED: (Stage.RETIRED,),
}

ROLES = [*Role.values, "superuser", "outsider"]

LEGAL = [
    pytest.param(
        source,
        target,
        role,
        200 if role == "superuser" or role in step.roles else 404 if role == "outsider" else 403,
        id=f"{source}->{target}-{role}",
    )
    for source, steps in TRANSITIONS.items()
    for target, step in steps.items()
    if not (step.by_review or step.by_serving)
    for role in ROLES
]

SERVING_STEPS = [
    pytest.param(source, target, id=f"{source}->{target}")
    for source, steps in TRANSITIONS.items()
    for target, step in steps.items()
    if step.by_serving
]

REVIEW_STEPS = [
    pytest.param(source, target, id=f"{source}->{target}")
    for source, steps in TRANSITIONS.items()
    for target, step in steps.items()
    if step.by_review
]

ILLEGAL = [
    pytest.param(source, target, id=f"{source}->{target}")
    for source in Stage.values
    for target in Stage.values
    if target not in TRANSITIONS[source]
]


def test_every_stage_is_reachable_by_the_paths_used_here():
    assert set(PATH_TO) == set(Stage.values) == set(TRANSITIONS)
    for stage, path in PATH_TO.items():
        current = Stage.DRAFT
        for step in path:
            assert step in TRANSITIONS[current], (stage, path)
            current = step
        assert current == stage


@pytest.fixture
def at_stage(version, users):
    def put(stage: str) -> ModelVersion:
        return move(version, *PATH_TO[stage], actor=users.admin)

    return put


def _transition(client, version, to: str, **extra):
    return client.post(
        f"/api/v1/versions/{version.pk}/transition/", {"to": to, "reason": "because"}, format="json", **extra
    )


def _allowed_role(source: str, target: str) -> str:
    roles = TRANSITIONS[source][target].roles - {Role.ADMIN}
    return sorted(roles)[0] if roles else Role.ADMIN


@pytest.mark.parametrize(("source", "target", "role", "expected"), LEGAL)
def test_each_step_of_the_lifecycle_by_each_role(api, users, at_stage, source, target, role, expected):
    version = at_stage(source)
    actor = getattr(users, role)
    client = api.as_user(actor)
    before = governed_state()

    r = _transition(client, version, target, HTTP_X_REQUEST_ID=f"step-{role}")

    if expected == 200:
        assert r.status_code == 200, r.content[:500]
        body = r.json()
        assert body["stage"] == target
        assert body["allowed_transitions"] == list(TRANSITIONS[target])
        version.refresh_from_db()
        assert version.stage == target
        event = AuditEvent.objects.get(request_id=r["X-Request-ID"])
        assert r["X-Request-ID"] == f"step-{role}"
        assert (event.action, event.actor, event.source) == ("version.transition", actor, "api")
        assert event.object_id == str(version.pk) and event.team_id == version.model.team_id
        changes = json.loads(event.changes)
        assert changes["before"] == {"stage": source}
        assert changes["after"] == {"stage": target}
        assert changes["reason"] == "because"
        return

    assert_error(r, expected, "permission_denied" if expected == 403 else "not_found")
    assert governed_state() == before
    version.refresh_from_db()
    assert version.stage == source
    # 403 before 200: a role the table names takes the same step.
    allowed = getattr(users, _allowed_role(source, target))
    again = _transition(api.as_user(allowed), version, target)
    assert again.status_code == 200, again.content[:500]
    assert again.json()["stage"] == target


@pytest.mark.parametrize(("source", "target"), REVIEW_STEPS)
def test_review_steps_are_never_taken_by_hand(api, users, at_stage, source, target):
    version = at_stage(source)
    clients = {role: api.as_user(getattr(users, role)) for role in ("author", "reviewer", "approver", "admin",
                                                                    "superuser", "outsider")}  # fmt: skip
    before = governed_state()
    for role, client in clients.items():
        r = _transition(client, version, target)
        if role == "outsider":
            assert_error(r, 404, "not_found")
            continue
        body = assert_error(r, 409, "approval_workflow_required")
        assert "approval request" in body["detail"]
    assert governed_state() == before
    version.refresh_from_db()
    assert version.stage == source


@pytest.mark.parametrize(("source", "target"), SERVING_STEPS)
def test_deployed_is_never_taken_by_hand(api, users, at_stage, source, target):
    """Nobody moves a version to or from "deployed" by hand: it follows what is live (issue 13)."""
    version = at_stage(source)
    clients = [api.as_user(getattr(users, role)) for role in ("operator", "approver", "admin", "superuser")]
    before = governed_state()
    for client in clients:
        body = assert_error(_transition(client, version, target), 409, "deploy_through_serving")
        assert "/api/v1/deployment-actions/" in body["detail"]
    assert governed_state() == before
    version.refresh_from_db()
    assert version.stage == source


@pytest.mark.parametrize(("source", "target"), ILLEGAL)
def test_steps_the_lifecycle_lacks_are_conflicts(api, users, at_stage, source, target):
    version = at_stage(source)
    clients = [api.as_user(users.admin), api.as_user(users.superuser)]
    before = governed_state()
    for client in clients:
        r = _transition(client, version, target)
        body = assert_error(r, 409, "transition_not_allowed")
        assert Stage(target).label.lower() in body["detail"]
        for allowed in TRANSITIONS[source]:
            assert Stage(allowed).label.lower() in body["detail"]
        assert governed_state() == before
        version.refresh_from_db()
        assert version.stage == source


def test_a_retired_version_is_final_and_stays_readable(api, users, at_stage):
    version = at_stage(Stage.RETIRED)
    client = api.as_user(users.admin)
    for target in Stage.values:
        body = assert_error(_transition(client, version, target), 409, "transition_not_allowed")
        assert "it is final" in body["detail"]
    viewer = api.as_user(users.viewer)
    r = viewer.get(f"/api/v1/versions/{version.pk}/")
    assert r.status_code == 200 and r.json()["stage"] == "retired" and r.json()["allowed_transitions"] == []
    assert viewer.get(f"/api/v1/versions/{version.pk}/artifact/").status_code == 200
    trail = viewer.get(f"/api/v1/versions/{version.pk}/audit/").json()["results"]
    # each refused step is in the version's trail too (issue 10, finding 6), newest first
    refused = ["version.transition.refused"] * len(Stage.values)
    assert [e["action"] for e in trail] == [*refused, "version.transition", "version.create"]


@pytest.mark.parametrize("target", ["launched", "", "APPROVED", None, 3])
def test_an_unknown_stage_is_invalid_input(api, users, version, target):
    client = api.as_user(users.admin)
    before = governed_state()
    body = assert_error(_transition(client, version, target), 400, "invalid")
    assert "to" in body["fields"]
    assert governed_state() == before


def test_a_transition_needs_a_target(api, users, version):
    r = api.as_user(users.author).post(f"/api/v1/versions/{version.pk}/transition/", {}, format="json")
    assert "to" in assert_error(r, 400, "invalid")["fields"]


def test_editing_is_frozen_once_the_version_leaves_draft(api, users, at_stage):
    version = at_stage(Stage.IN_REVIEW)
    author = api.as_user(users.author)
    before = governed_state()
    r = author.patch(f"/api/v1/versions/{version.pk}/", {"description": "late"}, format="json")
    assert_error(r, 409, "version_frozen")
    assert governed_state() == before
    # Changes requested opens it again.
    move(version, Stage.CHANGES_REQUESTED, actor=users.reviewer)
    r = author.patch(f"/api/v1/versions/{version.pk}/", {"description": "fixed"}, format="json")
    assert r.status_code == 200 and r.json()["description"] == "fixed"


def test_the_full_happy_path_through_the_api(api, users, version):
    steps = [
        (users.author, Stage.IN_REVIEW),
        (users.reviewer, Stage.CHANGES_REQUESTED),
        (users.author, Stage.IN_REVIEW),
        (users.approver, Stage.APPROVED),
    ]
    move(version, *[stage for _, stage in steps], actor=users.admin)  # the approvals suite walks these for real
    steps = [  # going live and off again is the serving suite's (tests/test_serving_e2e.py)
        (users.operator, Stage.DEPRECATED),
        (users.operator, Stage.RETIRED),
    ]
    for actor, target in steps:
        r = _transition(api.as_user(actor), version, target)
        assert r.status_code == 200, (target, r.content[:300])
    events = AuditEvent.objects.filter(action="version.transition", object_id=str(version.pk)).order_by("seq")[4:]
    assert [json.loads(e.changes)["after"]["stage"] for e in events] == [t for _, t in steps]
    assert [e.actor for e in events] == [a for a, _ in steps]
