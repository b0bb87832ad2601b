"""One enum of capabilities: who may do what is one table (``governance/accounts/capabilities.py``),
the permission checks take nothing but its members, and no other module writes a set of roles down.

The roles per capability are the README's ("Teams and roles", "Approvals", "Evaluations"), and the
API enforces them: a team member without one of the roles is refused with 403 ``permission_denied``
naming the roles, the refusal changes nothing, and a member with one of them succeeds.
"""

from __future__ import annotations

import ast
import json
import typing
from pathlib import Path

import pytest
from django.contrib.auth.models import AnonymousUser

from governance.accounts import capabilities, permissions
from governance.accounts.capabilities import Capability, roles_for
from governance.accounts.models import Role
from governance.approvals import rules as R
from governance.approvals import selectors
from governance.approvals.models import ApprovalRequest, ChecklistTick
from governance.evaluations.models import EvaluationRun
from governance.registry.models import TRANSITIONS, RegisteredModel
from tests.conftest import assert_error, governed_state
from tests.test_evaluations_api import post as post_evaluation

pytestmark = pytest.mark.usefixtures("fast_passwords")

ROOT = Path(__file__).resolve().parent.parent
AUTHORS = {Role.AUTHOR, Role.ADMIN}

# What the README says, capability by capability.
README = {
    # "Objects of other teams are invisible": every member of the team reads its objects
    Capability.VIEW: set(Role),
    # "author (registers models and versions, writes cards, submits for review)", and the team's admin
    Capability.MODEL_CREATE: AUTHORS,
    Capability.MODEL_UPDATE: AUTHORS,
    Capability.VERSION_CREATE: AUTHORS,
    Capability.VERSION_UPDATE: AUTHORS,
    Capability.CARD_EDIT: AUTHORS,
    Capability.REVIEW_REQUEST: AUTHORS,
    Capability.MODEL_DELETE: {Role.ADMIN},
    # "The model's risk tier ... is changed only by the team's admins and approvers"
    Capability.MODEL_RETIER: {Role.APPROVER, Role.ADMIN},
    # "reviewer (requests changes or rejects), approver (approves)"; the quorum counts only these roles
    Capability.APPROVAL_DECIDE: {Role.REVIEWER, Role.APPROVER},
    # "Checklist items are ticked by people other than the version's author and the review's requester"
    Capability.CHECKLIST_TICK: {Role.AUTHOR, Role.REVIEWER, Role.APPROVER, Role.ADMIN},
    # "CI or a person requests evaluations": the people who produce or judge the evidence
    Capability.EVALUATION_REQUEST: {Role.AUTHOR, Role.REVIEWER, Role.APPROVER, Role.ADMIN},
    # "a team admin can give a model its own policy"; "loosening ... takes a second admin"
    Capability.POLICY_MANAGE: {Role.ADMIN},
    Capability.TEAM_MANAGE: {Role.ADMIN},
    # "auditor (reads and verifies the audit log)"
    Capability.AUDIT_VERIFY: {Role.AUDITOR, Role.ADMIN},
    # "operator (deploys, rolls back, retires)", and the team's admin
    Capability.DEPLOY: {Role.OPERATOR, Role.ADMIN},
    # "operator (... registers compute hosts)", and the team's admin
    Capability.HOST_REGISTER: {Role.OPERATOR, Role.ADMIN},
}


def test_every_capability_holds_the_roles_the_readme_gives_it():
    assert {c: set(roles_for(c)) for c in Capability} == README
    # the quorum rules accept exactly the roles whose approvals count
    assert set(typing.get_args(R.DecisionRole)) == roles_for(Capability.APPROVAL_DECIDE)
    # the gate panel's sentence names the roles the service checks
    said = selectors.checklist_tickers(
        R.ChecklistGate(kind="checklist", item="rollback-plan", text="Rollback ready.")
    ).split(" of the owning")[0]
    assert {r for r in Role.values if f" {r}" in said.replace(",", " ")} == roles_for(Capability.CHECKLIST_TICK)
    # every step the transition table lets a person take by hand is open to the team's admins
    manual = [s for steps in TRANSITIONS.values() for s in steps.values() if not (s.by_review or s.by_serving)]
    assert manual and all(Role.ADMIN in step.roles for step in manual)
    # the steps into and out of "deployed" are nobody's by hand: they follow the serving record
    serving = [s for steps in TRANSITIONS.values() for s in steps.values() if s.by_serving]
    assert serving and all(not step.roles for step in serving)


# --- through the API: refused outside the set (nothing changes), allowed inside it ------------------


def _refused_then_allowed(api, users, capability: Capability, send, *, rows) -> None:
    """``send(client, i)`` makes the request with a role's signed-in client (``i`` tells attempts
    apart); ``rows()`` counts what a success adds. The roles are the README's, not read from the table."""
    allowed = README[capability]
    refused = [r for r in Role if r not in allowed]
    assert refused and allowed
    clients = {role: api.as_user(getattr(users, role)) for role in Role}  # signing in is audited: before
    for i, role in enumerate(refused):
        before = (governed_state(), rows())
        body = assert_error(send(clients[role], i), 403, "permission_denied")
        assert ", ".join(sorted(allowed)) in body["detail"], body  # the refusal names the roles
        assert (governed_state(), rows()) == before, role
    for i, role in enumerate(sorted(allowed)):
        count = rows()
        r = send(clients[role], i)
        assert r.status_code in (200, 201), (role, r.status_code, r.content[:300])
        assert rows() == count + 1, role


def test_checklist_tick_roles(api, users, make_model, make_version):
    model = make_model("credit-limit", risk_tier="high", actor=users.superuser)
    version = make_version(model, actor=users.superuser)  # nobody in the team registered it
    items = [key for key, _ in R.DEFAULT_CHECKLIST]
    url = f"/api/v1/versions/{version.pk}/checklist/"

    def tick(client, i):
        return client.post(url, {"item": items[i], "note": "checked"}, format="json")

    _refused_then_allowed(api, users, Capability.CHECKLIST_TICK, tick, rows=ChecklistTick.objects.count)


def test_evaluation_request_roles(api, users, version):
    def request(client, i):
        return post_evaluation(client, version, parameters=json.dumps({"bootstrap": 50 + i}))

    _refused_then_allowed(api, users, Capability.EVALUATION_REQUEST, request, rows=EvaluationRun.objects.count)


def test_review_request_roles(api, users, model, make_version):
    versions = [make_version(model) for _ in Role]

    def request(client, i):
        body = {"version": versions.pop().pk, "environments": ["staging"], "comment": "Ready."}
        return client.post("/api/v1/approval-requests/", body, format="json")

    _refused_then_allowed(api, users, Capability.REVIEW_REQUEST, request, rows=ApprovalRequest.objects.count)


def test_retier_roles(api, users, make_model):
    models = [make_model(f"model-{role}") for role in Role]

    def retier(client, i):
        body = {"risk_tier": "high", "reason": "It decides on credit."}
        return client.post(f"/api/v1/models/{models.pop().pk}/risk-tier/", body, format="json")

    def high_risk():
        return RegisteredModel.objects.filter(risk_tier="high").count()

    _refused_then_allowed(api, users, Capability.MODEL_RETIER, retier, rows=high_risk)


# --- the checks take a Capability, never a string ---------------------------------------------------


def test_permission_checks_refuse_a_plain_string(users, team):
    for plain in ("team.manage", str(Capability.TEAM_MANAGE), "no.such"):
        with pytest.raises(TypeError, match="Capability"):
            permissions.require(users.admin, plain, team_id=team.pk)
        with pytest.raises(TypeError, match="Capability"):
            permissions.can(users.admin, plain, team.pk)
        with pytest.raises(TypeError, match="Capability"):
            permissions.can_anywhere(AnonymousUser(), plain)
        with pytest.raises(TypeError, match="Capability"):
            roles_for(plain)
    # a member (or a lookup of one) works
    permissions.require(users.admin, Capability("team.manage"), team_id=team.pk)
    assert permissions.can(users.admin, Capability.TEAM_MANAGE, team.pk)
    assert not permissions.can(users.author, Capability.TEAM_MANAGE, team.pk)
    assert permissions.can_anywhere(users.auditor, Capability.AUDIT_VERIFY)


# --- no other module writes a set of roles down ---------------------------------------------------

CAPABILITY_MODULE = Path("governance/accounts/capabilities.py")
ROLE_NAMES = frozenset(Role.values)
# where the capability goes in each check: require(user, capability, ...), roles_for(capability)
CHECKS = {"require": 1, "can": 1, "can_anywhere": 1, "roles_for": 0}


def _sources():
    for path in sorted([*ROOT.joinpath("governance").rglob("*.py"), *ROOT.joinpath("workers").rglob("*.py")]):
        rel = path.relative_to(ROOT)
        if "migrations" not in rel.parts and rel != CAPABILITY_MODULE:
            yield rel, ast.parse(path.read_text(), filename=str(path))


def _is_role_member(node: ast.AST) -> bool:
    """``Role.ADMIN`` (any ``Role.<NAME>``)."""
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "Role"
        and node.attr.isupper()
    )


def _is_role_name(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value in ROLE_NAMES


# The demo's users are named after their roles: a tuple of usernames there, not of roles.
USERNAMES_LIKE_ROLES = {Path("governance/registry/management/commands/seed_demo.py")}


def _role_sets(tree: ast.AST, *, names_are_roles: bool = True) -> list[tuple[tuple[int, int], str]]:
    """Places that write roles down: a member of ``Role``, a literal collection of role names, a
    ``role__in=`` given a literal."""
    skip = set()  # ``Literal["reviewer", "approver"]``: a type, tied to the table by the test above
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and getattr(node.value, "id", "") == "Literal":
            skip.update(id(n) for n in ast.walk(node.slice))
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if _is_role_member(node):
            found.append(((node.lineno, node.col_offset), f"Role.{node.attr}"))
        elif isinstance(node, ast.Set | ast.List | ast.Tuple) and len(node.elts) > 1 and names_are_roles:
            if all(_is_role_name(e) for e in node.elts):
                found.append(((node.lineno, node.col_offset), "a literal collection of role names"))
        elif isinstance(node, ast.keyword) and node.arg == "role__in":
            if isinstance(node.value, ast.Set | ast.List | ast.Tuple | ast.SetComp | ast.ListComp):
                found.append(((node.value.lineno, node.value.col_offset), "role__in= given a literal"))
    return found


def _transition_table_roles(rel: Path, tree: ast.AST) -> set[tuple[int, int]]:
    """The roles the lifecycle table names per step, ``_t("retire", Role.OPERATOR)``: they stay in
    the table (no capability states the same rule) and go through ``capabilities.transition_roles``."""
    if rel != Path("governance/registry/models.py"):
        return set()
    return {
        (arg.lineno, arg.col_offset)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "_t"
        for arg in node.args[1:]
        if _is_role_member(arg)
    }


def test_no_module_outside_the_capability_table_writes_roles_down():
    found, table = [], []
    for rel, tree in _sources():
        allowed = _transition_table_roles(rel, tree)
        table.extend(allowed)
        sets = _role_sets(tree, names_are_roles=rel not in USERNAMES_LIKE_ROLES)
        found.extend(f"{rel}:{at[0]}: {what}" for at, what in sets if at not in allowed)
    # 7 role arguments since going live and off became the serving app's (issue 13)
    assert len(table) >= 7, "the scan found too few transition steps: is it still reading the table?"
    assert found == [], "name a Capability and read its roles with roles_for(), do not write roles down"


def test_the_scan_sees_what_it_refuses():
    seen = _role_sets(
        ast.parse(
            "A = frozenset({Role.AUTHOR, Role.ADMIN})\n"
            'B = ("reviewer", "approver")\n'
            "Membership.objects.filter(role__in=[r for r in x])\n"
            'C = Literal["reviewer", "approver"]\n'
            'D = ("staging", "production")\n'
        )
    )
    assert sorted(line for (line, _), _ in seen) == [1, 1, 2, 3]


def test_no_check_is_given_a_string_and_only_the_lifecycle_passes_its_own_roles():
    """The type check refuses a string when the call runs; this catches the calls no test runs."""
    strings, own_roles, calls = [], [], 0
    for rel, tree in _sources():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            position = CHECKS.get(name)
            if position is not None and len(node.args) > position:
                calls += 1
                if any(isinstance(n, ast.JoinedStr) or (isinstance(n, ast.Constant) and isinstance(n.value, str))
                       for n in ast.walk(node.args[position])):  # fmt: skip
                    strings.append(f"{rel}:{node.lineno}")
            elif name == "require_roles":
                own_roles.append(str(rel))
    assert calls > 30, "the scan found too few permission checks: is it still reading the code?"
    assert strings == [], "pass a Capability member, not a string"
    assert own_roles == ["governance/registry/services.py"], own_roles


def test_capability_module_exports_one_table():
    assert set(capabilities._ROLES) == set(Capability)
    assert all(isinstance(roles, frozenset) and roles <= set(Role) for roles in capabilities._ROLES.values())
