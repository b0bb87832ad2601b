"""Issue 11, "runs survive a crashed worker, within minutes", with real processes: an explainability run
is started in a real Celery worker, the whole worker is killed with SIGKILL mid-run (its process group,
as a node reboot or an OOM kill would), a new worker is started, and Celery beat runs the lease sweep.
The run then finishes exactly once, or fails cleanly with ``worker_lost``, within ``BOUND`` seconds of
the crash: its data deleted and one final audit event.

Before leases, all ten such runs tried by hand stayed ``running`` with their progress frozen (watched
5-6 minutes each): the message sat in Redis's unacked set until the visibility timeout (6 hours).
The lease and sweep are shortened here through the environment (``TASK_LEASE_*``); with the defaults
(60 s and 30 s) the same recovery starts within 90 s of the crash.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import threading
import time
from pathlib import Path

import joblib
import pytest
from django.core.files.storage import storages

from governance.audit import services as audit
from governance.audit.models import AuditEvent
from governance.evaluations.models import EvaluationRun, RunStatus
from tests.conftest import celery_beat, celery_worker, make_artifact, wait_for
from tests.slow_models import SlowClassifier
from tests.test_evaluations_api import credit_frame, csv_upload

pytestmark = [
    pytest.mark.worker, pytest.mark.slow, pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fast_passwords"),
]  # fmt: skip

FEATURES = ["income", "debt", "age"]
LEASE = {"TASK_LEASE_SECONDS": 3, "TASK_LEASE_SWEEP_SECONDS": 1}
BOUND = 120  # seconds from the crash to the run's end, a second whole attempt included
FINAL = ("evaluation.succeed", "evaluation.fail")
ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def _worker(media_root, **env):
    """A real worker on both queues (``tests.conftest.celery_worker``) whose log is read as it comes, so
    that a long test never fills its pipe; ``proc.log`` holds the lines."""
    with celery_worker(queues="evaluations,default", media_root=media_root, **{**LEASE, **env}) as proc:
        proc.log = []
        threading.Thread(target=lambda: proc.log.extend(iter(proc.stdout.readline, b"")), daemon=True).start()
        yield proc


def _log(proc, tail: int = 4000) -> str:
    text = b"".join(proc.log).decode(errors="replace")
    return text[-tail:] if tail else text


def _beat(tmp_path, **env):
    return celery_beat(tmp_path, **{**LEASE, **env})


def _crash(proc) -> float:
    """SIGKILL to the worker's whole process group; returns when it is dead (left unreaped for the
    fixture to collect), at the time of the crash."""
    os.killpg(proc.pid, signal.SIGKILL)
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    return time.monotonic()


def _slow_version(api, users, model, *, delay: float) -> int:
    frame = credit_frame(300)
    buffer = io.BytesIO()
    joblib.dump(SlowClassifier(delay=delay).fit(frame[FEATURES], frame["default"]), buffer)
    r = api.as_user(users.author).post(
        "/api/v1/versions/", {"model": model.pk, "artifact": make_artifact(buffer.getvalue(), name="slow.joblib")},
        format="multipart",
    )  # fmt: skip
    assert r.status_code == 201, r.content[:300]
    return r.json()["id"]


def _request(api, users, version_id: int, kind: str, parameters: str) -> int:
    r = api.as_user(users.author).post("/api/v1/evaluations/", {
        "version": version_id, "kind": kind, "target_column": "default",
        "data": csv_upload(credit_frame(300).drop(columns=["sex", "region"])), "parameters": parameters,
    }, format="multipart")  # fmt: skip
    assert r.status_code == 201, r.content[:300]
    return r.json()["id"]


def _events(run_id: int, *actions: str) -> list[str]:
    return list(
        AuditEvent.objects.filter(object_id=str(run_id), action__in=actions)
        .order_by("seq")
        .values_list("action", flat=True)
    )


def _ended(run_id: int) -> EvaluationRun | None:
    run = EvaluationRun.objects.get(pk=run_id)
    return run if run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED) else None


# an SVC-like model-agnostic run: Kernel SHAP over 200 rows, one slow prediction each (about 15 s)
EXPLAIN = '{"sample_rows": 20, "lime_rows": 2, "max_evals": 500, "background_size": 5}'


def _crash_mid_run(api, users, model, settings, tmp_path, **env) -> tuple[int, float, dict]:
    """Start an explainability run, kill the whole worker once the run is well under way, start a new
    worker, and wait for the run to end (beat sweeping all along). The run id, the seconds from the
    crash to the end, and what was seen."""
    version_id = _slow_version(api, users, model, delay=0.06)
    media_root = Path(settings.STORAGES["artifacts"]["OPTIONS"]["location"]).parent
    seen: dict = {}
    with _beat(tmp_path, **env):
        with _worker(media_root, **env) as first:
            run_id = _request(api, users, version_id, "explainability", EXPLAIN)

            def under_way():
                run = EvaluationRun.objects.get(pk=run_id)
                return run.status == RunStatus.RUNNING and run.progress >= 20

            assert wait_for(under_way, timeout=90, interval=0.1), _log(first)
            crashed_at = _crash(first)
        run = EvaluationRun.objects.get(pk=run_id)
        seen["at_crash"] = (run.status, run.progress, run.attempts, run.data_path)
        assert storages["evaluation_data"].exists(run.data_path)
        with _worker(media_root, **env) as second:
            ended = wait_for(lambda: _ended(run_id), timeout=BOUND, interval=0.2)
            elapsed = time.monotonic() - crashed_at
            assert ended, (
                f"still {EvaluationRun.objects.get(pk=run_id).status} {BOUND} s after the crash:\n{_log(second)}"
            )
            time.sleep(2 * LEASE["TASK_LEASE_SWEEP_SECONDS"] + 1)  # later sweeps change nothing
    return run_id, elapsed, seen


def test_a_run_whose_worker_is_killed_finishes_once_within_the_bound(api, users, model, settings, tmp_path):
    run_id, elapsed, seen = _crash_mid_run(api, users, model, settings, tmp_path)
    run = EvaluationRun.objects.get(pk=run_id)
    print(f"\nrun {run_id}: killed at {seen['at_crash'][1]:.0f}%, succeeded {elapsed:.1f} s after the crash")
    assert seen["at_crash"][0] == RunStatus.RUNNING and seen["at_crash"][2] == 1
    assert run.status == RunStatus.SUCCEEDED, (run.error_code, run.error_message)
    assert run.attempts == 2 and elapsed < BOUND
    assert set(run.result["ranking"]) == set(FEATURES) and run.result_digest
    # once: one re-queue, one final event, and the data gone with the run
    assert _events(run_id, "evaluation.requeue", *FINAL) == ["evaluation.requeue", "evaluation.succeed"]
    assert run.data_deleted_at is not None and not storages["evaluation_data"].exists(run.data_path)
    assert not run.lease_token and run.lease_expires_at is None
    assert audit.verify().ok


def test_a_run_whose_worker_is_killed_on_its_last_attempt_fails_cleanly(api, users, model, settings, tmp_path):
    run_id, elapsed, _ = _crash_mid_run(api, users, model, settings, tmp_path, TASK_LEASE_MAX_ATTEMPTS=1)
    run = EvaluationRun.objects.get(pk=run_id)
    print(f"\nrun {run_id}: failed with {run.error_code} {elapsed:.1f} s after the crash")
    assert (run.status, run.error_code, run.attempts) == (RunStatus.FAILED, "worker_lost", 1)
    assert elapsed < BOUND
    assert _events(run_id, "evaluation.requeue", *FINAL) == ["evaluation.fail"]
    assert run.data_deleted_at is not None and not storages["evaluation_data"].exists(run.data_path)
    assert run.result == {}


def test_a_long_step_keeps_its_lease_and_a_message_delivered_again_does_not_run_twice(
    api, users, model, settings, tmp_path
):
    """A prediction that takes longer than the lease, with no progress report meanwhile: the heartbeat
    keeps the lease, so the sweep leaves the run alone. With a visibility timeout shorter than the run,
    Redis hands the same message to a second worker while the first still works on it: that delivery
    finds the lease live and does nothing."""
    version_id = _slow_version(api, users, model, delay=3 * LEASE["TASK_LEASE_SECONDS"])
    media_root = Path(settings.STORAGES["artifacts"]["OPTIONS"]["location"]).parent
    env = {"CELERY_VISIBILITY_TIMEOUT": 2}
    with _beat(tmp_path, **env), _worker(media_root, **env) as first:
        run_id = _request(api, users, version_id, "performance", "{}")
        assert wait_for(lambda: EvaluationRun.objects.get(pk=run_id).status == RunStatus.RUNNING, timeout=60), _log(
            first
        )
        time.sleep(3)  # past the visibility timeout: the new worker's first look at the queue gives it back
        with _worker(media_root, **env) as second:
            assert wait_for(lambda: _ended(run_id), timeout=BOUND, interval=0.2), _log(first)
            second_log = _log(second, tail=0)
    run = EvaluationRun.objects.get(pk=run_id)
    assert run.status == RunStatus.SUCCEEDED, (run.error_code, run.error_message)
    # started once, never taken for lost, finished once
    assert _events(run_id, "evaluation.requeue", *FINAL) == ["evaluation.succeed"] and run.attempts == 1
    assert "'skipped'" in second_log, f"the message was not delivered again:\n{second_log[-4000:]}"
