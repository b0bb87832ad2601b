"""The shape of a version's metadata, checked the same way wherever it comes in (API, forms,
services). Each check returns the problem as a sentence, or ``None`` when the value is fine."""

from __future__ import annotations

MAX_TAG_LENGTH = 50


def metrics_problem(value) -> str | None:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool) for k, v in value.items()
    ):
        return 'Metrics must be an object of names to numbers, e.g. {"accuracy": 0.91}.'
    return None


def hyperparameters_problem(value) -> str | None:
    return None if isinstance(value, dict) else "Hyperparameters must be a JSON object."


def tags_problem(value) -> str | None:
    if not isinstance(value, list) or not all(isinstance(t, str) and 0 < len(t) <= MAX_TAG_LENGTH for t in value):
        return f"Tags must be a list of strings of 1 to {MAX_TAG_LENGTH} characters."
    return None


CHECKS = {"metrics": metrics_problem, "hyperparameters": hyperparameters_problem, "tags": tags_problem}
