"""Issue 13, deploy request -> first prediction: the request and the worker's checks at the moment of
acting read what they need once. Statements counted per service over a real deploy that replaces a live
release: real PostgreSQL and a real MLServer; the worker's task runs in this process (``run_action.run``,
inside the test's transaction, so nothing is queued) so that each of its services can be measured.
"""

from __future__ import annotations

import re
from collections import defaultdict

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from governance.core.context import audit_context
from governance.serving import services
from governance.serving.models import DeploymentAction
from tests.serving_support import NO_GATES, approved_version, data, loaded, predict
from tests.test_serving_e2e import act, operator_client

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords")]

CONTROL = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE SAVEPOINT|ROLLBACK TO SAVEPOINT)\b")
# The statements each step may send, transaction control left out. The gate's own reads (the approvals
# app's ``gate_inputs``: 11 with one version served before) are in the request's and the plan's.
# Before the deploy path was tuned (issue 13): 20, 6, 21 and 18.
BUDGET = {"request": 19, "action_start": 3, "action_plan": 16, "action_succeed": 13}


@pytest.fixture
def served_model(make_model, superuser):
    from governance.approvals import services as approvals

    model = make_model("queue-router")
    with audit_context(source="cli", actor=superuser):
        policy = approvals.policy_create(actor=superuser, name="Deploy reads policy", rules=NO_GATES)
        approvals.policy_assign(actor=superuser, policy=policy, model=model)
    return model


def statements(captured) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if not CONTROL.match(q["sql"])]


def counted(monkeypatch, *names: str) -> dict[str, list[list[str]]]:
    """The statements of every call of the serving services ``names`` from now on, per call."""
    calls: dict[str, list[list[str]]] = defaultdict(list)
    for name in names:
        real = getattr(services, name)

        def measured(*args, _real=real, _name=name, **kwargs):
            with CaptureQueriesContext(connection) as captured:
                try:
                    return _real(*args, **kwargs)
                finally:
                    calls[_name].append(statements(captured))

        monkeypatch.setattr(services, name, measured)
    return calls


def run_worker(action_id: int) -> str:
    from workers.deploy import run_action

    with audit_context(source="task"):
        return run_action.run(action_id)


def test_a_deploy_reads_what_is_live_once_and_stays_within_its_statement_budget(
    api, users, served_model, serving_settings, mlservers, monkeypatch
):
    v1 = approved_version(api, users, served_model, seed=1, environments=["staging"])
    v2 = approved_version(api, users, served_model, seed=2, environments=["staging"])
    ci = operator_client(api, users)
    first = act(ci, "deploy", v1)
    assert first.status_code == 201, first.content[:300]
    assert run_worker(first.json()["id"]) == "succeeded"

    with CaptureQueriesContext(connection) as request:
        r = act(ci, "deploy", v2)
    assert r.status_code == 201, r.content[:300]
    calls = counted(monkeypatch, "action_start", "action_plan", "action_succeed")
    assert run_worker(r.json()["id"]) == "succeeded"

    # the deploy happened: v2 answers on the real backend, v1 was unloaded, the record says so
    X = data(2)[0][:5]
    assert (
        predict(mlservers["staging"], f"{services.endpoint_name(served_model)}-v2", X) == v2.estimator.predict(X)
    ).all()
    assert f"{services.endpoint_name(served_model)}-v1" not in loaded(mlservers["staging"])
    assert DeploymentAction.objects.get(pk=r.json()["id"]).status == "succeeded"

    used = {"request": statements(request)} | {name: made[0] for name, made in calls.items()}
    for step, budget in BUDGET.items():
        assert len(used[step]) <= budget, f"{step}: {len(used[step])} statements\n" + "\n".join(used[step])

    # what is live (and a canary) is one read in the plan: the refusal checks and the plan share it
    current = [sql for sql in used["action_plan"] if re.search(r'FROM "serving_deployment".*"until" IS NULL', sql)]
    assert len(current) == 1, current
    # the start takes the lease and logs it in one UPDATE, after one locked read
    assert [sql.split()[0] for sql in used["action_start"]] == ["SELECT", "UPDATE", "SELECT"], used["action_start"]


def test_the_outcome_locks_the_versions_before_the_audit_chain_head(
    api, users, served_model, serving_settings, mlservers, monkeypatch
):
    """governance/audit/services.py: version rows are locked, in id order, before the audit chain head;
    the outcome of a deploy changes the stages of the version it made live and of the one it replaced."""
    v1 = approved_version(api, users, served_model, seed=1, environments=["staging"])
    v2 = approved_version(api, users, served_model, seed=2, environments=["staging"])
    ci = operator_client(api, users)
    assert run_worker(act(ci, "deploy", v1).json()["id"]) == "succeeded"
    calls = counted(monkeypatch, "action_succeed")
    assert run_worker(act(ci, "deploy", v2).json()["id"]) == "succeeded"

    (succeed,) = calls["action_succeed"]
    version_locks = [
        i for i, sql in enumerate(succeed) if 'FROM "registry_modelversion"' in sql and "FOR UPDATE" in sql
    ]
    chain = [i for i, sql in enumerate(succeed) if "audit_chainhead" in sql]
    assert len(version_locks) == 1 and chain, succeed
    assert version_locks[0] < chain[0], succeed
    assert re.search(r'ORDER BY "registry_modelversion"."id" ASC', succeed[version_locks[0]]), succeed[version_locks[0]]
    v1.refresh_from_db()
    v2.refresh_from_db()
    assert (v1.stage, v2.stage) == ("approved", "deployed")
