"""Start and supervise one local MLServer for one environment.

One directory per environment holds everything: ``settings.json`` (written here on every start),
``mlserver.log`` (the server's output, appended), and the model repository, one folder per
release that :class:`workers.serving.mlserver.MLServerBackend` manages.

**Restart behaviour.** MLServer is started with ``load_models_at_startup`` off: in MLServer 1.7.1
one model that fails to load at startup shuts the whole server down, which would take every
healthy deployment of the environment down with it. Instead, once the server answers
``/v2/health/ready``, :meth:`MLServerProcess.start` loads every model whose
``model-settings.json`` is in the repository, one at a time, and reports the ones that failed
without stopping. The backend keeps a ``model-settings.json`` exactly for the releases Charter
wants loaded (an undeploy removes it, a failed load removes it), so after a restart what was
live is live again and nothing else is.

The process runs in its own process group (stopping it stops whatever it started: SIGTERM to the
group, then SIGKILL after a grace period) and, on Linux, is killed when the process that started
it dies, so a killed run command leaves no server holding its ports. It listens on 127.0.0.1 by
default.

Use it from Python::

    with MLServerProcess(name="staging", directory=d, http_port=8080, grpc_port=8081, metrics_port=8082) as server:
        backend = MLServerBackend(server.url, d, metrics_url=server.metrics_url)

or in the foreground (what the run command calls; restarts the server if it dies)::

    python -m workers.serving.mlserver_process --name staging --dir var/serving/staging \\
        --http-port 8080 --grpc-port 8081 --metrics-port 8082

This module talks to MLServer over HTTP only; it never imports ``mlserver``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from workers.serving.mlserver import MLServerBackend

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # so MLServer can import workers.serving.mlserver_runtime
SETTINGS_FILE = "settings.json"
LOG_FILE = "mlserver.log"
_PR_SET_PDEATHSIG = 1


class MLServerStartError(RuntimeError):
    """MLServer did not come up; the message says why and ends with the tail of its log."""


@dataclass
class StartReport:
    seconds_to_ready: float  # launch until /v2/health/ready answered
    seconds_total: float  # launch until every model in the repository was loaded again
    restored: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # model name -> why it did not load


class MLServerProcess:
    """One MLServer process serving the model repository in ``directory``."""

    def __init__(
        self,
        *,
        name: str,
        directory: str | os.PathLike[str],
        http_port: int,
        grpc_port: int,
        metrics_port: int,
        host: str = "127.0.0.1",
        startup_timeout: float = 60.0,
        stop_timeout: float = 10.0,
        log_path: str | os.PathLike[str] | None = None,
        die_with_parent: bool = True,
        extra_env: dict[str, str] | None = None,
    ):
        self.name = name
        self.directory = Path(directory).resolve()
        self.http_port, self.grpc_port, self.metrics_port = http_port, grpc_port, metrics_port
        self.host = host
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.log_path = Path(log_path) if log_path else self.directory / LOG_FILE
        self.die_with_parent = die_with_parent
        self.extra_env = dict(extra_env or {})
        self.last_start: StartReport | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    # --- addresses -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{_url_host(self.host)}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{_url_host(self.host)}:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def backend(self, **kwargs: Any) -> MLServerBackend:
        """A backend driving this server."""
        return MLServerBackend(self.url, self.directory, metrics_url=self.metrics_url, **kwargs)

    # --- lifecycle -----------------------------------------------------------------------------

    def write_settings(self) -> Path:
        """The server's ``settings.json`` in the repository root (MLServer reads it from there)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        settings = {
            "parallel_workers": 0,  # MLServer 1.7.1 with the current uvloop needs this
            "load_models_at_startup": False,  # see the module docstring: start() loads them one by one
            "debug": False,
            "host": self.host,
            "http_port": self.http_port,
            "grpc_port": self.grpc_port,
            "metrics_port": self.metrics_port,
            "server_name": f"charter-{self.name}",
            "metrics_dir": str(self.directory / ".metrics"),
            "environments_dir": str(self.directory / ".envs"),
        }
        path = self.directory / SETTINGS_FILE
        tmp = path.with_name(f".{SETTINGS_FILE}.tmp")
        tmp.write_text(json.dumps(settings, indent=2) + "\n")
        os.replace(tmp, path)
        return path

    def command(self) -> list[str]:
        script = Path(sys.executable).with_name("mlserver")
        if script.is_file():
            return [sys.executable, str(script), "start", str(self.directory)]
        return [
            sys.executable,
            "-c",
            "import sys; from mlserver.cli import main; sys.argv[0] = 'mlserver'; sys.exit(main())",
            "start",
            str(self.directory),
        ]

    def start(self) -> StartReport:
        """Launch MLServer, wait until it is ready, then load every model in the repository again.

        Raises :class:`MLServerStartError` (with the log's tail) when a port is taken, the process
        exits, or it is not ready within ``startup_timeout``.
        """
        if self.running():
            raise MLServerStartError(f"MLServer {self.name!r} is already running (pid {self.pid}).")
        for label, port in (("HTTP", self.http_port), ("gRPC", self.grpc_port), ("metrics", self.metrics_port)):
            if not _port_free(self.host, port):
                raise MLServerStartError(
                    f"MLServer {self.name!r} cannot start: its {label} port {port} on {self.host} is already in use."
                )
        self.write_settings()
        env = os.environ.copy()
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.update(self.extra_env)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop())
        self._log_file.write(f"\n--- charter: starting MLServer {self.name!r} at {time.ctime()} ---\n".encode())
        self._log_file.flush()
        started = time.monotonic()
        self._proc = subprocess.Popen(
            self.command(),
            cwd=self.directory,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() signals all of it
            preexec_fn=_die_with_parent if self.die_with_parent and sys.platform == "linux" else None,  # noqa: PLW1509
        )
        try:
            self._wait_ready(started)
            ready_after = time.monotonic() - started
            restored, failed = self.backend().restore()
        except BaseException:
            self.stop()
            raise
        for model, why in failed.items():
            log.warning("MLServer %s: %s was not loaded again: %s", self.name, model, why)
        self.last_start = StartReport(ready_after, time.monotonic() - started, restored, failed)
        return self.last_start

    def _wait_ready(self, started: float) -> None:
        deadline = started + self.startup_timeout
        session = requests.Session()
        while True:
            code = self._proc.poll() if self._proc else None
            if code is not None:
                raise MLServerStartError(
                    f"MLServer {self.name!r} exited with status {code} before it was ready.\n{self.log_tail()}"
                )
            try:
                if session.get(f"{self.url}/v2/health/ready", timeout=1.0).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise MLServerStartError(
                    f"MLServer {self.name!r} was not ready within {self.startup_timeout:.0f} s.\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def exit_code(self) -> int | None:
        return self._proc.poll() if self._proc else None

    def stop(self) -> int | None:
        """SIGTERM to the process group, SIGKILL after ``stop_timeout``; the exit status."""
        proc, self._proc = self._proc, None
        code = None
        if proc is not None:
            if proc.poll() is None:
                _signal_group(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(self.stop_timeout)
                except subprocess.TimeoutExpired:
                    _signal_group(proc.pid, signal.SIGKILL)
                    proc.wait()
            else:  # the leader is gone; a child it left behind must not hold the ports
                _signal_group(proc.pid, signal.SIGKILL)
            code = proc.returncode
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return code

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_path, "rb") as f:
                tail = deque(f, maxlen=lines)
        except OSError:
            return "(no log)"
        return "--- last lines of " + str(self.log_path) + " ---\n" + b"".join(tail).decode("utf-8", "replace")

    def __enter__(self) -> MLServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- supervision ---------------------------------------------------------------------------

    def supervise(self, stop: threading.Event, *, max_restarts: int = 5, window: float = 300.0) -> int:
        """Keep the server running until ``stop`` is set: a server that dies is started again
        (models restored), up to ``max_restarts`` times within ``window`` seconds. Returns 0 when
        stopped on request, 1 when it gave up."""
        restarts: deque[float] = deque()
        while not stop.wait(0.5):
            if self.running():
                continue
            code = self.exit_code()
            self.stop()
            now = time.monotonic()
            while restarts and now - restarts[0] > window:
                restarts.popleft()
            if len(restarts) >= max_restarts:
                log.error("MLServer %s died %d times within %.0f s; giving up.", self.name, len(restarts) + 1, window)
                return 1
            restarts.append(now)
            log.warning("MLServer %s exited with status %s; starting it again.", self.name, code)
            try:
                report = self.start()
            except MLServerStartError as exc:
                log.error("%s", exc)
                continue
            _print_ready(self, report)
        return 0


# --- helpers ---------------------------------------------------------------------------------


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):  # noqa: S104 (a listening address, not a bind)
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (for tests and ad-hoc servers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)  # the leader's pid is the group id (start_new_session)
    except (ProcessLookupError, PermissionError):
        pass


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except Exception:  # noqa: S110 (best effort: without it the server outlives a killed parent)
        pass


def _print_ready(server: MLServerProcess, report: StartReport) -> None:
    print(
        f"MLServer {server.name!r} ready in {report.seconds_total:.1f} s (pid {server.pid}): "
        f"http {server.url}  grpc {_url_host(server.host)}:{server.grpc_port}  metrics {server.metrics_url}  "
        f"repository {server.directory}  models loaded: {len(report.restored)}"
        + (f", failed: {', '.join(sorted(report.failed))}" if report.failed else ""),
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run and supervise a local MLServer for one environment.")
    parser.add_argument("--name", required=True, help="environment name, e.g. staging")
    parser.add_argument("--dir", required=True, help="model repository directory (created if missing)")
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--startup-timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    server = MLServerProcess(
        name=args.name,
        directory=args.dir,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        host=args.host,
        startup_timeout=args.startup_timeout,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        report = server.start()
    except MLServerStartError as exc:
        print(str(exc), file=sys.stderr, flush=True)
        return 1
    _print_ready(server, report)
    try:
        return server.supervise(stop)
    finally:
        server.stop()
        print(f"MLServer {args.name!r} stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
