"""What a compute host has, and what its GPUs are doing now, as plain data (no Django, no Celery).

``read_inventory`` gives the machine's name, CPU model and cores, memory, and each NVIDIA GPU read through
NVML (``nvidia-ml-py``): index, name, UUID, total memory, driver and CUDA versions. ``gpu_stats`` gives each
GPU's memory in use and utilisation now. Without NVML (not installed, no NVIDIA driver, no GPU) both say
so instead of failing: ``gpus`` is ``[]`` and ``gpu_note`` says why. The host agent sends these to the API
(``governance.hosts.services`` checks the same shape); the benchmark engine reads the same module.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# the longest text each field may carry (the API refuses longer)
_LIMITS = {"hostname": 255, "platform": 255, "python": 40, "cpu_model": 200, "gpu_note": 300,
           "name": 200, "uuid": 100, "driver_version": 50, "cuda_version": 20}  # fmt: skip


def _cut(key: str, value: Any) -> Any:
    return value[: _LIMITS[key]] if isinstance(value, str) else value


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class NvmlUnavailable(Exception):
    """NVML cannot be used here; the message says why in a few words."""


@contextmanager
def nvml() -> Iterator[Any]:
    """The ``pynvml`` module, initialised for the block and shut down after it; ``NvmlUnavailable``
    when there is no NVML to use."""
    try:
        import pynvml
    except ImportError:
        raise NvmlUnavailable("nvidia-ml-py is not installed") from None
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, _DriverNotLoaded...: no usable NVIDIA driver
        raise NvmlUnavailable(f"no NVIDIA driver (NVML: {type(exc).__name__})") from None
    try:
        yield pynvml
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: S110 (nothing to do about a failed shutdown)
            pass


def _cuda_version(lib: Any) -> str | None:
    try:
        version = int(lib.nvmlSystemGetCudaDriverVersion())
    except Exception:
        return None
    return f"{version // 1000}.{(version % 1000) // 10}"


def read_gpus() -> tuple[list[dict[str, Any]], str | None]:
    """``(gpus, note)``: each GPU NVML lists, or ``[]`` and why there are none."""
    try:
        with nvml() as lib:
            driver = _text(lib.nvmlSystemGetDriverVersion())
            cuda = _cuda_version(lib)
            gpus = []
            for index in range(int(lib.nvmlDeviceGetCount())):
                handle = lib.nvmlDeviceGetHandleByIndex(index)
                gpus.append({
                    "index": index,
                    "name": _cut("name", _text(lib.nvmlDeviceGetName(handle))),
                    "uuid": _cut("uuid", _text(lib.nvmlDeviceGetUUID(handle))),
                    "memory_total_bytes": int(lib.nvmlDeviceGetMemoryInfo(handle).total),
                    "driver_version": _cut("driver_version", driver),
                    "cuda_version": _cut("cuda_version", cuda),
                })  # fmt: skip
    except NvmlUnavailable as exc:
        return [], str(exc)
    except Exception as exc:  # an NVML call failed half-way: report no GPU rather than half of them
        return [], f"NVML could not list the GPUs ({type(exc).__name__})"
    return gpus, None if gpus else "NVML found no GPU"


def gpu_stats() -> list[dict[str, Any]]:
    """Per GPU, memory in use (bytes) and utilisation (%) now; ``None`` for a figure NVML does not give
    (utilisation of a MIG slice, say); ``[]`` without NVML."""
    try:
        with nvml() as lib:
            stats = []
            for index in range(int(lib.nvmlDeviceGetCount())):
                handle = lib.nvmlDeviceGetHandleByIndex(index)
                stats.append({
                    "index": index,
                    "memory_used_bytes": _reading(lambda h=handle: int(lib.nvmlDeviceGetMemoryInfo(h).used)),
                    "utilization_percent": _reading(lambda h=handle: int(lib.nvmlDeviceGetUtilizationRates(h).gpu)),
                })  # fmt: skip
            return stats
    except Exception:  # NvmlUnavailable or a failed call: a heartbeat without figures, not a failed one
        return []


def _reading(read) -> int | None:
    try:
        return read()
    except Exception:
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def memory_total_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def read_inventory() -> dict[str, Any]:
    """The machine as the API's ``inventory`` takes it."""
    gpus, note = read_gpus()
    inventory = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_model": cpu_model(),
        "cpu_cores": max(1, os.cpu_count() or 1),
        "memory_total_bytes": memory_total_bytes(),
        "gpus": gpus,
        "gpu_note": note,
    }
    return {key: _cut(key, value) if key in _LIMITS else value for key, value in inventory.items()}
