#!/usr/bin/env python
"""TreeSHAP end to end: an explainability run requested through Charter, executed by a real Celery
worker, stored as evidence, against calling ``shap.TreeExplainer`` directly in one process.

Prints figures; it is not a test. Same data and model as ``bench/treeshap_engine.py`` (100,000 x 30
generated rows, LightGBM 100 trees of depth <= 6, registered in its native text format). The
end-to-end time runs from the request (data upload, checks, storage, queuing) to the stored result
(the worker loads and verifies the artifact, reads the Parquet data, runs the engine, stores the
aggregates and figures, deletes the data). The worker is warmed up first with a small run (imports,
thread pools). Target from the issue: end to end <= 1.15x the direct call.

    export DATABASE_URL=postgres://postgres@127.0.0.1:5544/charter_bench   # WIPED; name must contain "bench"
    export CELERY_BROKER_URL=redis://127.0.0.1:6390/3
    .venv/bin/python bench/evaluation_e2e.py                 # about 3 minutes on 2 cores
    .venv/bin/python bench/evaluation_e2e.py --rows 20000    # quick
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, heading, setup_django, wipe  # noqa: E402
from treeshap_engine import generate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    if not os.environ.get("CELERY_BROKER_URL", "").startswith("redis://"):
        sys.exit("CELERY_BROKER_URL must point at Redis, e.g. redis://127.0.0.1:6390/3")
    setup_django(force=args.force)

    import lightgbm as lgb
    from django.contrib.auth import get_user_model
    from django.core.files.uploadedfile import SimpleUploadedFile

    from governance.accounts import services as accounts
    from governance.accounts.models import Role
    from governance.core.context import audit_context
    from governance.evaluations import services as evaluations
    from governance.evaluations.models import EvaluationRun
    from governance.registry import services as registry

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import shap

    heading(f"TreeSHAP end to end: {args.rows:,} x {args.features}, through the API path and a real worker")
    wipe()
    User = get_user_model()
    root = User.objects.create_superuser("bench-root", "root@bench.invalid", "x")
    author = User.objects.create_user("bench-author", "author@bench.invalid", "x")
    X, y = generate(args.rows, args.features, seed=0)
    started = time.perf_counter()
    trained = lgb.LGBMClassifier(
        n_estimators=args.trees, max_depth=args.depth, num_leaves=2**args.depth - 1, learning_rate=0.1,
        random_state=0, verbose=-1,
    ).fit(X, y)  # fmt: skip
    print(f"LightGBM trained in {time.perf_counter() - started:.1f} s")
    text = trained.booster_.model_to_string().encode()
    with audit_context(source="cli", actor=root):
        team = accounts.team_create(actor=root, name="Bench")
        accounts.membership_add(actor=root, team=team, user=author, role=Role.AUTHOR)
    author.__dict__.pop("_charter_roles", None)
    with audit_context(source="cli", actor=author):
        model = registry.model_create(actor=author, team=team, name="treeshap-e2e")
        version = registry.version_create(
            actor=author, model=model, artifact=SimpleUploadedFile("model.txt", text), framework="lightgbm",
            artifact_format="lightgbm",
        )  # fmt: skip
    frame = X.assign(target=y)

    def parquet(data) -> SimpleUploadedFile:
        buffer = io.BytesIO()
        data.to_parquet(buffer, index=False)
        return SimpleUploadedFile("holdout.parquet", buffer.getvalue())

    def request(data, seed: int):
        with audit_context(source="api", actor=author):
            return evaluations.run_request(
                actor=author, version=version, kind="explainability", data=parquet(data), target_column="target",
                parameters={"lime_rows": 0, "sample_rows": 50, "seed": seed},
            ).run  # fmt: skip

    def wait(run_id: int) -> EvaluationRun:
        while True:
            run = EvaluationRun.objects.get(pk=run_id)
            if not run.is_active:
                return run
            time.sleep(0.02)

    env = dict(os.environ)
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "governance", "worker", "-Q", "evaluations", "--pool", "solo",
         "--without-heartbeat", "--without-mingle", "--without-gossip", "--loglevel", "WARNING"],
        cwd=ROOT, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        warm = wait(request(frame.iloc[:2000], seed=1).pk)
        print(f"worker warmed up with a 2,000-row run ({warm.status})")
        booster = trained.booster_
        direct = []
        for data in (X.iloc[:1000], X):  # the first call warms shap in this process too
            started = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                shap.TreeExplainer(booster).shap_values(data)
            direct.append(time.perf_counter() - started)
        direct_s = direct[-1]
        started = time.perf_counter()
        run = request(frame, seed=0)
        requested = time.perf_counter() - started
        run = wait(run.pk)
        total = time.perf_counter() - started
        if run.status != "succeeded":
            sys.exit(f"The run ended {run.status}: {run.error_code} {run.error_message}")
        in_worker = (run.finished_at - run.started_at).total_seconds()
        print(f"direct shap.TreeExplainer(booster).shap_values(X): {direct_s:.2f} s")
        print(f"end to end (request -> stored evidence):          {total:.2f} s")
        print(f"  request: upload, checks, storage, queuing        {requested:.2f} s")
        print(f"  queue wait + worker run (started -> finished)     {total - requested:.2f} s "
              f"({in_worker:.2f} s running)")  # fmt: skip
        print(f"  stored: {len(str(run.result)) / 1024:.0f} KiB result, {len(str(run.figures)) / 1024:.0f} KiB figures")
        ratio = total / direct_s
        print(
            f"\nratio end to end / direct: {ratio:.3f}x (target <= 1.15x) -> {'MEETS' if ratio <= 1.15 else 'MISSES'}"
        )
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)


if __name__ == "__main__":
    main()
