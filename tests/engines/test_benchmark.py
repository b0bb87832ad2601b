"""The benchmark engine: percentiles and throughput against models of known latency, the stopping
rule, real artifacts on the CPU, the device decision, NVML sampling and bad input.

Timing tolerances (the machine running these is a loaded 2-core VM): ``time.sleep(d)`` never returns
before ``d`` has passed on the same monotonic clock ``perf_counter_ns`` reads, and its overshoot is
positive, so every measured figure is asserted to be at least its nominal value (minus 5 µs for
rounding) and at most the nominal value plus a loose margin (0.5 ms for a median, up to 4 ms for a
p99). Runs are kept to a few hundred milliseconds each.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio

from tests.engines.conftest import ExplodingClassifier, make_data, write_artifact
from workers.engines import benchmark as bm
from workers.engines.errors import EngineError
from workers.engines.loading import load_model, wrap_estimator

ROUNDING_MS = 0.005
ROWS = make_data(40)[0]


class SleepModel:
    """``predict`` sleeps ``base_ms + per_100_rows_ms * rows / 100``, or the next duration of ``cycle_ms``."""

    def __init__(self, base_ms: float = 0.0, per_100_rows_ms: float = 0.0, cycle_ms: list[float] | None = None):
        self.base_ms, self.per_100_rows_ms, self.cycle_ms = base_ms, per_100_rows_ms, cycle_ms
        self.calls = 0
        self.seen: list[tuple[int, int]] = []  # (id of the batch, rows), one per call

    def predict(self, X):
        n = len(X)
        if self.cycle_ms is not None:
            ms = self.cycle_ms[self.calls % len(self.cycle_ms)]
        else:
            ms = self.base_ms + self.per_100_rows_ms * n / 100.0
        self.calls += 1
        self.seen.append((id(X), n))
        time.sleep(ms / 1000.0)
        return np.zeros(n)


class NoisyModel:
    """Heavy upper tail: 90 % of calls sleep 0.1-2 ms, 10 % sleep 2-10 ms (seeded)."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def predict(self, X):
        slow = self.rng.random() < 0.1
        time.sleep((self.rng.uniform(2.0, 10.0) if slow else self.rng.uniform(0.1, 2.0)) / 1000.0)
        return np.zeros(len(X))


def run(model, rows=ROWS, **kwargs):
    settings = {"batch_sizes": [1], "warmup": 2, "min_calls": 100, "max_calls": 100_000, "time_budget_seconds": 2.0}
    return bm.benchmark(model, rows, **{**settings, **kwargs})


def no_gpu_here() -> bool:
    return not bm.gpu_inventory()["gpus"]


# --- (1) percentiles and throughput against a known latency ------------------------------------

# 40 calls: 28 of 1 ms, 9 of 2 ms, 2 of 4 ms, 1 of 8 ms. Over 5 whole cycles (200 calls) numpy's
# linear-interpolated p50, p90, p95 and p99 fall inside the blocks of 1, 2, 4 and 8 ms.
CYCLE_MS = [1.0] * 28 + [2.0] * 9 + [4.0] * 2 + [8.0]
CYCLE_EXPECTED = {"p50": 1.0, "p90": 2.0, "p95": 4.0, "p99": 8.0, "max": 8.0, "min": 1.0, "mean": 62.0 / 40.0}
CYCLE_MARGIN_MS = {"p50": 0.5, "p90": 1.0, "p95": 2.0, "p99": 4.0, "max": 100.0, "min": 0.5, "mean": 1.0}


def test_percentiles_of_a_known_cycle_of_latencies():
    """Each percentile >= its nominal sleep - 5 µs and <= nominal + CYCLE_MARGIN_MS (sleep overshoot)."""
    model = SleepModel(cycle_ms=CYCLE_MS)
    doc = run(model, warmup=3, min_calls=200, max_calls=200, p95_ci_width=0.001, time_budget_seconds=30.0)
    (result,) = doc["results"]
    assert (result["calls"], result["warmup_calls"], result["stopped"], result["stable"]) == (
        200,
        3,
        "max_calls",
        False,
    )
    assert model.calls == 203  # warm-up calls are made, and not counted among the timed ones
    latency = result["latency_ms"]
    for key, nominal in CYCLE_EXPECTED.items():
        assert nominal - ROUNDING_MS <= latency[key] <= nominal + CYCLE_MARGIN_MS[key], (key, latency[key])
    interval = result["p95_interval_ms"]
    assert interval["ranks"] == list(bm.quantile_interval(200))
    assert interval["lower"] <= latency["p95"] <= interval["upper"]
    # throughput is rows (calls) per second of predict time: the mean latency's inverse
    assert result["throughput"]["calls_per_second"] == pytest.approx(1000.0 / latency["mean"], rel=1e-9)
    assert result["timed_seconds"] == pytest.approx(200 * latency["mean"] / 1000.0, rel=1e-9)
    assert result["wall_seconds"] >= result["timed_seconds"]
    json.dumps(doc, allow_nan=False)


def test_throughput_of_a_model_whose_latency_grows_with_the_batch():
    """2 ms + 1 ms per 100 rows: p50 in [nominal - 5 µs, nominal + 0.5 ms]; rows/s in
    [batch / (nominal + 1 ms), batch / nominal]."""
    model = SleepModel(base_ms=2.0, per_100_rows_ms=1.0)
    doc = run(model, batch_sizes=[1, 100, 400], min_calls=30, max_calls=30, p95_ci_width=0.001)
    assert [r["batch_size"] for r in doc["results"]] == [1, 100, 400]
    for result in doc["results"]:
        size = result["batch_size"]
        nominal_ms = 2.0 + size / 100.0
        assert result["calls"] == 30
        assert nominal_ms - ROUNDING_MS <= result["latency_ms"]["p50"] <= nominal_ms + 0.5
        rows_per_second = result["throughput"]["rows_per_second"]
        assert size * 1000.0 / (nominal_ms + 1.0) <= rows_per_second <= size * 1000.0 / (nominal_ms - ROUNDING_MS)
        assert rows_per_second == pytest.approx(size * result["throughput"]["calls_per_second"], rel=1e-9)
    assert doc["total_calls"] == 90 and doc["warmup_calls"] == 2
    assert doc["summary"]["batch_400.p50_ms"] == doc["results"][2]["latency_ms"]["p50"]


def test_batches_cycle_the_sample_rows_and_are_built_once_per_batch_size():
    rows = np.arange(12, dtype=float).reshape(3, 4)
    batch = bm.build_batch(object(), rows, 7)
    np.testing.assert_array_equal(batch, rows[[0, 1, 2, 0, 1, 2, 0]])
    frame = pd.DataFrame(rows, columns=list("abcd"), index=[10, 20, 30])
    assert bm.build_batch(object(), frame, 5)["a"].tolist() == [0.0, 4.0, 8.0, 0.0, 4.0]
    model = SleepModel()
    run(model, batch_sizes=[3, 50], min_calls=20, max_calls=20, warmup=1)
    by_size = {}
    for batch_id, n in model.seen:
        by_size.setdefault(n, set()).add(batch_id)
    assert {n: len(ids) for n, ids in by_size.items()} == {3: 1, 50: 1}  # one pre-built batch per size


def test_quantile_interval_ranks_are_the_binomial_order_statistics():
    from scipy.stats import binom

    for n in (1, 50, 71, 72, 73, 100, 200, 1000, 12_345):
        cdf = binom.cdf(np.arange(n + 1), n, 0.95)  # cdf[k] = P(B <= k)
        lower = [j for j in range(1, n + 1) if cdf[j - 1] <= 0.025]
        upper = [j for j in range(1, n + 1) if cdf[j - 1] >= 0.975]
        expected = (max(lower), min(upper)) if lower and upper else None
        assert bm.quantile_interval(n) == expected, n
        if expected is not None:
            low, high = expected
            assert cdf[high - 1] - cdf[low - 1] >= 0.95  # coverage P(l <= B <= u - 1)
    assert bm.quantile_interval(71) is None and bm.quantile_interval(72) is not None


# --- (2) the stopping rule ---------------------------------------------------------------------


def test_a_constant_latency_model_stops_as_stable_well_before_the_budget():
    doc = run(SleepModel(base_ms=2.0), min_calls=100, p95_ci_width=0.5, time_budget_seconds=20.0)
    (result,) = doc["results"]
    assert (result["stopped"], result["stable"]) == ("stable", True)
    assert 100 <= result["calls"] < 2_000
    assert result["wall_seconds"] < 10.0
    assert result["p95_interval_ms"]["relative_width"] <= 0.5
    assert not any("not stable" in note for note in doc["notes"])


def test_a_noisy_model_runs_out_of_budget_and_says_so():
    doc = run(NoisyModel(), min_calls=50, p95_ci_width=0.05, time_budget_seconds=0.4)
    (result,) = doc["results"]
    assert (result["stopped"], result["stable"]) == ("time_budget", False)
    assert result["p95_interval_ms"]["relative_width"] > 0.05
    assert 0.4 <= result["wall_seconds"] < 0.4 + 0.5  # stops at the first call past the budget
    assert any("not stable within 5% at batch size(s) 1 (stopped by time budget)" in note for note in doc["notes"])


def test_max_calls_stops_the_run_and_the_budget_wins_over_min_calls():
    doc = run(NoisyModel(), min_calls=10, max_calls=40, p95_ci_width=0.01)
    assert (doc["results"][0]["stopped"], doc["results"][0]["calls"]) == ("max_calls", 40)
    doc = run(SleepModel(base_ms=5.0), min_calls=1_000, max_calls=1_000, time_budget_seconds=0.1)
    result = doc["results"][0]
    assert result["stopped"] == "time_budget" and result["calls"] < 1_000


# --- (3) real models through workers.engines.loading, on the CPU -------------------------------


def _artifact(name, data, logreg, xgb_model, lgb_model, onnx_bytes):
    if name == "skops":
        return sio.dumps(logreg), "skops"
    if name == "onnx":
        return onnx_bytes, "onnx"
    if name == "xgboost":
        return bytes(xgb_model.get_booster().save_raw(raw_format="json")), "xgboost"
    return lgb_model.booster_.model_to_string().encode(), "lightgbm"


@pytest.mark.skipif(not no_gpu_here(), reason="checks the CPU path of a host without a GPU")
@pytest.mark.parametrize(
    ("name", "backend", "placement"),
    [
        ("skops", "sklearn", {}),
        ("onnx", "onnxruntime", {"onnx_providers": ["CPUExecutionProvider"]}),
        ("xgboost", "xgboost", {"xgboost_device": "cpu"}),
        ("lightgbm", "lightgbm", {}),
    ],
)
def test_real_artifacts_run_on_the_cpu_and_record_it(
    tmp_path, data, logreg, xgb_model, lgb_model, onnx_bytes, name, backend, placement
):
    X, _ = data
    payload, artifact_format = _artifact(name, data, logreg, xgb_model, lgb_model, onnx_bytes)
    path, digest = write_artifact(tmp_path, f"model.{name}", payload)
    model = load_model(path, artifact_format=artifact_format, expected_sha256=digest)
    progress = []
    doc = bm.benchmark(
        model, X.head(50), batch_sizes=[1, 16], warmup=2, min_calls=50, max_calls=300, time_budget_seconds=0.3,
        progress=lambda percent, message: progress.append((percent, message)),
    )  # fmt: skip
    json.dumps(doc, allow_nan=False)
    device = doc["device"]
    assert (device["type"], device["backend"], device["gpu"]) == ("cpu", backend, None)
    assert device["reason"].startswith("No GPU: ")
    assert {k: device[k] for k in placement} == placement
    assert (doc["model"]["sha256"], doc["model"]["artifact_format"]) == (digest, artifact_format)
    for result in doc["results"]:
        latency = result["latency_ms"]
        assert (
            0 < latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p95"] <= latency["p99"] <= latency["max"]
        )
        assert result["calls"] >= 1 and result["stopped"] in ("stable", "time_budget", "max_calls")
        assert result["memory"]["peak_rss_bytes"] > 0 and result["gpu"] is None
    assert doc["libraries"][{"sklearn": "scikit-learn"}.get(backend, backend)]
    assert "nvidia-ml-py" in doc["libraries"]
    percents = [p for p, _ in progress]
    assert percents == sorted(percents) and percents[0] == 0.0 and percents[-1] == 100.0
    assert any("Batch size 16" in message for _, message in progress)
    if name == "xgboost":  # the model is left on the device it was on
        assert bm._xgboost_device(model.estimator) == "cpu"


# --- (5) no GPU: the record says so; the device decision ----------------------------------------


@pytest.mark.skipif(not no_gpu_here(), reason="this host has a GPU")
def test_on_this_host_without_a_gpu_the_record_says_so():
    doc = run(SleepModel(), min_calls=10, max_calls=10)
    assert doc["device"]["type"] == "cpu" and doc["device"]["gpu"] is None
    assert doc["host"]["gpus"] == [] and doc["host"]["gpu_summary"].startswith("no GPU (")
    assert any(note.startswith("No GPU on this host") for note in doc["notes"])
    assert doc["results"][0]["gpu"] is None and doc["summary"]["gpu_memory_used_peak_bytes"] is None
    host = doc["host"]
    assert host["hostname"] and host["cpu_model"] and host["cpu_count"] >= 1 and host["memory_total_bytes"] > 0
    for backend in ("onnxruntime", "xgboost", "lightgbm", "sklearn"):
        choice = bm.choose_device(backend)
        assert choice.device == "cpu" and choice.reason.startswith("No GPU: "), backend


def test_without_nvidia_ml_py_the_record_says_no_gpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    doc = run(SleepModel(), min_calls=10, max_calls=10)
    assert doc["host"]["gpu_summary"] == "no GPU (nvidia-ml-py is not installed)"
    assert doc["device"]["reason"] == "No GPU: nvidia-ml-py is not installed; the model runs on the CPU."


def test_asking_for_the_gpu_where_it_cannot_be_used_is_refused(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    model = SleepModel()
    with pytest.raises(EngineError) as err:
        run(model, device="cuda")
    assert err.value.code == "gpu_unavailable" and "nvidia-ml-py is not installed" in err.value.message
    assert model.calls == 0


GPU = {"index": 0, "name": "NVIDIA H200", "uuid": "GPU-aaaa", "memory_total_bytes": 2**37}


@pytest.mark.parametrize(
    ("backend", "facts", "device", "reason"),
    [
        ("onnxruntime", {"onnx_providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]}, "cuda", "CUDA execution provider"),
        ("onnxruntime", {"onnx_providers": ["CPUExecutionProvider"]}, "cpu", "onnxruntime-gpu"),
        ("xgboost", {"xgboost_cuda": True}, "cuda", 'device="cuda"'),
        ("xgboost", {"xgboost_cuda": False}, "cpu", "built without CUDA"),
        ("lightgbm", {}, "cpu", "LightGBM predicts on the CPU"),
        ("sklearn", {}, "cpu", "scikit-learn predicts on the CPU only"),
    ],
)  # fmt: skip
def test_device_decision_on_a_host_with_a_gpu(backend, facts, device, reason):
    choice = bm.choose_device(backend, "auto", inventory={"gpus": [GPU], "note": None}, **facts)
    assert choice.device == device and reason in choice.reason
    assert choice.gpu == (GPU if device == "cuda" else None)
    assert bm.choose_device(backend, "cpu", inventory={"gpus": [GPU]}, **facts).device == "cpu"
    if device == "cpu":
        with pytest.raises(EngineError) as err:
            bm.choose_device(backend, "cuda", inventory={"gpus": [GPU]}, **facts)
        assert err.value.code == "gpu_unavailable" and reason in err.value.message


def test_cuda_visible_devices_decides_which_gpu(monkeypatch):
    other = {**GPU, "index": 1, "uuid": "GPU-bbbb"}
    inventory = {"gpus": [GPU, other]}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert bm.visible_gpu(inventory) == (other, None)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-bbbb,0")
    assert bm.visible_gpu(inventory) == (other, None)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    choice = bm.choose_device("xgboost", inventory=inventory, xgboost_cuda=True)
    assert choice.device == "cpu" and "CUDA_VISIBLE_DEVICES hides every GPU" in choice.reason


FAKE_PYNVML = """
\"\"\"A stand-in for nvidia-ml-py: two GPUs; GPU 0 reports 20/60 % utilisation in turn and 3 GiB used,
GPU 1 70/90 % and 7 GiB; the sampler's parent (the benchmarking process) holds 100 MiB, another
process 5 GiB. Calls are logged to $FAKE_NVML_LOG as "<pid> <call>".\"\"\"
import os
from types import SimpleNamespace

_reads = {0: 0, 1: 0}


def _log(line):
    with open(os.environ["FAKE_NVML_LOG"], "a") as fh:
        fh.write(f"{os.getpid()} {line}\\n")


def nvmlInit():
    _log("init")


def nvmlShutdown():
    _log("shutdown")


def nvmlSystemGetDriverVersion():
    return b"550.54.15"


def nvmlSystemGetCudaDriverVersion():
    return 12040


def nvmlDeviceGetCount():
    return 2


def nvmlDeviceGetHandleByIndex(index):
    return index


def nvmlDeviceGetName(handle):
    return "NVIDIA H200"


def nvmlDeviceGetUUID(handle):
    return f"GPU-{handle}{handle}{handle}"


def nvmlDeviceGetMemoryInfo(handle):
    return SimpleNamespace(total=141 * 2**30, used=(3 if handle == 0 else 7) * 2**30)


def nvmlDeviceGetUtilizationRates(handle):
    _reads[handle] += 1
    _log(f"utilisation {handle}")
    return SimpleNamespace(gpu=((20, 60) if handle == 0 else (70, 90))[_reads[handle] % 2])


def nvmlDeviceGetComputeRunningProcesses(handle):
    return [SimpleNamespace(pid=os.getppid(), usedGpuMemory=100 * 2**20), SimpleNamespace(pid=1, usedGpuMemory=5 * 2**30)]
"""


@pytest.fixture
def fake_nvml(tmp_path, monkeypatch):
    """The fake ``pynvml`` first on the path of this process and of the sampler process it starts."""
    folder = tmp_path / "fake-nvml"
    folder.mkdir()
    (folder / "pynvml.py").write_text(FAKE_PYNVML)
    log = tmp_path / "nvml.log"
    log.touch()
    monkeypatch.setenv("FAKE_NVML_LOG", str(log))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")])))
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "pynvml", raising=False)
    yield log
    if str(getattr(sys.modules.get("pynvml"), "__file__", "")).startswith(str(folder)):
        del sys.modules["pynvml"]  # monkeypatch then puts back the real module, if it was imported


def test_gpu_utilisation_and_memory_are_sampled_through_nvml(fake_nvml, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    doc = run(SleepModel(base_ms=2.0), min_calls=150, max_calls=150, sample_interval=0.02)
    host = doc["host"]
    assert [(g["index"], g["name"], g["uuid"], g["memory_total_bytes"]) for g in host["gpus"]] == [
        (0, "NVIDIA H200", "GPU-000", 141 * 2**30), (1, "NVIDIA H200", "GPU-111", 141 * 2**30)
    ]  # fmt: skip
    assert {(g["driver_version"], g["cuda_version"]) for g in host["gpus"]} == {("550.54.15", "12.4")}
    assert host["gpu_summary"] == "2 × NVIDIA H200"
    # a model with no GPU predictor stays on the CPU; the GPU it would use (cuda:0 = NVML's 1) is sampled
    assert doc["device"]["type"] == "cpu" and "no GPU predictor" in doc["device"]["reason"]
    gpu = doc["results"][0]["gpu"]
    assert gpu["samples"] >= 3  # ~0.3 s at 20 ms, plus one at the start and one at the end
    assert 70 <= gpu["utilisation_mean_percent"] <= 90 and gpu["utilisation_max_percent"] == 90
    assert gpu["device_memory_used_peak_bytes"] == 7 * 2**30
    assert gpu["process_memory_peak_bytes"] == 100 * 2**20
    assert doc["summary"]["gpu_memory_used_peak_bytes"] == 7 * 2**30
    calls = [line.split(" ", 1) for line in fake_nvml.read_text().splitlines()]
    sampler_pids = {pid for pid, call in calls if call.startswith("utilisation")}
    assert len(sampler_pids) == 1 and str(os.getpid()) not in sampler_pids  # sampled by the other process
    assert {call for _, call in calls if call.startswith("utilisation")} == {"utilisation 1"}
    for pid in {pid for pid, _ in calls}:  # NVML is shut down in each process that started it
        assert (
            [call for p, call in calls if p == pid].count("init")
            == [call for p, call in calls if p == pid].count("shutdown")
            >= 1
        )


def child_pids() -> set[int]:
    children = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
                children.add(int(entry.name))
    return children


# --- (4) bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("batch_sizes", "code"),
    [
        ([0], "invalid_batch_size"),
        ([8, -3], "invalid_batch_size"),
        ([2.5], "invalid_batch_size"),
        ([True], "invalid_batch_size"),
        ("8", "invalid_batch_size"),
        ([bm.MAX_BATCH_SIZE + 1], "batch_size_too_large"),
        (list(range(1, bm.MAX_BATCH_SIZES + 2)), "too_many_batch_sizes"),
        ([], "no_batch_sizes"),
        ([4, 4], "duplicate_batch_size"),
    ],
)
def test_bad_batch_sizes_are_refused_before_any_call(batch_sizes, code):
    model = SleepModel()
    with pytest.raises(EngineError) as err:
        run(model, batch_sizes=batch_sizes)
    assert err.value.code == code and err.value.message.endswith(".")
    assert model.calls == 0


def test_the_largest_batch_size_is_allowed():
    doc = run(SleepModel(), batch_sizes=[bm.MAX_BATCH_SIZE], warmup=0, min_calls=1, max_calls=2)
    assert doc["results"][0]["batch_size"] == bm.MAX_BATCH_SIZE


@pytest.mark.parametrize(
    "bad",
    [
        {"warmup": -1},
        {"min_calls": 0},
        {"min_calls": 50, "max_calls": 10},
        {"max_calls": bm.MAX_CALLS + 1},
        {"time_budget_seconds": 0},
        {"time_budget_seconds": float("nan")},
        {"p95_ci_width": 0},
        {"p95_ci_width": 1.5},
    ],
)
def test_bad_settings_are_refused(bad):
    with pytest.raises(EngineError) as err:
        run(SleepModel(), **bad)
    assert err.value.code == "invalid_parameter"


def test_a_batch_too_large_for_memory_is_refused_before_it_is_built():
    wide = np.zeros((1, 10_000))  # 80 KB a row: 65,536 of them would be 4.9 GiB
    model = SleepModel()
    with pytest.raises(EngineError) as err:
        run(model, rows=wide, batch_sizes=[1, bm.MAX_BATCH_SIZE])
    assert err.value.code == "batch_too_large" and "4.9 GiB" in err.value.message
    assert model.calls == 0


@pytest.mark.parametrize("interval", [0, -1, 61, float("inf")])
def test_a_bad_sample_interval_is_refused(interval):
    with pytest.raises(EngineError) as err:
        run(SleepModel(), sample_interval=interval)
    assert err.value.code == "invalid_parameter"


def test_an_unknown_device_is_refused():
    with pytest.raises(EngineError) as err:
        run(SleepModel(), device="tpu")
    assert err.value.code == "invalid_device" and "auto, cpu, cuda" in err.value.message


@pytest.mark.parametrize(
    ("rows", "code"),
    [
        (np.empty((0, 6)), "no_rows"),
        (pd.DataFrame(columns=["x0", "x1"]), "no_rows"),
        (np.arange(6.0), "invalid_rows"),
    ],
)
def test_empty_or_flat_rows_are_refused(rows, code):
    with pytest.raises(EngineError) as err:
        run(SleepModel(), rows=rows)
    assert err.value.code == code


def test_an_object_without_predict_is_refused():
    with pytest.raises(EngineError) as err:
        run(object())
    assert err.value.code == "unsupported_model"


class RaisesAfter:
    """Fine for ``ok_calls`` calls, then raises with a data value in its message."""

    def __init__(self, ok_calls: int):
        self.ok_calls = ok_calls
        self.calls = 0

    def predict(self, X):
        self.calls += 1
        if self.calls > self.ok_calls:
            raise RuntimeError(f"cannot score {np.asarray(X)[0, 0]!r}")
        return np.zeros(len(X))


@pytest.mark.parametrize(
    "model",
    [wrap_estimator(ExplodingClassifier().fit(ROWS, np.arange(len(ROWS)) % 2)), RaisesAfter(0), RaisesAfter(5)],
    ids=["loaded-model-raises", "raises-in-warm-up", "raises-while-timed"],
)
def test_a_model_that_raises_is_model_failed_naming_the_type_only(model):
    before = child_pids()
    with pytest.raises(EngineError) as err:
        run(model, batch_sizes=[4], warmup=3)
    assert err.value.code == "model_failed"
    assert "Error" in err.value.message and "4 rows" in err.value.message
    assert (
        repr(float(ROWS.iloc[0, 0])) not in err.value.message
        and str(round(ROWS.iloc[0, 0], 3)) not in err.value.message
    )
    assert child_pids() <= before  # the sampler process was stopped and reaped
