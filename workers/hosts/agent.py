"""The host agent: registers this machine with Charter's API as a compute host, sends heartbeats with
its GPUs' memory use and utilisation, and runs a Celery worker on the host's queue, ``host.<name>``.

No Django and no Celery here (``manage.py host_agent`` parses the command line and starts it; the
worker is a subprocess), so the agent speaks to the API only, with its host-scoped token. The worker
uses the solo pool: a task runs in the worker process itself, so CUDA is never initialised in a
process that then forks. The token is sent in a header and never logged.

Stopping: SIGTERM or SIGINT stops the heartbeats and asks the worker for a warm shutdown (it finishes
the task it is running), killing it after ``stop_timeout`` seconds. A worker that exits by itself
stops the agent too, with its exit status, so that a supervisor restarts both.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

import requests

from workers.hosts.inventory import gpu_stats, read_inventory

AGENT_VERSION = "1.0"
QUEUE_PREFIX = "host."
REQUEST_TIMEOUT = 20.0
RETRY_MAX_SECONDS = 30.0

logger = logging.getLogger("workers.hosts.agent")


def queue_for(name: str) -> str:
    return f"{QUEUE_PREFIX}{name}"


def worker_command(name: str, *, python: str = sys.executable, loglevel: str = "INFO") -> list[str]:
    """The Celery worker the agent runs: the host's queue only, solo pool, named after the host."""
    queue = queue_for(name)
    return [python, "-m", "celery", "-A", "governance", "worker", "-Q", queue, "--pool", "solo",
            "--hostname", f"{queue}@%h", "--loglevel", loglevel]  # fmt: skip


class Refused(Exception):
    """The API refused a request for good (a 4xx other than a rate limit): retrying will not help."""

    def __init__(self, status: int, code: str, detail: str):
        super().__init__(f"HTTP {status} {code}: {detail}")
        self.status, self.code, self.detail = status, code, detail


class Unreachable(Exception):
    """The API could not be reached or answered 5xx or 429: worth trying again later."""


@dataclass
class AgentConfig:
    name: str
    api_url: str
    token: str = field(repr=False)
    labels: dict[str, str] = field(default_factory=dict)
    heartbeat_seconds: float = 15.0
    run_worker: bool = True
    stop_timeout: float = 60.0
    worker_command: list[str] | None = None


class HostAgent:
    def __init__(self, config: AgentConfig, *, inventory=read_inventory, stats=gpu_stats):
        self.config = config
        self._read_inventory = inventory
        self._read_stats = stats
        self._stop = threading.Event()
        self._session = requests.Session()
        self._session.headers.update({"Authorization": f"Bearer {config.token}", "Accept": "application/json"})
        self._base = config.api_url.rstrip("/") + "/api/v1/hosts/"
        self.host_id: int | None = None
        self.exit_status = 0
        self.worker: subprocess.Popen | None = None

    # --- the API ---------------------------------------------------------------------------------

    def _post(self, url: str, body: dict) -> dict:
        try:
            response = self._session.post(url, json=body, timeout=REQUEST_TIMEOUT)
        except requests.RequestException as exc:
            raise Unreachable(f"{type(exc).__name__} reaching {url}") from None
        if response.status_code >= 500 or response.status_code == 429:
            raise Unreachable(f"HTTP {response.status_code} from {url}")
        try:
            payload = response.json()
        except ValueError:
            payload = {}
        if response.status_code >= 400:
            payload = payload if isinstance(payload, dict) else {}
            raise Refused(response.status_code, str(payload.get("code", "error")), str(payload.get("detail", "")))
        return payload

    def register(self) -> dict:
        body = {
            "name": self.config.name,
            "labels": self.config.labels,
            "inventory": self._read_inventory(),
            "agent_version": AGENT_VERSION,
        }
        host = self._post(self._base, body)
        self.host_id = int(host["id"])
        gpus = body["inventory"]["gpus"]
        logger.info(
            "Registered compute host %s (id %s, queue %s): %s.", self.config.name, self.host_id, host.get("queue"),
            f"{len(gpus)} GPU(s)" if gpus else f"no GPU: {body['inventory'].get('gpu_note')}",
        )  # fmt: skip
        return host

    def heartbeat(self) -> dict:
        if self.host_id is None:
            raise RuntimeError("Register before sending heartbeats.")
        return self._post(f"{self._base}{self.host_id}/heartbeat/", {"gpus": self._read_stats()})

    def _register_until_done(self) -> bool:
        """Register, trying again while the API is unreachable; ``False`` when stopped or refused."""
        wait = 1.0
        while not self._stop.is_set():
            try:
                self.register()
                return True
            except Unreachable as exc:
                logger.warning("Could not register yet (%s); trying again in %.0f s.", exc, wait)
            except Refused as exc:
                logger.error("The API refused the registration: %s", exc)
                self.exit_status = 2
                return False
            if self._stop.wait(wait):
                break
            wait = min(wait * 2, RETRY_MAX_SECONDS)
        return False

    def _beat(self) -> None:
        failing = False
        while not self._stop.wait(self.config.heartbeat_seconds):
            try:
                self.heartbeat()
                if failing:
                    logger.info("Heartbeats reach the API again.")
                failing = False
            except Unreachable as exc:
                if not failing:  # once per outage, not every beat
                    logger.warning("A heartbeat did not reach the API (%s); still trying.", exc)
                failing = True
            except Refused as exc:
                if exc.code == "host_not_found":  # removed on the server: register again
                    logger.warning("The API no longer knows this host; registering it again.")
                    if self._register_until_done():
                        continue
                else:
                    logger.error("The API refused a heartbeat: %s. Stopping.", exc)
                    self.exit_status = 2
                self._stop.set()

    # --- the worker ------------------------------------------------------------------------------

    def _start_worker(self) -> None:
        command = self.config.worker_command or worker_command(self.config.name)
        # its own session: a Ctrl-C on the terminal reaches the agent, which stops the worker in order
        self.worker = subprocess.Popen(command, start_new_session=True)
        logger.info("Started the Celery worker (pid %s) on queue %s.", self.worker.pid, queue_for(self.config.name))

    def _stop_worker(self) -> None:
        worker = self.worker
        if worker is None or worker.poll() is not None:
            return
        logger.info("Stopping the Celery worker (warm shutdown: it finishes its current task).")
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=self.config.stop_timeout)
        except subprocess.TimeoutExpired:
            logger.warning("The worker did not stop within %.0f s; killing it.", self.config.stop_timeout)
            worker.kill()
            worker.wait()

    # --- running ---------------------------------------------------------------------------------

    def stop(self, *_: Any) -> None:
        self._stop.set()

    def run(self, *, handle_signals: bool = True) -> int:
        if handle_signals:
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        if not self._register_until_done():
            return self.exit_status
        if self.config.run_worker:
            self._start_worker()
        beats = threading.Thread(target=self._beat, name="host-heartbeat", daemon=True)
        beats.start()
        try:
            while not self._stop.wait(0.5):
                if self.worker is not None and (code := self.worker.poll()) is not None:
                    logger.error("The Celery worker exited by itself (status %s); stopping the agent.", code)
                    self.exit_status = code or 1
                    self._stop.set()
        finally:
            self._stop.set()
            self._stop_worker()
            beats.join(timeout=REQUEST_TIMEOUT + 1)
            self._session.close()
        logger.info("Host agent stopped.")
        return self.exit_status


def parse_labels(pairs: list[str]) -> dict[str, str]:
    """``["gpu=h100", "env=prod"]`` as ``{"gpu": "h100", "env": "prod"}`` (the API checks the rules)."""
    labels: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"A label is key=value, e.g. gpu=h100: not {pair!r}.")
        labels[key.strip()] = value.strip()
    return labels
