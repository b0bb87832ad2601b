#!/usr/bin/env python
"""Registry API under concurrent CI clients: Charter (gunicorn) next to MLflow's tracking server.

Prints figures; it is not a test. Both servers run here on loopback against the same
PostgreSQL, one at a time, and the same client loop drives each: 16 concurrent clients for
--duration seconds (after --warmup seconds not counted), each registering a version of a
random model and, every fifth iteration, listing that model's newest 50 versions.

- Charter: ``POST /api/v1/versions/`` (multipart, a small fresh artifact each time, hashed,
  stored content-addressed and audited) with a write-scoped API token, and
  ``GET /api/v1/versions/?model=<id>&page_size=50``; served by ``gunicorn governance.wsgi``
  in each --charter configuration (sync or gthread workers).
- MLflow: ``POST /api/2.0/mlflow/model-versions/create {name, source}`` (metadata only: the
  source is a URI, no bytes are sent) and ``GET /api/2.0/mlflow/model-versions/search?
  filter=name='<m>'&max_results=50&order_by=version_number DESC``; ``mlflow server`` with
  --mlflow-workers workers (uvicorn in MLflow 3.x), its background job runner off.

Before each load run, the first page of the newest 50 versions of a model holding 200,000
versions (seeded straight into each backend's tables with INSERT ... SELECT generate_series)
is timed on the idle server (median of 30 requests over HTTP).

Prints ops/s, p50/p95/p99 latency and errors per run, and the ratios Charter/MLflow for ops/s
and p95. Reference from the issue: MLflow 3.17, 2 workers: ~210 ops/s, p95 ~100 ms, 85 ms for
the first page of a 200,000-version model. Target: Charter >= 2x MLflow's ops/s at a lower p95.

Usage, from a clone whose .venv/ holds requirements/base.lock (``scripts/run.sh`` or ``scripts/test.sh`` create it)::

    export DATABASE_URL=postgres://postgres@127.0.0.1:5544/charter_bench   # WIPED; name must contain "bench"
    python3 -m venv var/bench/mlflow-venv && var/bench/mlflow-venv/bin/pip install mlflow psycopg2-binary
    .venv/bin/python bench/api_concurrency.py                 # about 4 minutes
    .venv/bin/python bench/api_concurrency.py --duration 10 --charter sync:2 --mlflow-workers 2   # quick
    .venv/bin/python bench/api_concurrency.py --no-mlflow    # Charter only

MLflow's database is ``mlflow_bench`` on the same server (dropped and recreated each run;
override with MLFLOW_BENCH_DATABASE_URL); its executable is var/bench/mlflow-venv/bin/mlflow
(override with --mlflow-bin). MLflow stays out of Charter's lock files. Artifacts and logs go
to a temporary CHARTER_VAR_DIR; every server started here is stopped at exit.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    ROOT,
    checkpoint,
    heading,
    median,
    percentile,
    purge_broker,
    seed_versions,
    setup_django,
    vacuum_analyze,
    wipe,
)

BIG_VERSIONS = 200_000


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before measuring")
    parser.add_argument("--models", type=int, default=100, help="models the clients register versions of")
    parser.add_argument("--big", type=int, default=BIG_VERSIONS, help="versions of the big model")
    parser.add_argument(
        "--charter",
        default="sync:2,gthread:2x2",
        help="gunicorn configurations: sync:<workers> or gthread:<workers>x<threads>, comma-separated",
    )
    parser.add_argument("--mlflow-workers", default="2", help="comma-separated worker counts for mlflow server")
    parser.add_argument("--no-mlflow", action="store_true")
    parser.add_argument("--mlflow-bin", default=str(ROOT / "var/bench/mlflow-venv/bin/mlflow"))
    parser.add_argument("--force", action="store_true", help="allow a database whose name lacks 'bench'")
    return parser.parse_args()


# --- processes --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(cmd: list[str], *, env: dict, cwd: Path, log: Path, ready_url: str, timeout: float = 180):
    """Start a server in its own process group; wait until it answers; kill the whole group at exit."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        parts = urlsplit(ready_url)
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[0]} exited with {proc.returncode}; see {log}:\n{log.read_text()[-2000:]}")
            try:
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=2)
                conn.request("GET", parts.path or "/")
                conn.getresponse().read()
                conn.close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{cmd[0]} did not answer within {timeout:.0f}s; see {log}") from None
                time.sleep(0.5)
        yield proc
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        with suppress(ProcessLookupError):  # stragglers of the group (e.g. MLflow's helpers)
            os.killpg(proc.pid, signal.SIGKILL)


# --- the client loop --------------------------------------------------------------------------


@dataclass
class Sample:
    started: float
    seconds: float
    kind: str
    ok: bool


@dataclass
class RunResult:
    label: str
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    duration: float = 0.0
    load: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds over the measured window, by process group

    def measured(self, kind: str | None = None) -> list[float]:
        return [s.seconds for s in self.samples if s.ok and (kind is None or s.kind == kind)]

    @property
    def ops_per_s(self) -> float:
        return len(self.measured()) / self.duration

    @property
    def error_count(self) -> int:
        return sum(1 for s in self.samples if not s.ok)


class Api:
    """One client's keep-alive HTTP connection (reopened when the server closes it)."""

    def __init__(self, base: str, headers: dict[str, str]):
        parts = urlsplit(base)
        self.host, self.port, self.headers = parts.hostname, parts.port, headers
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)

    def call(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
        all_headers = {**self.headers, **(headers or {})}
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=body, headers=all_headers)
                response = self.conn.getresponse()
                data = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                return response.status, data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()  # a keep-alive connection the server had already dropped: retry once
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = []
    for name, value in fields.items():
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, content) in files.items():
        out.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
            + content
            + b"\r\n"
        )
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"


def cpu_snapshot(server_pgid: int, db_name: str) -> dict[str, float]:
    """CPU seconds used so far by the server's process group, the PostgreSQL backends of its
    database, this client process, and the whole machine (busy and total, from /proc/stat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {"server": 0.0, "postgres": 0.0, "client": 0.0}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        used = (int(fields[11]) + int(fields[12])) / ticks
        if int(fields[2]) == server_pgid:
            out["server"] += used
        elif int(entry) == os.getpid():
            out["client"] += used
        elif cmdline.startswith("postgres:") and f" {db_name} " in cmdline:
            out["postgres"] += used
    cpu_line = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    jiffies = [int(x) for x in cpu_line]
    out["machine_total"] = sum(jiffies[:8]) / ticks
    out["machine_idle"] = (jiffies[3] + jiffies[4]) / ticks
    return out


def drive(
    label: str, make_client, register, list_newest, models: list, args, *, server_pgid=0, db_name=""
) -> RunResult:
    """``args.clients`` threads loop for warmup + duration: register, and list every fifth iteration."""
    result = RunResult(label)
    lock = threading.Lock()
    start = time.perf_counter()
    measure_from = start + args.warmup
    stop = measure_from + args.duration

    def client(n: int):
        rng = random.Random(n)
        api = make_client()
        i = 0
        local: list[Sample] = []
        while True:
            i += 1
            model = models[rng.randrange(len(models))]
            ops = [("register", register)] + ([("list", list_newest)] if i % 5 == 0 else [])
            for kind, op in ops:
                began = time.perf_counter()
                if began >= stop:
                    with lock:
                        result.samples.extend(local)
                    return
                try:
                    status, body = op(api, model, rng)
                    ok = 200 <= status < 300
                    if not ok and len(result.errors) < 1000:
                        with lock:
                            result.errors.append(f"{kind} {status}: {body[:200]!r}")
                except Exception as exc:  # counted, and the loop goes on
                    ok = False
                    if len(result.errors) < 1000:
                        with lock:
                            result.errors.append(f"{kind}: {type(exc).__name__}: {exc}")
                    api = make_client()
                ended = time.perf_counter()
                if began >= measure_from:
                    local.append(Sample(began, ended - began, kind, ok))

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(args.clients)]
    for t in threads:
        t.start()
    time.sleep(max(0.0, measure_from - time.perf_counter()))
    before = cpu_snapshot(server_pgid, db_name)
    time.sleep(max(0.0, stop - time.perf_counter()))
    after = cpu_snapshot(server_pgid, db_name)
    result.cpu = {key: after[key] - before[key] for key in after}
    for t in threads:
        t.join()
    result.duration = args.duration
    result.load = os.getloadavg()[0]
    return result


def first_page(make_client, list_newest, big, runs: int = 30) -> tuple[float, float]:
    api = make_client()
    rng = random.Random(0)
    for _ in range(5):
        status, body = list_newest(api, big, rng)
        if status != 200:
            raise RuntimeError(f"listing the big model answered {status}: {body[:300]!r}")
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        list_newest(api, big, rng)
        times.append(time.perf_counter() - began)
    return median(times), percentile(times, 95)


# --- Charter ----------------------------------------------------------------------------------


@dataclass
class CharterSetup:
    secret: str
    model_ids: list[int]
    big_id: int


def charter_seed(args) -> CharterSetup:
    from django.contrib.auth import get_user_model

    from governance.accounts import services as accounts
    from governance.accounts.models import Role
    from governance.core.context import audit_context
    from governance.registry import services as registry

    User = get_user_model()
    heading("Charter: seeding (database wiped first)")
    wipe()
    root = User.objects.create_superuser("bench-root", "root@bench.invalid", "bench-password")
    with audit_context(source="cli", actor=root):
        team = accounts.team_create(actor=root, name="Bench CI")
        ci = User.objects.create_user("bench-ci", "ci@bench.invalid", "bench-password")
        for role in (Role.VIEWER, Role.AUTHOR):
            accounts.membership_add(actor=root, team=team, user=ci, role=role)
    with audit_context(source="cli", actor=ci):
        _, secret = accounts.token_create(actor=ci, name="bench", scopes=["read", "write"], team=team)
        model_ids = [
            registry.model_create(actor=ci, team=team, name=f"bench-model-{i:03d}").pk for i in range(args.models)
        ]
        big = registry.model_create(actor=ci, team=team, name="big-model")
    started = time.perf_counter()
    seed_versions(counts={big.pk: args.big}, creator_id=ci.pk)
    vacuum_analyze("registry_modelversion", "registry_registeredmodel")
    print(f"{args.models} models through the services, big model #{big.pk} with {args.big:,} versions by SQL "
          f"({time.perf_counter() - started:.1f}s)")  # fmt: skip
    return CharterSetup(secret=secret, model_ids=model_ids, big_id=big.pk)


def charter_ops(setup: CharterSetup, base: str):
    auth = {"Authorization": f"Bearer {setup.secret}", "Host": "127.0.0.1"}

    def make_client():
        return Api(base, auth)

    def register(api: Api, model_id: int, rng: random.Random):
        body, content_type = multipart(
            {"model": str(model_id), "description": "Registered by bench/api_concurrency.py"},
            {"artifact": ("model.joblib", rng.randbytes(256))},
        )
        return api.call("POST", "/api/v1/versions/", body, {"Content-Type": content_type})

    def list_newest(api: Api, model_id: int, rng: random.Random):
        return api.call("GET", f"/api/v1/versions/?model={model_id}&page_size=50")

    return make_client, register, list_newest


def gunicorn_cmd(spec: str, port: int) -> list[str]:
    kind, _, size = spec.partition(":")
    cmd = [str(ROOT / ".venv/bin/gunicorn"), "governance.wsgi", "-b", f"127.0.0.1:{port}", "--timeout", "120"]
    if kind == "sync":
        return cmd + ["-w", size, "-k", "sync"]
    if kind == "gthread":
        workers, _, threads = size.partition("x")
        return cmd + ["-w", workers, "-k", "gthread", "--threads", threads or "4"]
    raise SystemExit(f"Unknown gunicorn configuration {spec!r}: use sync:<workers> or gthread:<workers>x<threads>")


def run_charter(args, setup: CharterSetup, var_dir: Path) -> list[tuple[RunResult, tuple[float, float]]]:
    env = {**os.environ, "DEBUG": "0", "LOG_LEVEL": "WARNING", "CHARTER_VAR_DIR": str(var_dir)}
    out = []
    from django.db import connection

    for spec in [s.strip() for s in args.charter.split(",") if s.strip()]:
        checkpoint(connection)  # the previous run's writes flushed before this one, as for MLflow's seed
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = var_dir / f"gunicorn-{spec.replace(':', '-')}.log"
        heading(f"Charter, gunicorn {spec}: {args.clients} clients x {args.duration:.0f}s")
        with server(gunicorn_cmd(spec, port), env=env, cwd=ROOT, log=log, ready_url=f"{base}/api/v1/") as proc:
            make_client, register, list_newest = charter_ops(setup, base)
            page = first_page(make_client, list_newest, setup.big_id)
            print(
                f"first page, newest 50 of {args.big:,} versions: median {page[0] * 1000:.1f} ms, p95 {page[1] * 1000:.1f} ms"
            )
            result = drive(
                f"Charter {spec}", make_client, register, list_newest, setup.model_ids, args,
                server_pgid=proc.pid, db_name=charter_db_name(),
            )  # fmt: skip
            after = first_page(make_client, list_newest, setup.big_id)
        report(result, after)
        out.append((result, page))
    return out


def charter_db_name() -> str:
    from django.db import connection

    return connection.settings_dict["NAME"]


# --- MLflow -----------------------------------------------------------------------------------


def mlflow_db_url() -> str:
    explicit = os.environ.get("MLFLOW_BENCH_DATABASE_URL")
    if explicit:
        return explicit
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(("postgresql", parts.netloc, "/mlflow_bench", "", ""))


def recreate_database(url: str) -> None:
    from django.db import connection

    name = urlsplit(url).path.lstrip("/")
    if "bench" not in name:
        raise SystemExit(f"Refusing to drop MLflow database {name!r}: its name does not contain 'bench'.")
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{name}"')


def mlflow_seed_big(url: str, name: str, n: int) -> None:
    """``n`` versions of one registered model, straight into MLflow's model_versions table."""
    import psycopg

    now_ms = int(time.time() * 1000)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO model_versions (name, version, creation_time, last_updated_time, description, user_id,
                                        current_stage, source, run_id, status, status_message, run_link,
                                        storage_location, workspace)
            SELECT m.name, g, %(t0)s::bigint + g, %(t0)s::bigint + g, '', NULL, 'None',
                   'mlflow-artifacts:/bench/' || m.name || '/' || g, '', 'READY', NULL, '',
                   'mlflow-artifacts:/bench/' || m.name || '/' || g, 'default'
              FROM (SELECT %(name)s::varchar AS name) m, generate_series(1, %(n)s::int) AS g
            """,
            {"name": name, "n": n, "t0": now_ms - n - 1000},
        )
        conn.execute("UPDATE registered_models SET last_updated_time = %s WHERE name = %s", (now_ms, name))
        conn.execute("VACUUM ANALYZE model_versions")
        conn.execute("VACUUM ANALYZE registered_models")
        checkpoint(conn)


def mlflow_ops(base: str):
    json_headers = {"Content-Type": "application/json", "Host": "127.0.0.1"}

    def make_client():
        return Api(base, {"Host": "127.0.0.1"})

    def register(api: Api, name: str, rng: random.Random):
        body = json.dumps({"name": name, "source": f"s3://bench-artifacts/{name}/{rng.getrandbits(64):016x}"})
        return api.call("POST", "/api/2.0/mlflow/model-versions/create", body.encode(), json_headers)

    def list_newest(api: Api, name: str, rng: random.Random):
        query = urlencode({"filter": f"name='{name}'", "max_results": 50, "order_by": "version_number DESC"})
        return api.call("GET", f"/api/2.0/mlflow/model-versions/search?{query}")

    return make_client, register, list_newest


def run_mlflow(args, var_dir: Path) -> list[tuple[RunResult, tuple[float, float]]]:
    mlflow = Path(args.mlflow_bin)
    if not mlflow.exists():
        print(f"\n(MLflow not found at {mlflow}; install it with: python3 -m venv var/bench/mlflow-venv && "
              "var/bench/mlflow-venv/bin/pip install mlflow psycopg2-binary)")  # fmt: skip
        return []
    version = subprocess.run([str(mlflow), "--version"], capture_output=True, text=True).stdout.strip()
    url = mlflow_db_url()
    store_uri = url.replace("postgresql://", "postgresql+psycopg2://", 1).replace(
        "postgres://", "postgresql+psycopg2://", 1
    )
    out = []
    for workers in [w.strip() for w in args.mlflow_workers.split(",") if w.strip()]:
        heading(f"MLflow ({version}), {workers} workers: {args.clients} clients x {args.duration:.0f}s")
        recreate_database(url)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        workdir = Path(tempfile.mkdtemp(prefix="mlflow-", dir=var_dir))
        cmd = [
            str(mlflow), "server", "--backend-store-uri", store_uri, "--host", "127.0.0.1", "--port", str(port),
            "--workers", workers, "--artifacts-destination", str(workdir / "artifacts"),
        ]  # fmt: skip
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        env.pop("DATABASE_URL", None)
        with server(cmd, env=env, cwd=workdir, log=workdir / "server.log", ready_url=f"{base}/health") as proc:
            make_client, register, list_newest = mlflow_ops(base)
            api = make_client()
            names = [f"bench-model-{i:03d}" for i in range(args.models)]
            for name in [*names, "big-model"]:
                status, body = api.call(
                    "POST", "/api/2.0/mlflow/registered-models/create", json.dumps({"name": name}).encode(),
                    {"Content-Type": "application/json"},
                )  # fmt: skip
                if status != 200:
                    raise RuntimeError(f"MLflow refused to create {name}: {status} {body[:200]!r}")
            started = time.perf_counter()
            mlflow_seed_big(url.replace("postgresql+psycopg2://", "postgresql://"), "big-model", args.big)
            print(f"{args.models} registered models through the API, big-model with {args.big:,} versions by SQL "
                  f"({time.perf_counter() - started:.1f}s)")  # fmt: skip
            page = first_page(make_client, list_newest, "big-model")
            print(
                f"first page, newest 50 of {args.big:,} versions: median {page[0] * 1000:.1f} ms, p95 {page[1] * 1000:.1f} ms"
            )
            result = drive(
                f"MLflow {workers}w", make_client, register, list_newest, names, args,
                server_pgid=proc.pid, db_name=urlsplit(url).path.lstrip("/"),
            )  # fmt: skip
            after = first_page(make_client, list_newest, "big-model")
        report(result, after)
        out.append((result, page))
    return out


# --- report -----------------------------------------------------------------------------------


def fmt_ms(values: list[float], p: float) -> str:
    return f"{percentile(values, p) * 1000:7.1f}" if values else "      -"


def report(result: RunResult, page_after: tuple[float, float]) -> None:
    every = result.measured()
    print(
        f"{result.label}: {result.ops_per_s:.0f} ops/s over {result.duration:.0f}s, {result.error_count} errors "
        f"(1-min load average at the end: {result.load:.1f})"
    )
    print(f"  {'ops':<10} {'count':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7}")
    for kind in (None, "register", "list"):
        values = result.measured(kind)
        print(f"  {kind or 'all':<10} {len(values):>7} {fmt_ms(values, 50)} {fmt_ms(values, 95)} {fmt_ms(values, 99)}")
    if not every:
        print("  no successful operation")
    ops = len(every) or 1
    cpu = result.cpu
    if cpu:
        busy = 1 - cpu["machine_idle"] / cpu["machine_total"] if cpu["machine_total"] else float("nan")
        others = cpu["machine_total"] - cpu["machine_idle"] - cpu["server"] - cpu["postgres"] - cpu["client"]
        print(
            f"  CPU per operation: server {cpu['server'] / ops * 1000:.1f} ms, its PostgreSQL backends "
            f"{cpu['postgres'] / ops * 1000:.1f} ms, client {cpu['client'] / ops * 1000:.1f} ms, everything else "
            f"{others / ops * 1000:.1f} ms; machine {busy:.0%} busy"
        )
    print(
        f"  first page of the big model again, after the run ({len(result.measured('register')):,} registrations measured): "
        f"median {page_after[0] * 1000:.1f} ms, p95 {page_after[1] * 1000:.1f} ms"
    )
    for line in sorted(set(result.errors))[:5]:
        print(f"  error: {line}")


def summary(charter, mlflow, args) -> None:
    heading("Summary")
    rows = charter + mlflow
    print(
        f"  {'server':<22} {'ops/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'errors':>7} {'1st page ms':>12} {'load':>5}"
    )
    for result, page in rows:
        values = result.measured()
        print(
            f"  {result.label:<22} {result.ops_per_s:>7.0f} {fmt_ms(values, 50)} {fmt_ms(values, 95)} "
            f"{fmt_ms(values, 99)} {result.error_count:>7} {page[0] * 1000:>12.1f} {result.load:>5.1f}"
        )
    if not mlflow:
        return
    reference, ref_page = mlflow[0]
    ref_p95 = percentile(reference.measured(), 95)
    print(f"\n  against {reference.label} (target: ops/s ratio >= 2.0 and p95 ratio < 1.0):")
    for result, page in charter:
        p95 = percentile(result.measured(), 95)
        verdict = "meets" if result.ops_per_s >= 2 * reference.ops_per_s and p95 < ref_p95 else "MISSES"
        print(
            f"  {result.label:<22} ops/s {result.ops_per_s / reference.ops_per_s:5.2f}x   p95 {p95 / ref_p95:5.2f}x   "
            f"first page {page[0] / ref_page[0]:5.2f}x   {verdict} the target"
        )


def main():
    args = parse_args()
    setup_django(force=args.force)
    var_dir = Path(os.environ["CHARTER_VAR_DIR"])
    print(f"CHARTER_VAR_DIR={var_dir}; {os.cpu_count()} CPUs; clients on this machine too")
    setup = charter_seed(args)
    try:
        charter = run_charter(args, setup, var_dir)
    finally:
        purge_broker()
    mlflow = [] if args.no_mlflow else run_mlflow(args, var_dir)
    summary(charter, mlflow, args)


if __name__ == "__main__":
    main()
