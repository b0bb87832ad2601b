#!/usr/bin/env python
"""Benchmark engine against a bare ``time.perf_counter_ns`` loop around the same predict call.

Prints figures; it is not a test and needs no database. Four small real models (a scikit-learn
LogisticRegression through skops, the same model converted to ONNX and run in onnxruntime, an
XGBoost and a LightGBM booster from their native files), each loaded through
``workers.engines.loading`` as a worker loads an artifact. For each model and batch size, in rounds
whose order flips every round:

- the engine: ``workers.engines.benchmark.benchmark`` with exactly ``--calls`` timed calls
  (``min_calls = max_calls``), its warm-up, its sampler process and its device decision;
- the bare loop: the same ``LoadedModel.predict`` on the same pre-built batch
  (``benchmark.build_batch``), ``--warmup`` calls, then ``--calls`` calls each between two
  ``time.perf_counter_ns()`` reads, appended to a list. The engine frees each call's output after
  its second clock read, and so does the bare loop; with ``--free-inside`` the bare loop is the
  plainest ``t0 = clock(); predict(batch); clock() - t0``, which also times the output's
  deallocation (a few tenths of a microsecond: visible only on calls of a few microseconds).

Prints the median over rounds of each side's p50 and p95 per call, and engine/bare for the p50
(target: within 5 %, i.e. 0.95-1.05) and the p95.

Usage::

    .venv/bin/python bench/benchmark_engine.py                       # about a minute on 2 cores
    .venv/bin/python bench/benchmark_engine.py --models logreg --batch-sizes 1 --rounds 3   # quick
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _common import heading  # noqa: E402

from workers.engines import benchmark as engine  # noqa: E402
from workers.engines.loading import load_model_bytes, sha256_of  # noqa: E402

MODELS = ("logreg", "onnx", "xgboost", "lightgbm")
N_FEATURES = 20


def training_data(seed: int = 0, n: int = 2000):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    y = (X[:, 0] - 0.5 * X[:, 1] + 0.25 * X[:, 2] * X[:, 3] + 0.3 * rng.normal(size=n) > 0).astype(int)
    return X, y


def artifact(kind: str, X, y) -> tuple[bytes, str]:
    """The model trained on ``X, y`` and serialised as a registered artifact of that format would be."""
    if kind in ("logreg", "onnx"):
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(max_iter=500).fit(X, y)
        if kind == "logreg":
            import skops.io as sio

            return sio.dumps(model), "skops"
        from skl2onnx import to_onnx

        return to_onnx(model, X[:1], target_opset=17).SerializeToString(), "onnx"
    if kind == "xgboost":
        import xgboost as xgb

        booster = xgb.XGBClassifier(n_estimators=100, max_depth=6, n_jobs=1, random_state=0).fit(X, y).get_booster()
        return bytes(booster.save_raw(raw_format="json")), "xgboost"
    import lightgbm as lgb

    model = lgb.LGBMClassifier(n_estimators=100, num_leaves=31, n_jobs=1, random_state=0, verbose=-1).fit(X, y)
    return model.booster_.model_to_string().encode(), "lightgbm"


def bare_loop(model, batch, *, warmup: int, calls: int, free_inside: bool = False) -> np.ndarray:
    """Per-call milliseconds. The output is freed after the second clock read, as the engine does;
    ``free_inside``: the plainest loop, where the output's deallocation falls inside the timed region."""
    predict = model.predict
    for _ in range(warmup):
        predict(batch)
    clock = time.perf_counter_ns
    durations = []
    if free_inside:
        for _ in range(calls):
            t0 = clock()
            predict(batch)
            durations.append(clock() - t0)
    else:
        for _ in range(calls):
            t0 = clock()
            out = predict(batch)
            t1 = clock()
            out = None  # noqa: F841
            durations.append(t1 - t0)
    return np.asarray(durations, dtype=np.float64) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--batch-sizes", default="1,64,1024", help="comma-separated batch sizes")
    parser.add_argument("--calls", type=int, default=1000, help="timed calls per side and round")
    parser.add_argument("--warmup", type=int, default=20, help="warm-up calls per side and round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per model and batch size (order flips)")
    parser.add_argument("--device", default="auto", choices=engine.DEVICE_PREFERENCES)
    parser.add_argument(
        "--free-inside", action="store_true",
        help="bare loop as `t0 = clock(); predict(batch); clock() - t0`: the output's deallocation is timed too",
    )  # fmt: skip
    args = parser.parse_args()
    kinds = [k.strip() for k in args.models.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(MODELS))
    if unknown:
        parser.error(f"unknown model(s): {', '.join(unknown)}")
    sizes = [int(s) for s in args.batch_sizes.split(",")]

    heading("Benchmark engine against a bare perf_counter_ns loop around the same predict")
    host = engine.host_record()
    print(
        f"host {host['hostname']}: {host['cpu_model']}, {host['cpu_count_usable']}/{host['cpu_count']} CPUs usable, "
        f"{(host['memory_total_bytes'] or 0) / 2**30:.1f} GiB; GPU: {host['gpu_summary']}"
    )
    print(
        f"{args.calls:,} timed calls per side and round, {args.warmup} warm-up, median of {args.rounds} rounds; bare loop "
        + ("frees the output inside the timed region" if args.free_inside else "frees the output after the clock read")
    )
    X, y = training_data()
    rows = X[:500]
    print(
        f"\n{'model':<10} {'device':<6} {'batch':>6} {'engine p50':>11} {'bare p50':>10} {'p50 ratio':>10} "
        f"{'engine p95':>11} {'bare p95':>10} {'p95 ratio':>10}   (ms per call)"
    )
    worst = 0.0
    for kind in kinds:
        payload, artifact_format = artifact(kind, X, y)
        model = load_model_bytes(payload, artifact_format=artifact_format, expected_sha256=sha256_of(payload))
        for size in sizes:
            batch = engine.build_batch(model, rows, size)
            engine_p50, engine_p95, bare_p50, bare_p95 = [], [], [], []
            device = "?"
            for round_ in range(args.rounds):
                sides = ("engine", "bare") if round_ % 2 == 0 else ("bare", "engine")
                for side in sides:
                    if side == "engine":
                        doc = engine.benchmark(
                            model, rows, batch_sizes=[size], warmup=args.warmup, min_calls=args.calls,
                            max_calls=args.calls, time_budget_seconds=engine.MAX_TIME_BUDGET_SECONDS,
                            device=args.device,
                        )  # fmt: skip
                        result = doc["results"][0]
                        assert result["calls"] == args.calls, result["stopped"]
                        engine_p50.append(result["latency_ms"]["p50"])
                        engine_p95.append(result["latency_ms"]["p95"])
                        device = doc["device"]["type"]
                    else:
                        ms = bare_loop(model, batch, warmup=args.warmup, calls=args.calls, free_inside=args.free_inside)
                        bare_p50.append(float(np.percentile(ms, 50)))
                        bare_p95.append(float(np.percentile(ms, 95)))
            e50, b50 = statistics.median(engine_p50), statistics.median(bare_p50)
            e95, b95 = statistics.median(engine_p95), statistics.median(bare_p95)
            worst = max(worst, abs(e50 / b50 - 1.0))
            print(
                f"{kind:<10} {device:<6} {size:>6} {e50:>11.4f} {b50:>10.4f} {e50 / b50:>9.3f}x "
                f"{e95:>11.4f} {b95:>10.4f} {e95 / b95:>9.3f}x",
                flush=True,
            )
    print(f"\nlargest |engine p50 / bare p50 - 1|: {worst:.1%}   (target: within 5%)")


if __name__ == "__main__":
    main()
