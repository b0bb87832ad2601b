"""Issue 13, point 5, with real processes: a deployment action's whole worker (main process and children,
its process group) is killed with SIGKILL at a varied moment of a deploy, a new worker starts, and Celery
beat runs the lease sweep with short leases (``TASK_LEASE_*``). In every trial the action then ends within
``BOUND`` seconds of the crash, succeeded or failed with ``worker_lost`` after its last start, with exactly
one final audit event; at most one release of the model is live in the record, and the real MLServer has
loaded exactly the releases the record says are live (its own repository index), a succeeded one
answering real predictions. Never applied twice, never half-applied without a record.

One MLServer pair serves the module; a worker started after a crash runs the next trial, so each trial
costs one worker start. The environment watches every new deployment for ``WINDOW`` seconds, so that
the kills land at different steps: before the gate, during the load, after the load, during the probe
and the observation window, around the unload of the release replaced.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from governance.audit import services as audit
from governance.audit.models import AuditEvent
from governance.core.context import audit_context
from governance.serving.models import Deployment, DeploymentAction, DeploymentState, Environment
from governance.serving.services import endpoint_name
from tests.conftest import celery_beat, wait_for
from tests.serving_support import NO_GATES, approved_version, data, deploy_worker, loaded, predict, worker_log
from tests.test_serving_e2e import act, operator_client

pytestmark = [
    pytest.mark.worker, pytest.mark.slow, pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fast_passwords"),
]  # fmt: skip

LEASE = {"TASK_LEASE_SECONDS": 2, "TASK_LEASE_SWEEP_SECONDS": 1}
WINDOW = 2  # seconds each new deployment is watched (Environment.observation_seconds)
# from the crash to the action's end: the lease runs out (2 s), the sweep sees it (1 s), the new worker
# starts (a few seconds on a loaded machine) and runs the action again from the start (loads, probe, window)
BOUND = 45
FINAL = ("serving.action.succeeded", "serving.action.failed", "serving.action.rolled_back", "serving.action.refused")
ROOT = Path(__file__).resolve().parent.parent

# (the step the action has logged, seconds after it) at which the worker is killed, one per trial; a
# second pair kills the worker of the next attempt too
KILLS = [
    (("start", 0.0),),
    (("gate", 0.0),),
    (("gate", 0.03),),  # the bytes being copied and hashed into the repository, or the load requested
    (("gate", 0.12),),  # MLServer loading
    (("deploy", 0.0),),  # loaded, before the probe
    (("probe", 0.4),),  # in the observation window
    (("probe", WINDOW - 0.05),),  # at the end of the window: the health verdict, the unload
    (("observe", 0.0),),
    (("health", 0.0),),  # the replaced release being unloaded, the outcome being recorded
    (("deploy", 0.0), ("restore", 0.0)),  # killed again while the next attempt puts the backend back
    (("probe", 0.8), ("deploy", 0.0)),  # killed again in the next attempt
]


@pytest.fixture
def crash_model(make_model, superuser):
    from governance.approvals import services as approvals

    def make(name: str):
        model = make_model(name)
        with audit_context(source="cli", actor=superuser):
            policy = approvals.policy_create(actor=superuser, name=f"Policy of {name}", rules=NO_GATES)
            approvals.policy_assign(actor=superuser, policy=policy, model=model)
        return model

    return make


def _beat(tmp_path, **env):
    return celery_beat(tmp_path, **{**LEASE, **env})


class Workers:
    """One live worker at a time on the deploy and default queues; ``crash()`` kills its whole process
    group with SIGKILL and starts the next one at once."""

    def __init__(self, stack: contextlib.ExitStack, settings, mlservers, env: dict):
        self.stack, self.settings, self.mlservers, self.env = stack, settings, mlservers, env
        self.proc = self._start()

    def _start(self):
        return self.stack.enter_context(deploy_worker(self.settings, self.mlservers, **{**LEASE, **self.env}))

    def crash(self) -> float:
        os.killpg(self.proc.pid, signal.SIGKILL)
        os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOWAIT)
        crashed_at = time.monotonic()
        self.proc = self._start()
        return crashed_at


def _steps(action_id: int) -> list[str]:
    return [s["step"] for s in DeploymentAction.objects.get(pk=action_id).steps]


def _kill_at(workers: Workers, action_id: int, step: str, delay: float, seen_before: int) -> tuple[float, str] | None:
    """Kill the worker once the action logged ``step`` (after the first ``seen_before`` steps), ``delay``
    seconds later; the crash time and the last step logged then, or ``None`` if it ended first."""

    def reached():
        action = DeploymentAction.objects.get(pk=action_id)
        if not action.in_flight:
            return "ended"
        return step in [s["step"] for s in action.steps[seen_before:]]

    got = wait_for(reached, timeout=60, interval=0.01)
    assert got, f"the action never logged {step}: {_steps(action_id)}\n{worker_log(workers.proc)}"
    if got == "ended":
        return None
    if delay:
        time.sleep(delay)
    if not DeploymentAction.objects.get(pk=action_id).in_flight:
        return None
    crashed_at = workers.crash()
    return crashed_at, _steps(action_id)[-1]


def _ended(action_id: int) -> DeploymentAction | None:
    action = DeploymentAction.objects.get(pk=action_id)
    return None if action.in_flight else action


def _assert_backend_matches_record(server, model, environment) -> list[str]:
    """The MLServer's loaded releases of the model are exactly the ones live in the record, all ready."""
    prefix = f"{endpoint_name(model)}-v"
    live = Deployment.objects.filter(environment=environment, model=model, until__isnull=True)
    assert live.filter(state=DeploymentState.LIVE).count() <= 1
    recorded = {f"{prefix}{d.version.number}": "READY" for d in live.select_related("version")}
    served = {name: state for name, state in loaded(server).items() if name.startswith(prefix)}
    assert served == recorded, f"the backend serves {served}, the record says {recorded}"
    return sorted(recorded)


def _check_trial(action_id: int, *, server, model, environment, estimators, max_attempts: int) -> DeploymentAction:
    action = DeploymentAction.objects.get(pk=action_id)
    if action.status != "succeeded":
        assert (action.status, action.error_code) == ("failed", "worker_lost"), (action.status, action.steps)
        assert action.attempts >= max_attempts, action.attempts  # only after its last start was lost
    finals = list(
        AuditEvent.objects.filter(object_id=str(action_id), action__in=FINAL).values_list("action", flat=True)
    )
    assert finals == [f"serving.action.{action.status}"], finals
    made = Deployment.objects.filter(action=action)
    assert made.count() == (1 if action.status == "succeeded" else 0)  # applied once, or not at all
    names = _assert_backend_matches_record(server, model, environment)
    if action.status == "succeeded":
        name = f"{endpoint_name(model)}-v{action.version.number}"
        assert names == [name]
        X = data(11, 4)[0]
        np.testing.assert_array_equal(predict(server, name, X), estimators[action.version_id].predict(X))
    assert not action.lease_token and action.lease_expires_at is None
    return action


def _watched(environment_name: str = "staging") -> Environment:
    environment = Environment.objects.get(name=environment_name)
    # watched long enough for the kills to land in the window; no request there: the window judges nothing
    environment.observation_seconds, environment.min_requests = WINDOW, 1_000_000
    environment.save(update_fields=["observation_seconds", "min_requests"])
    return environment


def test_a_deploy_whose_whole_worker_is_killed_ends_once_and_the_backend_matches_the_record(
    api, users, crash_model, serving_settings, mlservers, tmp_path
):
    staging, environment = mlservers["staging"], _watched()
    model = crash_model("crash-score")
    versions = [approved_version(api, users, model, seed=s) for s in (1, 2)]
    estimators = {v.pk: v.estimator for v in versions}
    ci = operator_client(api, users)
    figures = []
    with _beat(tmp_path), contextlib.ExitStack() as stack:
        workers = Workers(stack, serving_settings, mlservers, {})
        for trial, kills in enumerate(KILLS):
            version = versions[trial % 2]  # v1, then v2 in its place, then v1 again...
            r = act(ci, "deploy", version)
            assert r.status_code == 201, r.content[:500]
            action_id = r.json()["id"]
            crashes, seen = [], 0
            for step, delay in kills:
                crash = _kill_at(workers, action_id, step, delay, seen)
                if crash is None:
                    break
                crashes.append(crash)
                seen = len(_steps(action_id))
            ended = wait_for(lambda: _ended(action_id), timeout=BOUND, interval=0.05)  # noqa: B023
            if crashes:
                elapsed = time.monotonic() - crashes[-1][0]
                assert ended and elapsed < BOUND, (
                    f"trial {trial}: still {DeploymentAction.objects.get(pk=action_id).status} {BOUND} s after the "
                    f"crash: {_steps(action_id)}\n{worker_log(workers.proc)}"
                )
            action = _check_trial(
                action_id, server=staging, model=model, environment=environment, estimators=estimators,
                max_attempts=3,
            )  # fmt: skip
            if crashes and action.status == "succeeded":  # the next start put the backend back first, and said so
                assert "restore" in _steps(action_id), action.steps
            figures.append((trial, [c[1] for c in crashes], action.status, action.attempts,
                            elapsed if crashes else None))  # fmt: skip
    print("\ntrial  killed after step(s)       outcome    starts  crash->end (s)")
    for trial, at, status, attempts, elapsed in figures:
        print(f"{trial:5}  {','.join(at) or '(ended first)':26} {status:10} {attempts:6}  "
              f"{'-' if elapsed is None else f'{elapsed:.1f}'}")  # fmt: skip
    killed = [f for f in figures if f[1]]
    assert len(killed) >= 10, f"only {len(killed)} trials were killed mid-action: {figures}"
    # the kills landed at different steps (which exactly varies with the machine's load)
    assert len({f[1][0] for f in killed}) >= 4, figures
    assert audit.verify().ok


def test_a_deploy_killed_on_its_last_start_fails_cleanly_and_the_backend_serves_the_record_again(
    api, users, crash_model, serving_settings, mlservers, tmp_path
):
    """TASK_LEASE_MAX_ATTEMPTS=1: the first start is the last. The worker is killed after it loaded the
    new release and before it recorded anything: the action fails with ``worker_lost``, and the backend
    is brought back to what the record says is live (the new release unloaded, the old one serving),
    each step in the action's log and the audit trail."""
    staging, environment = mlservers["staging"], _watched()
    model = crash_model("crash-last")
    v1, v2 = (approved_version(api, users, model, seed=s) for s in (3, 4))
    estimators = {v1.pk: v1.estimator, v2.pk: v2.estimator}
    ci = operator_client(api, users)
    env = {"TASK_LEASE_MAX_ATTEMPTS": 1}
    prefix = f"{endpoint_name(model)}-v"
    with _beat(tmp_path, **env), contextlib.ExitStack() as stack:
        workers = Workers(stack, serving_settings, mlservers, env)
        first = act(ci, "deploy", v1).json()["id"]
        assert wait_for(lambda: _ended(first), timeout=60), worker_log(workers.proc)
        assert _check_trial(first, server=staging, model=model, environment=environment, estimators=estimators,
                            max_attempts=1).status == "succeeded"  # fmt: skip

        action_id = act(ci, "deploy", v2).json()["id"]
        crash = _kill_at(workers, action_id, "probe", 0.3, 0)
        assert crash is not None
        # at the crash the backend holds the new release next to the old one, and the record knows nothing of it
        assert {n for n in loaded(staging) if n.startswith(prefix)} == {f"{prefix}1", f"{prefix}2"}
        ended = wait_for(lambda: _ended(action_id), timeout=BOUND, interval=0.05)
        elapsed = time.monotonic() - crash[0]
        assert ended, f"{_steps(action_id)}\n{worker_log(workers.proc)}"
    print(f"\nlast start killed after {crash[1]}: {ended.status} ({ended.error_code}) {elapsed:.1f} s after the crash")
    action = _check_trial(
        action_id, server=staging, model=model, environment=environment, estimators=estimators, max_attempts=1
    )
    assert (action.status, action.error_code) == ("failed", "worker_lost") and elapsed < BOUND
    # v1 still the live release in the record, and it answers
    assert _assert_backend_matches_record(staging, model, environment) == [f"{prefix}1"]
    X = data(12, 3)[0]
    np.testing.assert_array_equal(predict(staging, f"{prefix}1", X), v1.estimator.predict(X))
    # what was put back is in the action's log and the audit trail
    restored = [s for s in action.steps if s["step"] == "restore"]
    assert any(f"{prefix}2" in s["message"] and "Unloaded" in s["message"] for s in restored), action.steps
    events = AuditEvent.objects.filter(object_id=str(action_id), action="serving.action.restore")
    assert any(f"{prefix}2" in e.changes for e in events)
    assert audit.verify().ok


def test_a_deploy_refused_when_it_starts_again_leaves_the_backend_as_recorded(
    api, users, crash_model, serving_settings, mlservers, tmp_path
):
    """The worker is killed after it loaded the new release; while no worker runs, the approval of that
    version expires. The next start finds the gate failing and refuses the action: the release the lost
    worker loaded is unloaded first, so the backend serves what the record says, not a refused version."""
    from django.utils import timezone

    from governance.approvals.models import Decision

    staging, environment = mlservers["staging"], _watched()
    model = crash_model("crash-refused")
    v1, v2 = (approved_version(api, users, model, seed=s) for s in (5, 6))
    estimators = {v1.pk: v1.estimator, v2.pk: v2.estimator}
    ci = operator_client(api, users)
    prefix = f"{endpoint_name(model)}-v"
    with _beat(tmp_path), contextlib.ExitStack() as stack:
        workers = Workers(stack, serving_settings, mlservers, {})
        first = act(ci, "deploy", v1).json()["id"]
        assert wait_for(lambda: _ended(first), timeout=60), worker_log(workers.proc)
        action_id = act(ci, "deploy", v2).json()["id"]
        # the approval expires while no worker runs, before the next one takes the action up again
        crash = _kill_at(workers, action_id, "deploy", 0.0, 0)
        assert crash is not None
        Decision.objects.filter(request__version=v2).update(expires_at=timezone.now())
        assert f"{prefix}2" in loaded(staging)
        ended = wait_for(lambda: _ended(action_id), timeout=BOUND, interval=0.05)
        elapsed = time.monotonic() - crash[0]
        assert ended, f"{_steps(action_id)}\n{worker_log(workers.proc)}"
    print(f"\nrefused at the restart: {ended.status} ({ended.error_code}) {elapsed:.1f} s after the crash")
    assert (ended.status, ended.error_code) == ("refused", "gate_failed"), (ended.status, ended.steps)
    finals = list(
        AuditEvent.objects.filter(object_id=str(action_id), action__in=FINAL).values_list("action", flat=True)
    )
    assert finals == ["serving.action.refused"]
    assert not Deployment.objects.filter(action_id=action_id).exists()
    assert _assert_backend_matches_record(staging, model, environment) == [f"{prefix}1"]
    X = data(13, 3)[0]
    np.testing.assert_array_equal(predict(staging, f"{prefix}1", X), estimators[v1.pk].predict(X))
