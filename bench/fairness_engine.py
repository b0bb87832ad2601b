#!/usr/bin/env python
"""Fairness engine on 1,000,000 rows: against fairlearn's MetricFrame and the bare bincount limit.

Prints figures; it is not a test and needs no database. The data: 1,000,000 rows, two sensitive
features (sex: 2 groups, age band: 4 groups; 8 intersectional groups of uneven sizes) held as
pandas categoricals, binary labels and decisions generated with group effects on both. Timed,
best of --repeat (runs interleaved):

- the engine, ``workers.engines.fairness.fairness_report`` on the intersection (per-feature
  marginals included): point metrics only (the closed-form disparity intervals are always there),
  with --resamples bootstrap resamples (figures on), and with sample weights (per-group Wilson
  intervals on Kish's effective sizes instead of the bootstrap);
- fairlearn ``MetricFrame`` with four metrics (``selection_rate``, scikit-learn's
  ``accuracy_score``, ``true_positive_rate`` (recall), ``false_positive_rate``) on the same data;
- the bare limit: ``np.bincount`` of the per-group confusion counts from integer group codes
  already in memory, ``((sex * 4 + age) * 2 + y_true) * 2 + y_pred``.

Prints seconds, engine/bincount (target <= 10x, with the bootstrap on too), MetricFrame/engine, and
the largest absolute difference between the engine's and MetricFrame's per-group values (must be
<= 1e-9).

Usage::

    .venv/bin/python bench/fairness_engine.py              # about a minute, most of it MetricFrame
    .venv/bin/python bench/fairness_engine.py --rows 200000 --repeat 1   # quick
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _common import heading  # noqa: E402

from workers.engines.environment import library_versions  # noqa: E402
from workers.engines.fairness import fairness_report  # noqa: E402

SEXES = ["female", "male"]
AGES = ["18-29", "30-44", "45-64", "65+"]


def generate(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Uneven groups; base rate and the model's selection both depend on the groups."""
    rng = np.random.default_rng(seed)
    sex = rng.choice(2, size=rows, p=[0.45, 0.55]).astype(np.int8)
    age = rng.choice(4, size=rows, p=[0.2, 0.35, 0.35, 0.1]).astype(np.int8)
    base = 0.30 + 0.08 * sex - 0.05 * (age == 3)
    y_true = (rng.random(rows) < base).astype(np.int64)
    # A decent model that selects one sex and the youngest band less often at equal merit.
    p_select = np.where(y_true == 1, 0.75, 0.12) - 0.10 * (sex == 0) - 0.05 * (age == 0)
    y_pred = (rng.random(rows) < np.clip(p_select, 0.01, 0.99)).astype(np.int64)
    sensitive = pd.DataFrame(
        {
            "sex": pd.Categorical.from_codes(sex, SEXES),
            "age_band": pd.Categorical.from_codes(age, AGES),
        }
    )
    return y_true, y_pred, sensitive


def best_of(repeat: int, fns: dict[str, Callable[[], object]]) -> tuple[dict[str, float], dict[str, object]]:
    best = {name: float("inf") for name in fns}
    results: dict[str, object] = {}
    for _ in range(repeat):
        for name, fn in fns.items():
            started = time.perf_counter()
            results[name] = fn()
            best[name] = min(best[name], time.perf_counter() - started)
    return best, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--resamples", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate
    from sklearn.metrics import accuracy_score

    heading("Fairness engine against MetricFrame and the bincount limit")
    versions = library_versions()
    print(
        f"host {platform.node()} ({os.cpu_count()} CPUs, {platform.machine()}), Python {platform.python_version()}, "
        f"numpy {versions['numpy']}, pandas {versions['pandas']}, fairlearn {versions['fairlearn']}, "
        f"scikit-learn {versions['scikit-learn']}"
    )
    y_true, y_pred, sensitive = generate(args.rows, args.seed)
    sex_codes = sensitive["sex"].cat.codes.to_numpy().astype(np.int64)
    age_codes = sensitive["age_band"].cat.codes.to_numpy().astype(np.int64)
    print(
        f"{args.rows:,} rows, {len(SEXES)} x {len(AGES)} = {len(SEXES) * len(AGES)} intersectional groups "
        f"(smallest {int(np.bincount(sex_codes * 4 + age_codes).min()):,} rows), best of {args.repeat}"
    )

    def bincount() -> np.ndarray:
        return np.bincount(((sex_codes * 4 + age_codes) * 2 + y_true) * 2 + y_pred, minlength=32)

    def engine_point():
        return fairness_report(y_true, y_pred, sensitive, bootstrap_resamples=0, with_figures=False)

    def engine_bootstrap():
        return fairness_report(y_true, y_pred, sensitive, bootstrap_resamples=args.resamples, seed=args.seed)

    weights = np.random.default_rng(args.seed + 1).gamma(2.0, 0.5, size=args.rows)

    def engine_weighted():
        return fairness_report(y_true, y_pred, sensitive, sample_weight=weights, seed=args.seed)

    metrics = {
        "selection_rate": selection_rate,
        "accuracy": accuracy_score,
        "recall": true_positive_rate,
        "false_positive_rate": false_positive_rate,
    }

    def metric_frame():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return MetricFrame(metrics=metrics, y_true=y_true, y_pred=y_pred, sensitive_features=sensitive)

    best, results = best_of(
        args.repeat,
        {
            "bincount": bincount,
            "engine": engine_point,
            "engine_bootstrap": engine_bootstrap,
            "engine_weighted": engine_weighted,
            "metric_frame": metric_frame,
        },
    )

    report, frame = results["engine_bootstrap"], results["metric_frame"]
    assert (results["bincount"].reshape(8, 4) == _cells(report)).all(), "engine counts differ from the bare bincount"
    max_diff = 0.0
    for group in report.primary.groups:
        row = frame.by_group.loc[(group.key["sex"], group.key["age_band"])]
        for metric in metrics:
            max_diff = max(max_diff, abs(group.metrics[metric] - float(row[metric])))
    for metric in metrics:
        max_diff = max(max_diff, abs(report.overall[metric] - float(frame.overall[metric])))
    disparities = report.primary.disparities
    dp_diff = abs(disparities["demographic_parity_difference"] - float(frame.difference()["selection_rate"]))
    eo_diff = abs(
        disparities["equalized_odds_difference"]
        - max(float(frame.difference()["recall"]), float(frame.difference()["false_positive_rate"]))
    )

    print(f"  bare bincount of the confusion counts      {best['bincount']:8.4f} s")
    print(f"  engine, point metrics                      {best['engine']:8.4f} s")
    print(f"  engine, {args.resamples} bootstrap resamples + figures  {best['engine_bootstrap']:8.4f} s")
    print(f"  engine, sample weights + figures           {best['engine_weighted']:8.4f} s")
    print(f"  fairlearn MetricFrame, 4 metrics           {best['metric_frame']:8.4f} s")
    print(f"  engine / bincount                          {best['engine'] / best['bincount']:8.1f} x   (target <= 10x)")
    print(
        f"  engine with bootstrap / bincount           {best['engine_bootstrap'] / best['bincount']:8.1f} x   "
        "(target <= 10x)"
    )
    print(f"  engine with sample weights / bincount      {best['engine_weighted'] / best['bincount']:8.1f} x")
    print(f"  MetricFrame / engine                       {best['metric_frame'] / best['engine']:8.0f} x")
    print(f"  MetricFrame / engine with bootstrap        {best['metric_frame'] / best['engine_bootstrap']:8.0f} x")
    print(f"  max |engine - MetricFrame| per group      {max_diff:9.1e}   (must be <= 1e-9)")
    print(f"  |DP difference|, |EO difference| deltas    {dp_diff:.1e}, {eo_diff:.1e}")
    print(
        f"  demographic-parity ratio {disparities['demographic_parity_ratio']:.3f} "
        f"(95% CI {report.primary.disparity_ci['demographic_parity_ratio'][0]:.3f}"
        f"-{report.primary.disparity_ci['demographic_parity_ratio'][1]:.3f}), "
        f"equalized-odds difference {disparities['equalized_odds_difference']:.3f}"
    )
    print(f"  disparity intervals: {report.primary.comparison['interval_method'].split(';')[0]}")


def _cells(report) -> np.ndarray:
    order = {(s, a): i for i, (s, a) in enumerate((s, a) for s in SEXES for a in AGES)}
    cells = np.zeros((8, 4), dtype=np.int64)
    for g in report.primary.groups:
        cells[order[(g.key["sex"], g.key["age_band"])]] = [g.tn, g.fp, g.fn, g.tp]
    return cells


if __name__ == "__main__":
    main()
