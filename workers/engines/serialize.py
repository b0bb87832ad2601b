"""Turn engine results into JSON-safe plain data (what a JSONField and ``json.dumps(allow_nan=False)`` take).

numpy scalars and arrays become Python numbers and lists, NaN and infinities become ``None``
(PostgreSQL's jsonb rejects NaN), tuples become lists, dataclasses and objects with ``as_dict``
become dicts, mapping keys become strings.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def jsonable(obj: Any) -> Any:
    """A copy of ``obj`` made only of dict, list, str, int, float (finite), bool and None."""
    if obj is None or isinstance(obj, (str, bool)):
        return obj
    if isinstance(obj, (int, np.integer)) and not isinstance(obj, np.bool_):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, np.ndarray):
        return _array(obj)
    if isinstance(obj, Mapping):
        return {str(jsonable(k)) if not isinstance(k, str) else k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=str) if isinstance(obj, (set, frozenset)) else obj
        return [jsonable(v) for v in items]
    if hasattr(obj, "as_dict") and callable(obj.as_dict):
        return jsonable(obj.as_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return jsonable({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})
    if isinstance(obj, (dt.datetime, dt.date)):
        return obj.isoformat()
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    return str(obj)


def _array(a: np.ndarray) -> list[Any]:
    """Nested lists from an array without visiting each element in Python where it can be avoided."""
    if a.dtype.kind in "biu":
        return a.tolist()
    if a.dtype.kind == "f":
        finite = np.isfinite(a)
        if finite.all():
            return a.astype(np.float64, copy=False).tolist()
        return np.where(finite, a, None).tolist()
    return jsonable(a.tolist())
