"""The host agent for real (issue 15, point 2): ``manage.py host_agent`` as a subprocess against the live
server registers its host with a host-scoped token and sends heartbeats (seen through the API), runs a
real Celery worker on ``host.<name>`` that consumes a task sent to that queue, and stops cleanly, worker
and all, on SIGTERM. A refused registration stops it with the API's code; the token is never printed.
The inventory it reads on this machine (no GPU here, or whatever GPU there is) is what the API accepts.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.db import connection

from governance.accounts import services as accounts
from governance.core.context import audit_context
from governance.hosts import services
from tests.conftest import stop_process_group, wait_for
from workers.hosts import inventory

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_passwords")]


def _tokens(users) -> tuple[str, str]:
    """The operator's host token, and the viewer's read token (to watch through the API)."""
    with audit_context(source="cli", actor=users.operator):
        _, host = accounts.token_create(actor=users.operator, name="gpu agent", scopes=["host"])
    with audit_context(source="cli", actor=users.viewer):
        _, read = accounts.token_create(actor=users.viewer, name="watch", scopes=["read"])
    return host, read


def _start_agent(live_server, tmp_path: Path, token: str, *args: str) -> tuple[subprocess.Popen, Path]:
    token_file = tmp_path / "host-token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    log = tmp_path / "agent.log"
    db = connection.settings_dict
    env = dict(
        os.environ,
        DATABASE_URL=f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        SECRET_KEY=settings.SECRET_KEY,
        PYTHONUNBUFFERED="1",
    )
    env.pop(TOKEN_ENV := "CHARTER_HOST_TOKEN", None)
    assert TOKEN_ENV not in env
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "host_agent", "--api-url", live_server.url, "--token-file",
             str(token_file), *args],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    return proc, log


def _host(live_server, read_token: str, name: str) -> dict | None:
    r = requests.get(f"{live_server.url}/api/v1/hosts/", headers={"Authorization": f"Bearer {read_token}"},
                     params={"label": f"agent={name}"}, timeout=10)  # fmt: skip
    assert r.status_code == 200, r.text
    found = [h for h in r.json()["results"] if h["name"] == name]
    return found[0] if found else None


def _stop(proc: subprocess.Popen, timeout: float = 60) -> int:
    os.kill(proc.pid, signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process_group(proc)
        pytest.fail("the agent did not stop on SIGTERM")


def test_the_host_agent_registers_itself_and_heartbeats(live_server, users, tmp_path):
    host_token, read_token = _tokens(users)
    proc, log = _start_agent(live_server, tmp_path, host_token, "--name", "gpu-1", "--label", "agent=gpu-1",
                             "--label", "gpu=none", "--heartbeat-seconds", "0.3", "--no-worker")  # fmt: skip
    try:
        host = wait_for(lambda: _host(live_server, read_token, "gpu-1"), timeout=60)
        assert host, log.read_text()
        assert host["status"] == "online" and host["queue"] == "host.gpu-1" and host["registered_by"] == "operator"
        assert host["labels"] == {"agent": "gpu-1", "gpu": "none"} and host["agent_version"] == "1.0"
        found = host["inventory"]
        assert found["cpu_cores"] == os.cpu_count() and found["hostname"]
        assert found["gpus"] or found["gpu_note"], found  # a GPU host lists them; any other says why not
        beats = [host["last_heartbeat_at"]]

        def another_beat():
            now = _host(live_server, read_token, "gpu-1")["last_heartbeat_at"]
            if now != beats[-1]:
                beats.append(now)
            return len(beats) >= 3

        assert wait_for(another_beat, timeout=30, interval=0.1), (beats, log.read_text())
        assert beats == sorted(beats)
    finally:
        code = _stop(proc)
    output = log.read_text()
    assert code == 0, output
    assert "Registered compute host gpu-1" in output and "Host agent stopped." in output
    assert host_token not in output and host_token.split("_", 2)[2] not in output  # chr_<id>_<secret>


def test_the_agent_runs_a_celery_worker_on_the_hosts_queue_that_consumes_a_task_sent_there(
    live_server, users, tmp_path
):
    from governance.celery import app

    host_token, read_token = _tokens(users)
    proc, log = _start_agent(live_server, tmp_path, host_token, "--name", "gpu-2", "--label", "agent=gpu-2",
                             "--heartbeat-seconds", "1")  # fmt: skip
    try:
        assert wait_for(lambda: _host(live_server, read_token, "gpu-2"), timeout=60), log.read_text()
        started = wait_for(lambda: re.search(r"Started the Celery worker \(pid (\d+)\)", log.read_text()), timeout=30)
        assert started, log.read_text()
        worker_pid = int(started.group(1))
        assert wait_for(lambda: "host.gpu-2@" in log.read_text() and " ready." in log.read_text(), timeout=120), (
            log.read_text()
        )
        # routed explicitly to the host's queue: only this worker listens there
        sent = app.send_task("workers.leases.recover_expired", queue="host.gpu-2")
        done = wait_for(
            lambda: re.search(rf"Task workers\.leases\.recover_expired\[{sent.id}\] succeeded", log.read_text()),
            timeout=60,
        )  # fmt: skip
        assert done, log.read_text()
    finally:
        code = _stop(proc)
    output = log.read_text()
    assert code == 0, output
    assert "Stopping the Celery worker" in output
    with pytest.raises(ProcessLookupError):  # the worker stopped with the agent (and was reaped)
        os.kill(worker_pid, 0)
    assert host_token not in output


def test_a_refused_registration_stops_the_agent_with_the_apis_code(live_server, users, tmp_path):
    _, read_token = _tokens(users)  # a read token is no host token
    proc, log = _start_agent(live_server, tmp_path, read_token, "--name", "gpu-3", "--no-worker")
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        stop_process_group(proc)
        pytest.fail(log.read_text())
    output = log.read_text()
    assert code == 2 and "token_scope_missing" in output, output
    assert read_token not in output
    assert _host(live_server, read_token, "gpu-3") is None


def test_the_inventory_read_here_is_what_the_api_accepts(db):
    found = inventory.read_inventory()
    assert services.clean_inventory(found) == found
    assert found["cpu_cores"] >= 1 and found["memory_total_bytes"] > 0 and found["cpu_model"]
    if not found["gpus"]:  # no GPU on this machine, or no NVML: said, not failed
        assert found["gpu_note"]
        assert inventory.gpu_stats() == []
    else:
        stats = inventory.gpu_stats()
        assert services.clean_gpu_stats(stats, inventory=found) == stats


def test_the_worker_command_is_the_hosts_queue_on_the_solo_pool():
    from workers.hosts.agent import worker_command

    command = worker_command("gpu-1", python="python")
    assert command[:6] == ["python", "-m", "celery", "-A", "governance", "worker"]
    assert command[command.index("-Q") + 1] == "host.gpu-1"
    assert command[command.index("--pool") + 1] == "solo"
    assert command[command.index("--hostname") + 1] == "host.gpu-1@%h"


def test_the_agent_needs_a_url_a_token_and_labels_it_can_read(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("CHARTER_HOST_TOKEN", "CHARTER_API_URL")}
    token_file = tmp_path / "token"
    token_file.write_text("chr_000000000000_secret")
    token_file.chmod(0o600)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "manage.py", "host_agent", "--name", "gpu-1", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    no_url = run("--token-file", str(token_file))
    assert no_url.returncode != 0 and "--api-url" in no_url.stderr
    no_file = run("--api-url", "http://127.0.0.1:9", "--token-file", str(tmp_path / "missing"))
    assert no_file.returncode != 0 and "Cannot read the token file" in no_file.stderr
    no_token = run("--api-url", "http://127.0.0.1:9")
    assert no_token.returncode != 0 and "CHARTER_HOST_TOKEN" in no_token.stderr
    bad_label = run("--api-url", "http://127.0.0.1:9", "--token-file", str(token_file), "--label", "gpu")
    assert bad_label.returncode != 0 and "key=value" in bad_label.stderr
    assert "secret" not in no_url.stderr + no_file.stderr + bad_label.stderr
