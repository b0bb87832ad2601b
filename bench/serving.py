#!/usr/bin/env python
"""Serving through Charter against MLServer driven by hand: deploy latency and prediction throughput.

Prints figures; it is not a test. Everything is real: PostgreSQL, Redis, a Celery worker on the
``deploy`` queue (a subprocess, solo pool, as in production), and one MLServer process (the staging
environment's, started with ``workers.serving.mlserver_process.MLServerProcess`` on free ports). The
model is a real scikit-learn estimator serialised with joblib; every version of it is registered,
inspected, approved for staging under a policy without gates, and given a probe request, as in
``tests/test_serving_e2e.py``. Two figures, each as a ratio against a reference measured in the
same run:

1. **Deploy request -> first successful prediction.** ``POST /api/v1/deployment-actions/`` through
   Django's test client (every middleware, an operator's API token with scope ``deploy``), then the
   new release's Open Inference Protocol endpoint is polled until it answers 200. Each deploy is a
   new version replacing the live one, as a CI pipeline does. Reference: a folder holding the same
   model file already in MLServer's repository, ``POST /v2/repository/models/<name>/load`` then one
   predict. One warm-up of each first, then rounds interleaved (the order flips every round). Also
   printed: request -> action succeeded (the worker also unloads the replaced release and records
   the outcome), and where the time goes, from the action's own step log. Target: <= 1.5x.
   Charter's part is mostly a fixed cost (the request, the queue, the checks again in the worker, each
   a few dozen SQL statements) plus the copy and sha256 of the bytes: ``--model all`` prints the
   figure for each model in turn and then side by side, to show how it compares with loads of 1 KB to
   58 MB.
2. **Predictions per second** through the release Charter deployed against the same file loaded in
   the same MLServer directly, with the same client (N threads, a closed loop over keep-alive
   connections), the same payload bytes, interleaved A/B rounds; with MLServer's CPU per request
   in each round (from /proc: steadier than req/s on a shared machine), then both at once, where
   MLServer's own per-model inference time (its metrics port) compares them under the very same
   conditions. Target: 1.0x (Charter adds nothing to the predict path).

    export DATABASE_URL=postgres://postgres@127.0.0.1:5544/charter_bench   # WIPED; name must contain "bench"
    export CELERY_BROKER_URL=redis://127.0.0.1:6390/3
    .venv/bin/python bench/serving.py                              # about 75 s on 2 cores
    .venv/bin/python bench/serving.py --model logreg               # the tests' tiny model (~1 KB)
    .venv/bin/python bench/serving.py --model forest-large         # ~58 MB: where per-byte costs show
    .venv/bin/python bench/serving.py --model all --rounds 2       # figure 1 for the three, side by side
    .venv/bin/python bench/serving.py --deploys 3 --rounds 2 --seconds 1   # quick
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, heading, median, ms, percentile, setup_django, wipe  # noqa: E402

ENVIRONMENT = "staging"
# name: features, (training rows, label noise), the estimator
MODELS = {
    "logreg": (4, (2000, 0.0), lambda lr, rf: lr(C=0.5)),  # the serving tests' model, ~1 KB
    "forest": (20, (2000, 0.0), lambda lr, rf: rf(n_estimators=100, max_depth=10, random_state=0)),  # ~1.7 MB
    "forest-large": (20, (20000, 0.5), lambda lr, rf: rf(n_estimators=200, random_state=0, n_jobs=2)),  # ~58 MB
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=[*MODELS, "all"], default="forest",
                        help="logreg: the serving tests' LogisticRegression (~1 KB); forest: a RandomForest of 100 "
                        "trees of depth 10 (~1.7 MB); forest-large: 200 unbounded trees on noisy labels (~58 MB); "
                        "all: figure 1 for each of them in turn, then a table of the three (figure 2 with the last)")  # fmt: skip
    parser.add_argument("--deploys", type=int, default=5, help="timed deploys (and as many reference loads)")
    parser.add_argument("--threads", type=int, default=4, help="client threads of the throughput loop")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one throughput round")
    parser.add_argument("--rounds", type=int, default=10, help="throughput rounds per side (interleaved)")
    parser.add_argument("--batch", type=int, default=1, help="rows per prediction request")
    parser.add_argument("--poll", type=float, default=0.01, help="seconds between polls of the new release")
    parser.add_argument("--force", action="store_true", help="allow a database whose name lacks 'bench'")
    return parser.parse_args()


# --- the model --------------------------------------------------------------------------------


def training_data(n_features: int, seed: int, n: int = 2000, noise: float = 0.0):
    import numpy as np

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features))
    signal_ = X[:, 0] - 0.5 * X[:, 1] + 0.25 * X[:, 2] * X[:, 3]
    return X, (signal_ + noise * rng.normal(size=n) > 0).astype(int)


def trained(kind: str, n_versions: int) -> list[bytes]:
    """The model trained once and serialised ``n_versions`` times, each copy marked with its number
    (other bytes, another sha256, the same load and predict cost)."""
    import joblib
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    n_features, (n_rows, noise), make = MODELS[kind]
    X, y = training_data(n_features, 0, n_rows, noise)
    estimator = make(LogisticRegression, RandomForestClassifier).fit(X, y)
    contents = []
    for number in range(1, n_versions + 1):
        estimator.charter_bench_version = number
        buffer = io.BytesIO()
        joblib.dump(estimator, buffer)
        contents.append(buffer.getvalue())
    return contents


def oip(X) -> dict:
    import numpy as np

    X = np.asarray(X, dtype=float)
    return {"inputs": [{"name": "predict", "shape": list(X.shape), "datatype": "FP64", "data": X.ravel().tolist()}]}


# --- MLServer, by hand -----------------------------------------------------------------------


def free_base_port() -> int:
    """An HTTP port whose gRPC (+100) and metrics (+200) neighbours are free too (the settings' layout)."""
    from workers.serving.mlserver_process import _port_free

    for _ in range(200):
        port = random.randint(20000, 40000)
        if all(_port_free("127.0.0.1", p) for p in (port, port + 100, port + 200)):
            return port
    raise SystemExit("No free ports for a local MLServer.")


class Http:
    """One keep-alive connection to MLServer (``http.client``: the least client CPU per request)."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def post(self, path: str, body: bytes = b"{}") -> tuple[int, bytes]:
        try:
            self.conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            response = self.conn.getresponse()
            return response.status, response.read()
        except (http.client.HTTPException, OSError):
            self.conn.close()  # uvicorn may drop the connection after an error: reconnect on the next call
            return 0, b""


def place_by_hand(repository: Path, name: str, content: bytes) -> None:
    """What an operator does without Charter: the file and its model settings in the repository."""
    folder = repository / name
    folder.mkdir(parents=True)
    (folder / "model.joblib").write_bytes(content)
    settings = {
        "name": name,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib"},
    }
    (folder / "model-settings.json").write_text(json.dumps(settings))


def load_and_predict(http_: Http, name: str, payload: bytes) -> float:
    started = time.perf_counter()
    status, body = http_.post(f"/v2/repository/models/{name}/load")
    if status != 200:
        raise SystemExit(f"MLServer did not load {name}: HTTP {status} {body[:300]!r}")
    status, body = http_.post(f"/v2/models/{name}/infer", payload)
    if status != 200:
        raise SystemExit(f"MLServer did not predict with {name}: HTTP {status} {body[:300]!r}")
    return time.perf_counter() - started


def unload(http_: Http, name: str) -> None:
    status, body = http_.post(f"/v2/repository/models/{name}/unload")
    if status not in (200, 404):
        raise SystemExit(f"MLServer did not unload {name}: HTTP {status} {body[:300]!r}")


# --- Charter ---------------------------------------------------------------------------------


def purge_queues(*names: str) -> None:
    """Messages left in the broker by earlier runs name action ids the wipe has reused: drop them."""
    from governance.celery import app

    with app.connection_for_write() as conn:
        for name in names:
            conn.default_channel.queue_purge(name)


def start_worker() -> subprocess.Popen:
    log = open(Path(os.environ["CHARTER_VAR_DIR"]) / "bench-serving-worker.log", "ab")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "governance", "worker", "-Q", "deploy", "--pool", "solo",
         "--without-heartbeat", "--without-mingle", "--without-gossip", "--loglevel", "WARNING"],
        cwd=ROOT, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def stop_worker(worker: subprocess.Popen) -> None:
    os.killpg(worker.pid, signal.SIGTERM)
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)


def seed(kind: str, n_versions: int, probe: dict):
    """A team, its people, a model under a policy without gates, and ``n_versions`` approved versions
    (the model named after ``kind``: each kind's releases have their own names in the one MLServer)."""
    from django.contrib.auth import get_user_model
    from django.core.files.uploadedfile import SimpleUploadedFile

    from governance.accounts import services as accounts
    from governance.accounts.models import Role
    from governance.approvals import services as approvals
    from governance.core.context import audit_context
    from governance.registry import services as registry
    from governance.serving import services as serving
    from workers.artifacts import inspect_artifact

    User = get_user_model()
    root = User.objects.create_superuser("bench-root", "root@bench.invalid", "x")
    people = {role: User.objects.create_user(f"bench-{role}", f"{role}@bench.invalid", "x")
              for role in (Role.AUTHOR, Role.APPROVER, Role.OPERATOR)}  # fmt: skip
    with audit_context(source="cli", actor=root):
        team = accounts.team_create(actor=root, name="Bench")
        for role, user in people.items():
            accounts.membership_add(actor=root, team=team, user=user, role=role)
        rules = {"environments": {e: {"min_approvals": 1, "roles": [{"role": "approver"}]}
                                  for e in ("staging", "production")}, "gates": []}  # fmt: skip
        policy = approvals.policy_create(actor=root, name="Bench serving policy", rules=rules)
    for user in people.values():
        user.__dict__.pop("_charter_roles", None)
    author, approver, operator = people[Role.AUTHOR], people[Role.APPROVER], people[Role.OPERATOR]
    with audit_context(source="cli", actor=author):
        model = registry.model_create(actor=author, team=team, name=f"bench-{kind}")
    with audit_context(source="cli", actor=root):
        approvals.policy_assign(actor=root, policy=policy, model=model)
    versions, contents = [], trained(kind, n_versions)
    for content in contents:
        with audit_context(source="cli", actor=author):
            version = registry.version_create(
                actor=author, model=model, artifact=SimpleUploadedFile("model.joblib", content)
            )
        with audit_context(source="task", actor=author):
            inspect_artifact.run(version.pk)
        with audit_context(source="cli", actor=author):
            request = approvals.request_review(actor=author, version=version, environments=[ENVIRONMENT])
        with audit_context(source="cli", actor=approver):
            approvals.request_decide(actor=approver, request=request, decision="approve")
        with audit_context(source="cli", actor=author):
            serving.probe_set(actor=author, version=version, payload=probe)
        version.refresh_from_db()
        if version.stage != "approved":
            raise SystemExit(f"Version {version.number} is {version.stage}, not approved.")
        versions.append(version)
    with audit_context(source="cli", actor=operator):
        _, secret = accounts.token_create(actor=operator, name="bench-ci", scopes=["read", "deploy"])
    return versions, contents, secret


def deploy_through_charter(client, environment_id: int, version, release: str, mlserver: Http, payload: bytes, poll):
    """POST the deploy, poll the release until it predicts, then wait for the action to end."""
    from governance.serving.models import DeploymentAction

    wall = time.time()
    started = time.perf_counter()
    response = client.post(
        "/api/v1/deployment-actions/",
        {"kind": "deploy", "environment": environment_id, "version": version.pk, "reason": "bench"},
        content_type="application/json",
    )
    posted = time.perf_counter() - started
    if response.status_code != 201:
        raise SystemExit(f"The deploy request answered {response.status_code}: {response.content[:500]!r}")
    action_id = response.json()["id"]
    polls = 0
    while True:
        polls += 1
        status, _ = mlserver.post(f"/v2/models/{release}/infer", payload)
        if status == 200:
            first = time.perf_counter() - started
            break
        if time.perf_counter() - started > 120:
            raise SystemExit(f"{release} did not answer within 120 s (action #{action_id}).")
        time.sleep(poll)
    while True:
        action = DeploymentAction.objects.get(pk=action_id)
        if not action.in_flight:
            break
        time.sleep(0.02)
    if action.status != "succeeded":
        raise SystemExit(f"Action #{action_id} ended {action.status}: {action.error_code} {action.error_message}")
    return {
        "posted": posted, "first": first, "polls": polls, "wall": wall,
        "succeeded": action.finished_at.timestamp() - wall, "action": action,
    }  # fmt: skip


def phases(run: dict) -> dict[str, float]:
    """Where a deploy's time went, from the action's timestamps (seconds; server clock = this clock)."""
    action, wall = run["action"], run["wall"]
    at = {s["step"]: dt.datetime.fromisoformat(s["at"]).timestamp() - wall for s in action.steps}
    marks = [("request (POST answered)", run["posted"])]
    for step, label in (
        ("start", "queue: picked up, lease taken, 'start' logged"),  # the worker starts as the request commits
        ("gate", "gate re-evaluated, refusal checks"),
        ("artifact", "artifact re-read + sha256 (temp copy)"),
        ("deploy", "backend.deploy: copy+hash, settings, load"),
        ("probe", "probe prediction"),
        ("unload", "previous release unloaded"),
        ("done", "outcome recorded (deployments, stages, audit)"),
    ):
        if step in at:
            marks.append((label, at[step]))
    out, previous = {}, 0.0
    for label, mark in marks:
        out[label] = mark - previous
        previous = mark
    return out


# --- throughput ------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads (MLServer with ``parallel_workers: 0`` is one process)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Loop:
    """What one closed-loop window gave, per target."""

    seconds: float
    latencies: dict[str, list[float]]
    errors: dict[str, int]
    server_cpu: float  # seconds of MLServer CPU over the window

    def rate(self, name: str) -> float:
        return len(self.latencies[name]) / self.seconds

    def cpu_per_request(self) -> float:
        return self.server_cpu / max(sum(len(x) for x in self.latencies.values()), 1)


def closed_loop(port: int, targets: dict[str, str], payload: bytes, *, threads: int, seconds: float, server_pid: int):
    """``threads`` clients per target (name -> path), each sending its next request when the last one
    answered, for ``seconds``, all at once."""
    stop = threading.Event()
    plan = [name for name in targets for _ in range(threads)]
    latencies: list[list[float]] = [[] for _ in plan]
    errors = [0] * len(plan)
    barrier = threading.Barrier(len(plan) + 1)

    def client(i: int) -> None:
        conn, path = Http(port), targets[plan[i]]
        conn.post(path, payload)  # connect outside the window
        barrier.wait()
        own = latencies[i]
        while not stop.is_set():
            started = time.perf_counter()
            status, _ = conn.post(path, payload)
            if status == 200:
                own.append(time.perf_counter() - started)
            else:
                errors[i] += 1
        conn.conn.close()

    workers = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(len(plan))]
    for w in workers:
        w.start()
    barrier.wait()
    cpu = cpu_seconds(server_pid)
    started = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(server_pid) - cpu
    return Loop(
        seconds=elapsed,
        latencies={n: [x for i, own in enumerate(latencies) if plan[i] == n for x in own] for n in targets},
        errors={n: sum(e for i, e in enumerate(errors) if plan[i] == n) for n in targets},
        server_cpu=cpu,
    )


def server_metrics(server) -> dict:
    """Per-model request counts and summed inference time, as MLServer's metrics port reports them."""
    import requests

    from workers.serving.mlserver import parse_metrics

    return parse_metrics(requests.get(server.metrics_url, timeout=10).text)


def spread(values: list[float]) -> str:
    return f"median {ms(median(values))}, min {ms(min(values))}, max {ms(max(values))}"


def main() -> None:
    args = parse_args()
    if not os.environ.get("CELERY_BROKER_URL", "").startswith("redis://"):
        sys.exit("CELERY_BROKER_URL must point at Redis, e.g. redis://127.0.0.1:6390/3")
    sys.path.insert(0, str(ROOT))
    port = free_base_port()
    serving_dir = Path(tempfile.mkdtemp(prefix="charter-bench-serving-"))
    # read by the settings of this process and of the worker: the staging environment's local MLServer
    os.environ["CHARTER_SERVING_DIR"] = str(serving_dir)
    os.environ["CHARTER_MLSERVER_STAGING_PORT"] = str(port)
    os.environ.setdefault("EMAIL_BACKEND", "django.core.mail.backends.locmem.EmailBackend")  # reviews send mail
    from workers.serving.mlserver_process import MLServerProcess

    server = MLServerProcess(name=ENVIRONMENT, directory=serving_dir / ENVIRONMENT, http_port=port,
                             grpc_port=port + 100, metrics_port=port + 200)  # fmt: skip
    try:
        started = time.perf_counter()
        server.start()
        print(f"MLServer {ENVIRONMENT!r} ready in {time.perf_counter() - started:.1f} s on port {port}")
        setup_django(force=args.force)
        run(args, server, port)
    finally:
        server.stop()
        shutil.rmtree(serving_dir, ignore_errors=True)


def run(args, server, port: int) -> None:
    import mlserver
    import sklearn

    kinds = list(MODELS) if args.model == "all" else [args.model]
    heading(f"Serving: deploy latency and predictions/s, {', '.join(kinds)} model{'s' if len(kinds) > 1 else ''}, "
            f"MLServer {mlserver.__version__}, scikit-learn {sklearn.__version__}")  # fmt: skip
    worker = None
    try:
        measured = []
        for kind in kinds:
            seeded = seeded_model(args, kind, server)
            if worker is None:
                worker = start_worker()
            mlserver_http = Http(port)  # connected after the seeding: MLServer drops a connection idle for 5 s
            measured.append(deploy_latency(args, kind, seeded, mlserver_http))
        if len(measured) > 1:
            amortised(measured)
        throughput(args, server, port, measured[-1], mlserver_http)
    finally:
        if worker is not None:
            stop_worker(worker)
        purge_queues("deploy", "default")


def seeded_model(args, kind: str, server) -> dict:
    """The database wiped and seeded with ``1 + args.deploys`` approved versions of ``kind``; the
    reference's copies of the same files placed (untimed) beside Charter's in MLServer's repository."""
    import importlib

    from django.apps import apps

    wipe()
    # the wipe empties the serving tables too: the environments the migration creates, again
    importlib.import_module("governance.serving.migrations.0002_default_environments").create(apps, None)
    purge_queues("deploy", "default")
    X = training_data(MODELS[kind][0], seed=99, n=args.batch)[0]
    n_versions = 1 + args.deploys  # the first one warms the worker up
    started = time.perf_counter()
    versions, contents, secret = seed(kind, n_versions, oip(X[:1]))
    purge_queues("deploy", "default")  # what the seeding queued (inspections, notifications): no worker for those
    print(f"{kind}: {n_versions} versions registered, inspected, approved and probed in "
          f"{time.perf_counter() - started:.1f} s; artifact {len(contents[0]) / 1024:,.0f} KiB")  # fmt: skip
    for i, content in enumerate(contents):
        place_by_hand(server.directory, f"bare-{kind}-{i}", content)
    return {"versions": versions, "contents": contents, "secret": secret, "payload": json.dumps(oip(X)).encode()}


def deploy_latency(args, kind: str, seeded: dict, mlserver_http: Http) -> dict:
    """Figure 1 for one model: the reference and Charter's deploys, interleaved, after one warm-up of each."""
    from django.test import Client

    from governance.serving.models import Environment
    from governance.serving.services import release_of

    versions, payload = seeded["versions"], seeded["payload"]
    environment_id = Environment.objects.get(name=ENVIRONMENT).pk
    client = Client(HTTP_HOST="localhost", HTTP_AUTHORIZATION=f"Bearer {seeded['secret']}")

    def charter_deploy(version) -> dict:
        return deploy_through_charter(client, environment_id, version, release_of(version).name, mlserver_http,
                                      payload, args.poll)  # fmt: skip

    # warm-ups: MLServer's sklearn runtime, the worker's imports and connections
    bare_warm = load_and_predict(mlserver_http, f"bare-{kind}-0", payload)
    charter_warm = charter_deploy(versions[0])
    picked = charter_warm["action"].started_at.timestamp() - charter_warm["wall"]
    print(f"warm-up (not counted): reference {ms(bare_warm)} (MLServer imports its sklearn runtime), "
          f"Charter {ms(charter_warm['first'])} (the worker picked it up after {ms(picked)})")  # fmt: skip
    unload(mlserver_http, f"bare-{kind}-0")

    bare, charter = [], []
    for i in range(1, len(versions)):
        order = ("bare", "charter") if i % 2 else ("charter", "bare")
        for side in order:
            if side == "bare":
                bare.append(load_and_predict(mlserver_http, f"bare-{kind}-{i}", payload))
                unload(mlserver_http, f"bare-{kind}-{i}")
            else:
                charter.append(charter_deploy(versions[i]))

    heading(f"1. Deploy request -> first successful prediction, {kind} model ({args.deploys} deploys, each a new "
            "version replacing the live one)")  # fmt: skip
    firsts = [r["first"] for r in charter]
    succeeded = [r["succeeded"] for r in charter]
    print(f"reference: MLServer load + first predict, same file, same server:  {spread(bare)}")
    print(f"Charter:   POST deploy -> first 200 from the new release:        {spread(firsts)}")
    print(f"           POST deploy -> action 'succeeded' recorded:           {spread(succeeded)}")
    print(f"           polls of the new release before it answered: median {median([r['polls'] for r in charter]):.0f} "
          f"(every {args.poll * 1000:.0f} ms)")  # fmt: skip
    print("\nwhere a Charter deploy's time goes (median over the deploys; each phase ends at the step's log entry):")
    split = [phases(r) for r in charter]
    for label in split[-1]:
        values = [s[label] for s in split if label in s]
        print(f"  {label:<50} {ms(median(values)):>10}")
    ratio = median(firsts) / median(bare)
    print(f"\nratio first prediction / reference (medians): {ratio:.2f}x (target <= 1.5x) -> "
          f"{'MEETS' if ratio <= 1.5 else 'MISSES'}")  # fmt: skip
    print(f"ratio action succeeded / reference (medians): {median(succeeded) / median(bare):.2f}x")
    return {"kind": kind, "size": len(seeded["contents"][0]), "bare": bare, "firsts": firsts, "succeeded": succeeded,
            **seeded}  # fmt: skip


def amortised(measured: list[dict]) -> None:
    """Figure 1 of every model side by side: Charter's fixed cost against the load it adds to."""
    heading("1. Deploy request -> first successful prediction, all models (medians, target <= 1.5x)")
    print(f"{'model':<13} {'artifact':>11} {'reference':>11} {'Charter':>11} {'Charter - reference':>20} {'ratio':>7}")
    for m in measured:
        bare, first = median(m["bare"]), median(m["firsts"])
        print(f"{m['kind']:<13} {m['size'] / 1024:>7,.0f} KiB {ms(bare):>11} {ms(first):>11} {ms(first - bare):>20} "
              f"{first / bare:>6.2f}x  {'MEETS' if first / bare <= 1.5 else 'MISSES'}")  # fmt: skip


def throughput(args, server, port: int, measured: dict, mlserver_http: Http) -> None:
    """Figure 2, with the last model measured: its live release against the same file loaded directly."""
    from governance.serving.services import release_of

    payload = measured["payload"]
    heading(f"2. Predictions per second, {measured['kind']} model: {args.threads} client threads, closed loop, "
            f"{args.batch} row(s) a request, {args.rounds} x {args.seconds:.0f} s per side, interleaved")  # fmt: skip
    live = release_of(measured["versions"][-1]).name
    direct = f"direct-{measured['kind']}"
    place_by_hand(server.directory, direct, measured["contents"][-1])
    load_and_predict(mlserver_http, direct, payload)
    paths = {"Charter-deployed": f"/v2/models/{live}/infer", "loaded directly": f"/v2/models/{direct}/infer"}
    loop = {"threads": args.threads, "server_pid": server.pid}
    for name, path in paths.items():  # warm both
        closed_loop(port, {name: path}, payload, seconds=1.0, **loop)
    names = list(paths)
    rates: dict[str, list[float]] = {name: [] for name in names}
    cpus: dict[str, list[float]] = {name: [] for name in names}
    latencies: dict[str, list[float]] = {name: [] for name in names}
    errors = dict.fromkeys(names, 0)
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            window = closed_loop(port, {name: paths[name]}, payload, seconds=args.seconds, **loop)
            rates[name].append(window.rate(name))
            cpus[name].append(window.cpu_per_request())
            latencies[name].extend(window.latencies[name])
            errors[name] += window.errors[name]
    for name in names:
        lat = latencies[name]
        print(f"{name:<17} {median(rates[name]):7.1f} req/s (min {min(rates[name]):.0f}, max {max(rates[name]):.0f})"
              f"  MLServer CPU {ms(median(cpus[name]))}/req  p50 {ms(percentile(lat, 50))}"
              f"  p99 {ms(percentile(lat, 99))}  errors {errors[name]}")  # fmt: skip

    def ratios(values: dict[str, list[float]]) -> str:
        pairs = [a / b for a, b in zip(values[names[0]], values[names[1]], strict=True)]
        return (f"{median(values[names[0]]) / median(values[names[1]]):.3f}x of the medians; round pairs: median "
                f"{median(pairs):.3f}x, range {min(pairs):.3f}-{max(pairs):.3f}")  # fmt: skip

    # both at once: whatever else the machine does hits both sides alike. A closed loop on one server
    # shares out the throughput, so the per-model time MLServer itself measures is the sharper figure.
    names_on_server = {names[0]: live, names[1]: direct}
    before = server_metrics(server)
    both = closed_loop(port, paths, payload, seconds=args.seconds * args.rounds, **loop)
    after = server_metrics(server)
    infer = {n: (after[m].duration_seconds_sum - before[m].duration_seconds_sum)
                / max(after[m].requests - before[m].requests, 1) for n, m in names_on_server.items()}  # fmt: skip
    print(f"side by side, {args.threads} threads on each at once for {both.seconds:.0f} s: "
          + ", ".join(f"{n} {both.rate(n):.1f} req/s (p50 {ms(percentile(both.latencies[n], 50))}, "
                      f"MLServer's own infer time {ms(infer[n])})" for n in names)
          + f", errors {sum(both.errors.values())}")  # fmt: skip
    print(f"\nratio Charter-deployed / loaded directly, req/s in rounds:   {ratios(rates)}")
    print(f"ratio Charter-deployed / loaded directly, MLServer CPU/req:  {ratios(cpus)}")
    cost = infer[names[0]] / infer[names[1]]
    print(f"ratio Charter-deployed / loaded directly, MLServer infer time side by side: {cost:.3f}x (target 1.0x)")


if __name__ == "__main__":
    main()
