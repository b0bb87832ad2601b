"""Issue 15 end to end, with real parts and no GPU: a host agent (``manage.py host_agent``) registers its
host and starts its own Celery worker on ``host.<name>``; a benchmark asked for through the API for that
host is routed to that queue, run there by the benchmark engine on the CPU, shown on the version page
with CPU marked, and it turns the version's ``latency`` gate from missing to passed (and failed where
the target is tighter than what was measured). An offline host, an unknown host and bad batch sizes are
refused with their codes, nothing stored; a benchmark message that reaches another queue's worker is
not run there.

Real parts: PostgreSQL, Redis, the live server, the agent and its worker as subprocesses.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from django.utils import timezone
from sklearn.linear_model import LogisticRegression

from governance.evaluations.models import EvaluationRun
from governance.hosts.models import Host
from tests.conftest import assert_error, celery_worker, wait_for
from tests.test_benchmark_gates import ONE_APPROVER
from tests.test_evaluations_api import credit_frame, csv_upload
from tests.test_evaluations_worker import FEATURES, _register
from tests.test_hosts_agent import _host, _start_agent, _stop, _tokens

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_passwords")]

HOST = "cpu-bench"
PARAMETERS = {"host": HOST, "batch_sizes": [1, 16], "warmup": 5, "min_calls": 50, "max_calls": 400,
              "time_budget_seconds": 1.0}  # fmt: skip


def _benchmark(client, version_id: int, frame, **parameters):
    return client.post("/api/v1/evaluations/", {
        "version": version_id, "kind": "benchmark", "data": csv_upload(frame[FEATURES]),
        "parameters": json.dumps({**PARAMETERS, **parameters}),
    }, format="multipart")  # fmt: skip


def _registered(*, heartbeat: dt.datetime) -> Host:
    """A host as its agent left it (registered, heard from at ``heartbeat``), written directly."""
    return Host.objects.create(name=HOST, registered_at=heartbeat, updated_at=heartbeat, last_heartbeat_at=heartbeat)


def _gate_lines(viewer, version_id: int) -> dict[str, dict]:
    r = viewer.get(f"/api/v1/versions/{version_id}/gate/", {"environment": "production"})
    assert r.status_code == 200, r.content[:300]
    return {line["label"]: line for line in r.json()["gates"] if line["kind"] == "latency"}


def test_a_benchmark_runs_on_its_hosts_own_worker_and_feeds_the_latency_gate(
    api, users, superuser, model, settings, tmp_path, monkeypatch, login, live_server
):
    frame = credit_frame(200)
    version_id = _register(api, users, model, LogisticRegression().fit(frame[FEATURES], frame["default"]))
    admin = api.as_user(superuser)
    rules = {"environments": ONE_APPROVER, "gates": [
        {"kind": "latency", "host_class": "gpu=none", "p95_ms_max": 1000},
        {"kind": "latency", "host_class": HOST, "batch_size": 16, "p95_ms_max": 0.000001},
    ]}  # fmt: skip
    created = admin.post("/api/v1/policies/", {"name": "Latency on the bench host", "rules": rules}, format="json")
    assert created.status_code == 201, created.content[:300]
    assigned = admin.post("/api/v1/policies/assign/", {"model": model.pk, "policy": created.json()["id"]},
                          format="json")  # fmt: skip
    assert assigned.status_code == 200, assigned.content[:300]
    viewer, author = api.as_user(users.viewer), api.as_user(users.author)
    assert {label: line["status"] for label, line in _gate_lines(viewer, version_id).items()} == {
        "p95 latency <= 1000 ms at batch size 1 on gpu=none": "missing",
        "p95 latency <= 1e-06 ms at batch size 16 on cpu-bench": "missing",
    }

    # the host's worker reads the test's artifact and data files, like any worker
    monkeypatch.setenv("MEDIA_ROOT", str(Path(settings.STORAGES["artifacts"]["OPTIONS"]["location"]).parent))
    host_token, read_token = _tokens(users)
    proc, log = _start_agent(live_server, tmp_path, host_token, "--name", HOST, "--label", f"agent={HOST}",
                             "--label", "gpu=none", "--heartbeat-seconds", "1")  # fmt: skip
    try:
        assert wait_for(lambda: _host(live_server, read_token, HOST), timeout=60), log.read_text()
        assert wait_for(lambda: f"host.{HOST}@" in log.read_text() and " ready." in log.read_text(), timeout=120), (
            log.read_text()
        )
        r = _benchmark(author, version_id, frame)
        assert r.status_code == 201, r.content[:300]
        run_id = r.json()["id"]

        def ended():
            return author.get(f"/api/v1/evaluations/{run_id}/").json()["status"] in ("succeeded", "failed")

        assert wait_for(ended, timeout=180, interval=0.2), log.read_text()[-3000:]
    finally:
        assert _stop(proc) == 0, log.read_text()[-3000:]
    run = EvaluationRun.objects.get(pk=run_id)
    assert run.status == "succeeded", (run.error_code, run.error_message, log.read_text()[-3000:])
    # run by the host's own worker, on the CPU, and the record says where
    assert "workers.evaluations.run_evaluation[" in log.read_text()
    assert run.environment["compute_host"] == {"name": HOST, "labels": {"agent": HOST, "gpu": "none"},
                                               "queue": f"host.{HOST}"}  # fmt: skip
    assert run.result["device"]["type"] == "cpu"
    assert [r["batch_size"] for r in run.result["results"]] == [1, 16]
    assert all(r["calls"] >= 50 and r["latency_ms"]["p95"] > 0 for r in run.result["results"])
    page = login(users.viewer).get(f"/versions/{version_id}/").content.decode()
    evidence = page[page.index('id="evidence"') :]
    assert f'>{HOST}</a> · <strong data-testid="device">CPU</strong>' in evidence, evidence[:2000]
    lines = _gate_lines(viewer, version_id)
    assert lines["p95 latency <= 1000 ms at batch size 1 on gpu=none"]["status"] == "passed"
    tight = lines["p95 latency <= 1e-06 ms at batch size 16 on cpu-bench"]
    assert tight["status"] == "failed" and "CPU" in tight["detail"], tight


def test_benchmarks_for_an_unknown_or_offline_host_or_bad_batch_sizes_are_refused(api, users, model, settings):
    frame = credit_frame(60)
    version_id = _register(api, users, model, LogisticRegression().fit(frame[FEATURES], frame["default"]))
    author = api.as_user(users.author)
    gone = timezone.now() - dt.timedelta(days=1)
    _registered(heartbeat=gone)  # its agent is gone
    before = EvaluationRun.objects.count()
    assert_error(_benchmark(author, version_id, frame, host="nowhere"), 404, "host_not_found")
    assert_error(_benchmark(author, version_id, frame), 409, "host_offline")
    for bad in ({"batch_sizes": [0]}, {"batch_sizes": [70_000]}, {"batch_sizes": []}, {"batch_sizes": [8, 8]},
                {"min_calls": 500, "max_calls": 100}, {"device": "tpu"}):  # fmt: skip
        assert_error(_benchmark(author, version_id, frame, **bad), 400, "invalid_parameters")
    assert EvaluationRun.objects.count() == before


def test_a_benchmark_that_reaches_another_queues_worker_is_not_run_there(api, users, model, settings):
    """A hand-made message (or a misrouted one) puts a benchmark on the general evaluations queue: its
    figures would be taken for the host's, so that worker fails it with ``wrong_host``."""
    from governance.celery import app

    frame = credit_frame(60)
    version_id = _register(api, users, model, LogisticRegression().fit(frame[FEATURES], frame["default"]))
    _registered(heartbeat=timezone.now())
    r = _benchmark(api.as_user(users.author), version_id, frame)
    assert r.status_code == 201, r.content[:300]
    run_id = r.json()["id"]
    media_root = Path(settings.STORAGES["artifacts"]["OPTIONS"]["location"]).parent
    with celery_worker(queues="evaluations", media_root=media_root):
        app.send_task("workers.evaluations.run_evaluation", args=[run_id], queue="evaluations")
        assert wait_for(lambda: EvaluationRun.objects.get(pk=run_id).status == "failed", timeout=60)
    run = EvaluationRun.objects.get(pk=run_id)
    assert run.error_code == "wrong_host" and f"host.{HOST}" in run.error_message
