"""What a run records about where it ran: Python, platform and the engines' library versions."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

LIBRARIES = (
    "numpy",
    "pandas",
    "scikit-learn",
    "shap",
    "lime",
    "fairlearn",
    "onnxruntime",
    "skl2onnx",
    "xgboost-cpu",
    "xgboost",
    "lightgbm",
    "skops",
    "pyarrow",
)


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries the engines use (``None`` when absent)."""
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    if versions.get("xgboost") is None:  # the CPU-only wheel installs the same module
        versions["xgboost"] = versions.pop("xgboost-cpu", None)
    else:
        versions.pop("xgboost-cpu", None)
    return versions


def environment() -> dict[str, object]:
    """Python, platform, processor count and library versions, as plain data."""
    import os

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "libraries": library_versions(),
    }
