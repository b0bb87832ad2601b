"""Hardware benchmark of a loaded model: per-call latency, throughput and memory, per batch size.

For each batch size the sample rows are cycled into one batch of that many rows (built, and put in
the form the model takes, before anything is timed), the model is warmed up on it, then called
again and again with ``time.perf_counter_ns()`` read immediately before and after each ``predict``
and nothing else in the timed region. The calls stop at the first of:

- ``stable``: at least ``min_calls`` calls and the distribution-free confidence interval of the
  95th percentile (two order statistics whose ranks come from the binomial distribution, see
  :func:`quantile_interval`) is no wider than ``p95_ci_width`` times the p95 estimate;
- ``time_budget``: ``time_budget_seconds`` of measuring for this batch size have passed (the budget
  wins over ``min_calls``; warm-up is not counted in it);
- ``max_calls``.

Per batch size the document keeps the latency of one call in milliseconds (p50, p90, p95, p99,
max, mean, min), the p95 interval, throughput (rows and calls per second of predict time, i.e. one
caller calling back to back), why it stopped, the process's peak resident memory (its
``/proc/<pid>/statm`` sampled every 50 ms, and at the start and end of the batch size, warm-up
included, by a small sampler process; and the lifetime high-water mark of ``getrusage`` when it rose
during that batch size) and, on a host with an NVIDIA GPU, the GPU's utilisation (mean and max) and
memory (the whole device's and, where NVML reports it, this process's) sampled through NVML
(``nvidia-ml-py``) by the same sampler process. It is a process rather than a thread of the
measured one because a thread that wakes periodically slowed the measured calls (see
``_SAMPLER_SOURCE``).

Where the model runs is decided once by :func:`choose_device`: ONNX through onnxruntime's CUDA
execution provider when the installed onnxruntime has it, XGBoost with ``device="cuda"`` when the
build has CUDA, scikit-learn and LightGBM on the CPU; any of them on the CPU when the host has no
GPU, and the document says which and why. The model is put back on its previous device afterwards.

Only plain data in and out: no Django, no Celery, no data rows in the document.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Literal

import numpy as np
import pandas as pd

from workers.engines.environment import library_versions
from workers.engines.errors import EngineError, model_failed
from workers.engines.loading import LoadedModel
from workers.engines.serialize import jsonable
from workers.hosts import inventory as inventory_reader

try:  # Unix only; the workers run on Linux
    import resource
except ImportError:  # pragma: no cover
    resource = None  # type: ignore[assignment]

Progress = Callable[[float, str], None]
Device = Literal["cpu", "cuda"]

DEVICE_PREFERENCES = ("auto", "cpu", "cuda")
MAX_BATCH_SIZE = 65_536
MAX_BATCH_SIZES = 16
MAX_BATCH_BYTES = 2 * 2**30  # one batch in memory, before the model copies it
MAX_CALLS = 1_000_000
MAX_WARMUP = 10_000
MAX_TIME_BUDGET_SECONDS = 3_600.0
QUANTILE = 0.95
CI_CONFIDENCE = 0.95
SAMPLE_INTERVAL_SECONDS = 0.05
PERCENTILES = (50, 90, 95, 99)
# Progress is reported at most this often while calls are timed (a callback may write to a database).
PROGRESS_INTERVAL_NS = 1_000_000_000


# --- parameters --------------------------------------------------------------------------------


def validate_parameters(
    *,
    batch_sizes: Sequence[int],
    warmup: int,
    min_calls: int,
    max_calls: int,
    time_budget_seconds: float,
    p95_ci_width: float,
    device: str,
) -> None:
    """Raise ``EngineError`` for a request the engine refuses (what a caller can check before queueing)."""
    if isinstance(batch_sizes, np.ndarray) and batch_sizes.ndim == 1:
        batch_sizes = batch_sizes.tolist()
    if isinstance(batch_sizes, str | bytes) or not isinstance(batch_sizes, Sequence):
        raise EngineError("invalid_batch_size", "Batch sizes must be a list of whole numbers.")
    if not batch_sizes:
        raise EngineError("no_batch_sizes", "Give at least one batch size to measure.")
    if len(batch_sizes) > MAX_BATCH_SIZES:
        raise EngineError(
            "too_many_batch_sizes",
            f"At most {MAX_BATCH_SIZES} batch sizes are measured in one benchmark; {len(batch_sizes)} were given.",
        )
    for size in batch_sizes:
        if not _is_int(size):
            raise EngineError("invalid_batch_size", f"Batch sizes must be whole numbers, not a {type(size).__name__}.")
        if size < 1:
            raise EngineError("invalid_batch_size", f"Batch size {size} is not allowed: a batch holds at least 1 row.")
        if size > MAX_BATCH_SIZE:
            raise EngineError(
                "batch_size_too_large", f"Batch size {size:,} is above the limit of {MAX_BATCH_SIZE:,} rows."
            )
    if len(set(batch_sizes)) != len(batch_sizes):
        raise EngineError("duplicate_batch_size", "Each batch size may be given only once.")
    _check_int("warmup", warmup, 0, MAX_WARMUP)
    _check_int("min_calls", min_calls, 1, MAX_CALLS)
    _check_int("max_calls", max_calls, 1, MAX_CALLS)
    if min_calls > max_calls:
        raise EngineError("invalid_parameter", f"min_calls ({min_calls:,}) is above max_calls ({max_calls:,}).")
    if not _is_number(time_budget_seconds) or not 0 < time_budget_seconds <= MAX_TIME_BUDGET_SECONDS:
        raise EngineError(
            "invalid_parameter",
            f"time_budget_seconds must be above 0 and at most {MAX_TIME_BUDGET_SECONDS:,.0f} (seconds per batch size).",
        )
    if not _is_number(p95_ci_width) or not 0 < p95_ci_width <= 1:
        raise EngineError(
            "invalid_parameter", "p95_ci_width must be above 0 and at most 1 (a share of the p95, e.g. 0.05)."
        )
    if device not in DEVICE_PREFERENCES:
        raise EngineError("invalid_device", f"Unknown device {device!r}: use one of {', '.join(DEVICE_PREFERENCES)}.")


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float | np.floating)) and math.isfinite(float(value))


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if not _is_int(value) or not low <= value <= high:
        raise EngineError("invalid_parameter", f"{name} must be a whole number from {low:,} to {high:,}.")


# --- the p95 and its interval ------------------------------------------------------------------


def quantile_interval(n: int, q: float = QUANTILE, confidence: float = CI_CONFIDENCE) -> tuple[int, int] | None:
    """1-based ranks ``(l, u)`` of the order statistics ``X(l) <= X(u)`` of ``n`` independent calls that
    cover the ``q``-quantile with probability at least ``confidence``, whatever the distribution.

    ``B``, the number of calls at or below the true quantile, is Binomial(n, q), and
    ``P(X(l) <= quantile <= X(u)) >= P(l <= B <= u - 1)``. Equal tails: ``l`` is the largest rank with
    ``P(B <= l - 1) <= alpha / 2``, ``u`` the smallest with ``P(B <= u - 1) >= 1 - alpha / 2``. ``None``
    when ``n`` is too small for such ranks (for the p95 at 95 %: fewer than 72 calls)."""
    if n < 1:
        return None
    alpha = 1.0 - confidence
    sd = math.sqrt(n * q * (1.0 - q))
    low = max(0, int(n * q - 12.0 * sd) - 12)  # below this the binomial's mass is negligible
    ks = np.arange(low, n + 1)
    log_choose = np.array([math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) for k in ks.tolist()])
    cdf = np.cumsum(np.exp(log_choose + ks * math.log(q) + (n - ks) * math.log1p(-q)))  # cdf[i] = P(B <= low + i)
    lower = low + int(np.searchsorted(cdf, alpha / 2.0, side="right"))  # l - 1 = the largest k with cdf <= alpha/2
    above = np.flatnonzero(cdf >= 1.0 - alpha / 2.0)
    if lower < 1 or above.size == 0:
        return None
    upper = low + int(above[0]) + 1
    if upper > n:
        return None
    return lower, upper


def _p95_interval(durations_ns: np.ndarray) -> dict[str, Any] | None:
    """The p95 estimate (linear interpolation, numpy's default) and its order-statistic interval, in ns."""
    n = int(durations_ns.shape[0])
    ranks = quantile_interval(n)
    if ranks is None:
        return None
    position = QUANTILE * (n - 1)
    below, above = math.floor(position), math.ceil(position)
    part = np.partition(durations_ns, sorted({ranks[0] - 1, ranks[1] - 1, below, above}))
    p95 = float(part[below]) + (position - below) * float(part[above] - part[below])
    lower, upper = float(part[ranks[0] - 1]), float(part[ranks[1] - 1])
    return {
        "p95_ns": p95,
        "lower_ns": lower,
        "upper_ns": upper,
        "ranks": [ranks[0], ranks[1]],
        "relative_width": (upper - lower) / p95 if p95 > 0 else math.inf,
    }


# --- the host and its GPUs ---------------------------------------------------------------------


def gpu_inventory() -> dict[str, Any]:
    """The host's NVIDIA GPUs read through NVML (the host agent's reader): ``{"gpus": [{index, name, uuid,
    memory_total_bytes, driver_version, cuda_version}], "note"}``; no GPUs and a note saying why when
    there are none."""
    gpus, note = inventory_reader.read_gpus()
    return {"gpus": gpus, "note": note}


def visible_gpu(inventory: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """The GPU that CUDA calls ``cuda:0`` in this process (``CUDA_VISIBLE_DEVICES`` honoured: an index
    in NVML's order or a UUID), or ``None`` and why."""
    gpus = inventory.get("gpus") or []
    if not gpus:
        return None, inventory.get("note") or "no GPU on this host"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return gpus[0], None
    first = visible.split(",")[0].strip()
    if not first or first.startswith("-") or first == "NoDevFiles":
        return None, "CUDA_VISIBLE_DEVICES hides every GPU"
    if first.isdigit():
        match = next((g for g in gpus if g["index"] == int(first)), None)
    else:
        match = next((g for g in gpus if g["uuid"].startswith(first)), None)
    if match is None:
        return None, f"CUDA_VISIBLE_DEVICES names {first!r}, which NVML does not list"
    return match, None


def host_record(inventory: dict[str, Any] | None = None) -> dict[str, Any]:
    """Host name, CPU model and cores, total memory and the GPU inventory, as plain data."""
    inventory = gpu_inventory() if inventory is None else inventory
    gpus = inventory.get("gpus") or []
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    names = sorted({g["name"] for g in gpus})
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_model": inventory_reader.cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_count_usable": usable,
        "memory_total_bytes": inventory_reader.memory_total_bytes(),
        "gpus": gpus,
        "gpu_summary": ", ".join(f"{sum(g['name'] == n for g in gpus)} × {n}" for n in names)
        if gpus
        else f"no GPU ({inventory.get('note') or 'none found'})",
    }


# --- where the model runs ----------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceChoice:
    """``device`` the model runs on, ``reason`` in one sentence, and the GPU it uses (``None`` on CPU)."""

    device: Device
    reason: str
    backend: str
    gpu: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.device, "reason": self.reason, "backend": self.backend, "gpu": self.gpu}


def model_backend(model: Any) -> str:
    """``onnxruntime``, ``xgboost``, ``lightgbm``, ``sklearn``... (a LoadedModel's own, else the model's package)."""
    backend = getattr(model, "backend", None) if isinstance(model, LoadedModel) else None
    return str(backend or type(model).__module__.split(".")[0])


def choose_device(
    backend: str,
    preference: str = "auto",
    *,
    inventory: dict[str, Any] | None = None,
    onnx_providers: Sequence[str] | None = None,
    xgboost_cuda: bool | None = None,
) -> DeviceChoice:
    """Where a ``backend`` model runs under ``preference`` (``auto``, ``cpu`` or ``cuda``), and why.

    The facts default to this host's (NVML's inventory, ``onnxruntime.get_available_providers()``,
    ``xgboost.build_info()["USE_CUDA"]``); a caller may pass them. ``cuda`` asked for but impossible
    raises ``EngineError("gpu_unavailable")``; ``auto`` falls back to the CPU and says why."""
    if preference not in DEVICE_PREFERENCES:
        raise EngineError(
            "invalid_device", f"Unknown device {preference!r}: use one of {', '.join(DEVICE_PREFERENCES)}."
        )
    if preference == "cpu":
        return DeviceChoice("cpu", "The CPU was asked for.", backend)
    gpu, why_not = visible_gpu(gpu_inventory() if inventory is None else inventory)
    if gpu is None:
        choice = DeviceChoice("cpu", f"No GPU: {why_not}; the model runs on the CPU.", backend)
    elif backend == "onnxruntime":
        providers = list(_onnx_providers() if onnx_providers is None else onnx_providers)
        if "CUDAExecutionProvider" in providers:
            return DeviceChoice("cuda", "onnxruntime with the CUDA execution provider.", backend, gpu)
        choice = DeviceChoice(
            "cpu",
            f"The installed onnxruntime has no CUDA execution provider (it has {', '.join(providers) or 'none'}); "
            "onnxruntime-gpu provides it. The model runs on the CPU.",
            backend,
        )
    elif backend == "xgboost":
        if _xgboost_cuda() if xgboost_cuda is None else xgboost_cuda:
            return DeviceChoice("cuda", 'XGBoost with device="cuda".', backend, gpu)
        choice = DeviceChoice(
            "cpu", "The installed XGBoost was built without CUDA; the model runs on the CPU.", backend
        )
    elif backend == "lightgbm":
        choice = DeviceChoice(
            "cpu",
            "LightGBM predicts on the CPU (its GPU support needs a special build and covers training only).",
            backend,
        )
    elif backend == "sklearn":
        choice = DeviceChoice("cpu", "scikit-learn predicts on the CPU only.", backend)
    else:
        choice = DeviceChoice("cpu", f"A {backend} model is run on the CPU: no GPU predictor is known for it.", backend)
    if preference == "cuda":
        raise EngineError("gpu_unavailable", f"The GPU was asked for but cannot be used. {choice.reason}")
    return choice


def _onnx_providers() -> list[str]:
    try:
        import onnxruntime
    except ImportError:
        return []
    return list(onnxruntime.get_available_providers())


def _xgboost_cuda() -> bool:
    try:
        import xgboost
    except ImportError:
        return False
    return bool(xgboost.build_info().get("USE_CUDA", False))


def _place(model: Any, choice: DeviceChoice) -> tuple[DeviceChoice, dict[str, Any], Callable[[], None]]:
    """Put the model on ``choice.device``; the choice as it turned out, what was set, and how to undo it."""
    estimator = model.estimator if isinstance(model, LoadedModel) else model
    if choice.backend == "onnxruntime" and callable(getattr(estimator, "get_providers", None)):
        before = list(estimator.get_providers())
        if choice.device == "cuda":
            try:
                estimator.set_providers(["CUDAExecutionProvider", "CPUExecutionProvider"])
            except Exception as exc:
                estimator.set_providers(before)
                why = f"onnxruntime could not start the CUDA execution provider ({type(exc).__name__}); the model runs on the CPU."
                choice = DeviceChoice("cpu", why, choice.backend)
            else:
                if estimator.get_providers()[:1] != ["CUDAExecutionProvider"]:
                    estimator.set_providers(before)
                    why = "onnxruntime fell back to the CPU (the CUDA execution provider did not start: CUDA or cuDNN libraries missing?)."
                    choice = DeviceChoice("cpu", why, choice.backend)
        used = list(estimator.get_providers())
        return choice, {"onnx_providers": used}, lambda: estimator.set_providers(before) if used != before else None
    if choice.backend == "xgboost":
        booster = estimator.get_booster() if callable(getattr(estimator, "get_booster", None)) else estimator
        before_device = _xgboost_device(booster)
        if choice.device == "cuda":
            _set_xgboost_device(estimator, booster, "cuda")

            def restore() -> None:
                _set_xgboost_device(estimator, booster, before_device)

            return choice, {"xgboost_device": _xgboost_device(booster)}, restore
        if before_device not in ("cpu", None):  # a model saved with device="cuda": on the CPU, as decided
            _set_xgboost_device(estimator, booster, "cpu")
            return choice, {"xgboost_device": "cpu"}, lambda: _set_xgboost_device(estimator, booster, before_device)
        return choice, {"xgboost_device": "cpu"}, lambda: None
    return choice, {}, lambda: None


def _xgboost_device(booster: Any) -> str | None:
    try:
        return json.loads(booster.save_config())["learner"]["generic_param"].get("device")
    except Exception:
        return None


def _set_xgboost_device(estimator: Any, booster: Any, device: str | None) -> None:
    if device is None:
        return
    if estimator is not booster and callable(getattr(estimator, "set_params", None)):
        estimator.set_params(device=device)
    booster.set_param({"device": device})


# --- memory and GPU sampling -------------------------------------------------------------------


try:
    _PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
except (AttributeError, ValueError, OSError):  # pragma: no cover
    _PAGE_SIZE = 4096


def current_rss_bytes() -> int | None:
    """The process's resident memory now (``/proc/self/statm``), ``None`` where there is no /proc."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None


def max_rss_bytes() -> int | None:
    """The process's resident-memory high-water mark over its whole life (``getrusage``)."""
    if resource is None:  # pragma: no cover
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


# The sampler is a separate process, not a thread: on this project's VMs a second thread of the
# measured process that wakes every 50 ms slowed a scikit-learn predict by a quarter at the median
# (measured with bench/benchmark_engine.py), while a process reading /proc/<pid>/statm did not.
# It samples every ``interval`` seconds and whenever a byte arrives on its stdin, writes one line
# per sample ("monotonic_ns rss [utilisation used_bytes process_bytes]", "-" for unknown, "#" for a
# note) to its stdout (a temporary file the engine reads), and exits when its stdin closes.
_SAMPLER_SOURCE = r"""
import os, select, sys, time

pid, interval, gpu_index = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
page = os.sysconf("SC_PAGE_SIZE")
nvml = handle = None
if gpu_index >= 0:
    try:
        import pynvml as nvml

        nvml.nvmlInit()
        handle = nvml.nvmlDeviceGetHandleByIndex(gpu_index)
    except Exception as exc:
        os.write(1, ("# NVML could not start in the sampler (%s).\n" % type(exc).__name__).encode())
        nvml = handle = None


def rss():
    with open("/proc/%d/statm" % pid, "rb") as fh:
        return int(fh.read().split()[1]) * page


def utilisation():
    return nvml.nvmlDeviceGetUtilizationRates(handle).gpu


def used():
    return nvml.nvmlDeviceGetMemoryInfo(handle).used


def mine():
    processes = list(nvml.nvmlDeviceGetComputeRunningProcesses(handle))
    ours = [p.usedGpuMemory for p in processes if int(p.pid) == pid and p.usedGpuMemory is not None]
    if ours:
        return sum(int(m) for m in ours)
    return None if processes else 0  # others listed, not this pid: unknown (a container's pid namespace?)


def value(read):
    try:
        return read()
    except Exception:
        return None


def sample():
    fields = [time.monotonic_ns(), value(rss)]
    if handle is not None:
        fields += [value(utilisation), value(used), value(mine)]
    os.write(1, (" ".join("-" if f is None else str(int(f)) for f in fields) + "\n").encode())


sample()
while True:
    ready, _, _ = select.select([0], [], [], interval)
    if ready and not os.read(0, 64):
        break
    sample()
if nvml is not None:
    try:
        nvml.nvmlShutdown()
    except Exception:
        pass
"""


class _Sampler:
    """The sampler process and its samples, kept per window (one window per batch size): the
    process's peak RSS and, given a GPU index, NVML's utilisation and memory. Without the process
    (it did not start) the window has the samples the engine takes itself at its start and end."""

    def __init__(self, interval: float, gpu_index: int | None = None) -> None:
        self.interval = interval
        self.gpu_index = gpu_index
        self.file = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop())
        self.proc: subprocess.Popen | None = None
        self.notes: set[str] = set()
        self.offset = 0
        self.own_rss: list[int] = []

    def start(self) -> None:
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _SAMPLER_SOURCE, str(os.getpid()), repr(float(self.interval)),
                 str(-1 if self.gpu_index is None else self.gpu_index)],
                stdin=subprocess.PIPE, stdout=self.file, stderr=subprocess.DEVNULL, close_fds=True,
            )  # fmt: skip
        except OSError as exc:
            self._lost(f"the sampler process did not start ({type(exc).__name__})")
            return
        if not self._wait_for_sample(0, timeout=30.0):
            self._lost("the sampler process gave no sample")

    def _lost(self, why: str) -> None:
        self.notes.add(
            f"Memory{' and GPU' if self.gpu_index is not None else ''} sampled only at the start and end of each batch size: {why}."
        )
        self._terminate()

    def _terminate(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()  # the sampler exits at the end of its stdin
        except OSError:
            pass
        try:
            proc.wait(timeout=max(2.0, 3 * self.interval))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        self._terminate()
        self.file.close()

    def _read(self) -> list[list[str]]:
        """Whole sample lines written since the window's start."""
        fd = self.file.fileno()
        data = os.pread(fd, max(0, os.fstat(fd).st_size - self.offset), self.offset)
        samples = []
        for line in data[: data.rfind(b"\n") + 1].decode("ascii", "replace").splitlines():
            if line.startswith("#"):
                self.notes.add(line.lstrip("# "))
            elif line.strip():
                samples.append(line.split())
        return samples

    def _wait_for_sample(self, after_ns: int, *, timeout: float = 2.0) -> bool:
        """Ask for a sample now and wait until one taken at or after ``after_ns`` is written."""
        if self.proc is None:
            return False
        if after_ns:
            try:
                self.proc.stdin.write(b"s")  # type: ignore[union-attr]
                self.proc.stdin.flush()  # type: ignore[union-attr]
            except (OSError, ValueError):
                self._lost("the sampler process stopped")
                return False
        deadline = time.monotonic() + timeout
        while True:
            if any(int(fields[0]) >= after_ns for fields in self._read() if fields[0].isdigit()):
                return True
            if self.proc.poll() is not None:
                self._lost("the sampler process stopped")
                return False
            if time.monotonic() > deadline:
                return False
            time.sleep(0.001)

    def begin(self) -> None:
        self.offset = os.fstat(self.file.fileno()).st_size
        self.own_rss = [r for r in (current_rss_bytes(),) if r is not None]
        self._wait_for_sample(time.monotonic_ns())

    def end(self) -> dict[str, Any]:
        self._wait_for_sample(time.monotonic_ns())
        own = current_rss_bytes()
        if own is not None:
            self.own_rss.append(own)
        samples = self._read()
        rss = [int(f[1]) for f in samples if len(f) > 1 and f[1].isdigit()] + self.own_rss
        gpu = None
        if self.gpu_index is not None:
            column = lambda i: [int(f[i]) for f in samples if len(f) > i and f[i].isdigit()]  # noqa: E731
            utilisation, used, mine = column(2), column(3), column(4)
            gpu = {
                "samples": len(utilisation),
                "utilisation_mean_percent": float(np.mean(utilisation)) if utilisation else None,
                "utilisation_max_percent": float(max(utilisation)) if utilisation else None,
                "device_memory_used_peak_bytes": max(used) if used else None,
                "process_memory_peak_bytes": max(mine) if mine else None,
            }
        return {"samples": len(samples), "peak_rss_bytes": max(rss) if rss else None, "gpu": gpu}


# --- the benchmark -----------------------------------------------------------------------------


def _sample_rows(rows: Any) -> pd.DataFrame | np.ndarray:
    if isinstance(rows, pd.DataFrame):
        if rows.shape[0] == 0 or rows.shape[1] == 0:
            raise EngineError("no_rows", "The sample rows are empty: give at least one row with the model's features.")
        return rows
    array = np.asarray(rows)
    if array.ndim != 2:
        raise EngineError(
            "invalid_rows", f"The sample rows must be a table (2-D), not an array of {array.ndim} dimension(s)."
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise EngineError("no_rows", "The sample rows are empty: give at least one row with the model's features.")
    return array


def _check_batch_bytes(rows: pd.DataFrame | np.ndarray, size: int) -> None:
    per_row = (rows.memory_usage(index=False).sum() if isinstance(rows, pd.DataFrame) else rows.nbytes) / len(rows)
    if per_row * size > MAX_BATCH_BYTES:
        raise EngineError(
            "batch_too_large",
            f"A batch of {size:,} rows of {per_row:,.0f} bytes would hold {per_row * size / 2**30:.1f} GiB, above the "
            f"limit of {MAX_BATCH_BYTES / 2**30:.0f} GiB.",
        )


def build_batch(model: Any, rows: pd.DataFrame | np.ndarray, size: int) -> Any:
    """``size`` rows made by cycling the sample rows, in the form the model's ``predict`` takes (what
    every timed call of that batch size is given; built before any call is timed)."""
    rows = _sample_rows(rows)
    _check_batch_bytes(rows, size)
    index = np.arange(size) % rows.shape[0]
    if isinstance(rows, pd.DataFrame):
        batch: Any = rows.iloc[index].reset_index(drop=True)
    else:
        batch = np.ascontiguousarray(rows[index])
    if isinstance(model, LoadedModel):
        batch = model.prepare(batch)
        if model.backend == "onnxruntime" and isinstance(batch, np.ndarray):
            inputs = model.estimator.get_inputs()
            dtype = {"tensor(float)": np.float32, "tensor(double)": np.float64}.get(inputs[0].type if inputs else "")
            if dtype is not None:  # the conversion onnxruntime's wrapper would otherwise repeat on every call
                batch = np.ascontiguousarray(batch, dtype=dtype)
    return batch


def benchmark(
    model: Any,
    rows: pd.DataFrame | np.ndarray,
    *,
    batch_sizes: Sequence[int],
    warmup: int = 10,
    min_calls: int = 100,
    max_calls: int = 100_000,
    time_budget_seconds: float = 10.0,
    p95_ci_width: float = 0.05,
    device: str = "auto",
    progress: Progress | None = None,
    sample_interval: float = SAMPLE_INTERVAL_SECONDS,
) -> dict[str, Any]:
    """Measure ``model.predict`` on batches of each size cycled from ``rows``; the result document.

    ``model``: a :class:`~workers.engines.loading.LoadedModel` or any object with ``predict``.
    ``time_budget_seconds`` applies to each batch size; ``p95_ci_width`` is the largest width of the
    p95's 95 % interval, as a share of the p95, at which the estimate counts as stable. ``progress``
    receives percent (0-100) and a message. Raises ``EngineError`` for bad parameters (see
    :func:`validate_parameters`), empty rows, a GPU asked for that cannot be used, and
    ``model_failed`` (naming the exception type only) when the model raises."""
    validate_parameters(
        batch_sizes=batch_sizes, warmup=warmup, min_calls=min_calls, max_calls=max_calls,
        time_budget_seconds=time_budget_seconds, p95_ci_width=p95_ci_width, device=device,
    )  # fmt: skip
    if not _is_number(sample_interval) or not 0.001 <= sample_interval <= 60:
        raise EngineError("invalid_parameter", "sample_interval must be from 0.001 to 60 seconds.")
    if not callable(getattr(model, "predict", None)):
        raise EngineError("unsupported_model", f"A {type(model).__name__} has no predict method to benchmark.")
    rows = _sample_rows(rows)
    _check_batch_bytes(rows, max(int(s) for s in batch_sizes))
    report = _percent(progress)
    report(0.0, "Reading the host and its GPUs")
    inventory = gpu_inventory()
    host = host_record(inventory)
    backend = model_backend(model)
    choice = choose_device(backend, device, inventory=inventory)
    choice, placement, restore = _place(model, choice)
    if device == "cuda" and choice.device != "cuda":
        restore()
        raise EngineError("gpu_unavailable", f"The GPU was asked for but cannot be used. {choice.reason}")
    gpu, _ = visible_gpu(inventory)
    started_at = dt.datetime.now(dt.UTC)
    results = []
    sampler = None
    try:
        sampler = _Sampler(sample_interval, gpu["index"] if gpu is not None else None)
        sampler.start()
        for position, size in enumerate(batch_sizes):
            span = _span(
                report, 0.02 + 0.96 * position / len(batch_sizes), 0.02 + 0.96 * (position + 1) / len(batch_sizes)
            )
            results.append(
                _measure(
                    model, build_batch(model, rows, int(size)), int(size), sampler=sampler, warmup=warmup,
                    min_calls=min_calls, max_calls=max_calls, budget_ns=int(time_budget_seconds * 1e9),
                    width=float(p95_ci_width), progress=span,
                )
            )  # fmt: skip
    finally:
        if sampler is not None:
            sampler.stop()
        restore()
    report(0.99, "Writing the record")
    document = _document(
        model, backend=backend, choice=choice, placement=placement, host=host, results=results,
        settings={
            "batch_sizes": [int(s) for s in batch_sizes], "warmup": warmup, "min_calls": min_calls,
            "max_calls": max_calls, "time_budget_seconds": float(time_budget_seconds),
            "p95_ci_width": float(p95_ci_width), "ci_confidence": CI_CONFIDENCE, "device": device,
            "sample_interval_seconds": sample_interval,
        },
        started_at=started_at, sampler_notes=sorted(sampler.notes) if sampler is not None else [],
    )  # fmt: skip
    report(1.0, "Done")
    return document


def _measure(
    model: Any,
    batch: Any,
    size: int,
    *,
    sampler: _Sampler,
    warmup: int,
    min_calls: int,
    max_calls: int,
    budget_ns: int,
    width: float,
    progress: Progress,
) -> dict[str, Any]:
    """One batch size: warm up, then timed calls until stable, out of budget or at ``max_calls``."""
    predict = model.predict
    clock = time.perf_counter_ns
    durations = np.empty(max_calls, dtype=np.int64)
    progress(0.0, f"Batch size {size:,}: warming up ({warmup} calls)")
    sampler.begin()
    maxrss_before = max_rss_bytes()
    calls = 0
    stopped = "max_calls"
    next_check = min_calls
    in_model = True  # False while the engine's own code runs between calls: its errors are not the model's
    try:
        for _ in range(warmup):
            predict(batch)
        in_model = False
        progress(0.0, f"Batch size {size:,}: measuring")
        in_model = True
        started = last_report = clock()
        while calls < max_calls:
            t0 = clock()
            out = predict(batch)
            t1 = clock()
            out = None  # noqa: F841 (the output is freed here, outside the timed region)
            durations[calls] = t1 - t0
            calls += 1
            if calls >= next_check:
                in_model = False
                interval = _p95_interval(durations[:calls])
                if interval is not None and interval["relative_width"] <= width:
                    stopped = "stable"
                    break
                next_check = calls + max(10, calls // 20)
                in_model = True
            if t1 - started >= budget_ns:
                stopped = "time_budget"
                break
            if t1 - last_report >= PROGRESS_INTERVAL_NS:
                in_model = False
                last_report = t1
                progress(max((t1 - started) / budget_ns, calls / max_calls), f"Batch size {size:,}: {calls:,} calls")
                in_model = True
        wall_ns = clock() - started
    except EngineError:
        raise
    except Exception as exc:  # the model's own failure: its text may quote the rows
        if not in_model:
            raise
        raise model_failed(exc, during="benchmarking", n_rows=size) from exc
    memory = sampler.end()
    maxrss_after = max_rss_bytes()
    progress(1.0, f"Batch size {size:,}: {calls:,} calls, {stopped.replace('_', ' ')}")
    return _batch_result(
        size, durations[:calls], stopped=stopped, width=width, warmup=warmup, wall_ns=wall_ns, memory=memory,
        maxrss_before=maxrss_before, maxrss_after=maxrss_after,
    )  # fmt: skip


def _batch_result(
    size: int,
    durations: np.ndarray,
    *,
    stopped: str,
    width: float,
    warmup: int,
    wall_ns: int,
    memory: dict[str, Any],
    maxrss_before: int | None,
    maxrss_after: int | None,
) -> dict[str, Any]:
    calls = int(durations.shape[0])
    ms = durations.astype(np.float64) / 1e6
    total_seconds = float(durations.sum()) / 1e9
    percentiles = np.percentile(ms, PERCENTILES)
    interval = _p95_interval(durations)
    sampled = memory["peak_rss_bytes"]
    # The lifetime high-water mark rose during this batch size: that rise is this batch size's true peak.
    rose = maxrss_before is not None and maxrss_after is not None and maxrss_after > maxrss_before
    peak = max(sampled or 0, maxrss_after) if rose else sampled
    return {
        "batch_size": size,
        "calls": calls,
        "warmup_calls": warmup,
        "stopped": stopped,
        "stable": bool(calls and interval is not None and interval["relative_width"] <= width),
        "latency_ms": {
            **{f"p{p}": float(v) for p, v in zip(PERCENTILES, percentiles, strict=True)},
            "max": float(ms.max()),
            "mean": float(ms.mean()),
            "min": float(ms.min()),
        },
        "p95_interval_ms": None
        if interval is None
        else {
            "lower": interval["lower_ns"] / 1e6,
            "upper": interval["upper_ns"] / 1e6,
            "confidence": CI_CONFIDENCE,
            "ranks": interval["ranks"],
            "relative_width": interval["relative_width"],
        },
        "throughput": {
            "rows_per_second": size * calls / total_seconds if total_seconds > 0 else None,
            "calls_per_second": calls / total_seconds if total_seconds > 0 else None,
        },
        "timed_seconds": total_seconds,
        "wall_seconds": wall_ns / 1e9,
        "memory": {
            "peak_rss_bytes": peak,
            "peak_rss_source": "getrusage" if rose else "sampled",
            "max_rss_lifetime_bytes": maxrss_after,
            "samples": memory["samples"],
        },
        "gpu": memory["gpu"],
    }


def _document(
    model: Any,
    *,
    backend: str,
    choice: DeviceChoice,
    placement: dict[str, Any],
    host: dict[str, Any],
    results: list[dict[str, Any]],
    settings: dict[str, Any],
    started_at: dt.datetime,
    sampler_notes: list[str],
) -> dict[str, Any]:
    libraries = library_versions()
    for name in ("nvidia-ml-py", "onnxruntime-gpu"):
        try:
            libraries[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libraries[name] = None
    described = model.describe() if isinstance(model, LoadedModel) else None
    device = {**choice.as_dict(), **placement}
    notes = [f"Ran on {'the GPU ' + choice.gpu['name'] if choice.gpu else 'the CPU'}: {choice.reason}"]
    if not host["gpus"]:
        notes.append(f"No GPU on this host: {host['gpu_summary'].removeprefix('no GPU (').removesuffix(')')}.")
    notes.append(
        "Latency is per predict call on a batch, warm-up calls excluded; throughput is rows (calls) per second of "
        "predict time, one caller calling back to back."
    )
    if choice.device == "cuda" and backend == "xgboost":
        notes.append("XGBoost is given numpy arrays in host memory: each call includes the copy to the GPU.")
    unstable = [r["batch_size"] for r in results if not r["stable"]]
    if unstable:
        notes.append(
            f"The p95 was not stable within {settings['p95_ci_width']:.0%} at batch size(s) "
            f"{', '.join(f'{s:,}' for s in unstable)} (stopped by "
            f"{', '.join(sorted({r['stopped'].replace('_', ' ') for r in results if not r['stable']}))})."
        )
    notes.extend(sampler_notes)
    summary: dict[str, Any] = {}
    for r in results:
        for key in ("p50", "p95", "p99"):
            summary[f"batch_{r['batch_size']}.{key}_ms"] = r["latency_ms"][key]
        summary[f"batch_{r['batch_size']}.rows_per_second"] = r["throughput"]["rows_per_second"]
    peaks = [r["memory"]["peak_rss_bytes"] for r in results if r["memory"]["peak_rss_bytes"] is not None]
    summary["peak_rss_bytes"] = max(peaks) if peaks else None
    gpu_peaks = [
        r["gpu"]["device_memory_used_peak_bytes"]
        for r in results
        if r["gpu"] and r["gpu"]["device_memory_used_peak_bytes"] is not None
    ]
    summary["gpu_memory_used_peak_bytes"] = max(gpu_peaks) if gpu_peaks else None
    return jsonable({
        "engine": "benchmark",
        "started_at": started_at.isoformat(),
        "device": device,
        "host": host,
        "libraries": libraries,
        "model": described or {"estimator": type(model).__name__, "backend": backend},
        "settings": settings,
        "warmup_calls": settings["warmup"],
        "total_calls": sum(r["calls"] for r in results),
        "results": results,
        "summary": summary,
        "tables": [{
            "title": f"Latency per call on {'GPU' if choice.device == 'cuda' else 'CPU'} (ms)",
            "columns": ["batch size", "calls", "p50", "p95", "p99", "max", "rows/s", "stopped", "peak RSS (MiB)"],
            "rows": [[r["batch_size"], r["calls"], _round(r["latency_ms"]["p50"]), _round(r["latency_ms"]["p95"]),
                      _round(r["latency_ms"]["p99"]), _round(r["latency_ms"]["max"]),
                      _round(r["throughput"]["rows_per_second"], 1), r["stopped"].replace("_", " "),
                      _round((r["memory"]["peak_rss_bytes"] or 0) / 2**20, 1)] for r in results],
        }],
        "notes": notes,
    })  # fmt: skip


# --- helpers -----------------------------------------------------------------------------------


def _round(value: Any, digits: int = 4) -> Any:
    return round(float(value), digits) if _is_number(value) else value


def _percent(progress: Progress | None) -> Progress:
    def report(fraction: float, message: str = "") -> None:
        if progress is not None:
            progress(100.0 * max(0.0, min(1.0, fraction)), message)

    return report


def _span(progress: Progress, start: float, end: float) -> Progress:
    def report(fraction: float, message: str = "") -> None:
        progress(start + (end - start) * max(0.0, min(1.0, fraction)), message)

    return report
