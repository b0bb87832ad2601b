"""Reading a label as yes or no, the same way in every engine that asks which class is positive."""

from __future__ import annotations

from typing import Any

import numpy as np

YES = frozenset({"true", "yes", "y", "1", "positive", "pos"})
NO = frozenset({"false", "no", "n", "0", "negative", "neg"})


def truth(value: Any) -> bool | None:
    """``True`` / ``False`` for a value that plainly means yes or no (``True``, 1, "yes", "true", and
    their opposites), ``None`` for anything else."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | float | np.integer | np.floating) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        return True if word in YES else False if word in NO else None
    return None
