"""The shape of a version's metadata, checked the same way wherever it comes in (API, forms,
services). Each check returns the problem as a sentence, or ``None`` when the value is fine."""

from __future__ import annotations

import functools

from governance.core.jsoninput import json_problem

MAX_TAG_LENGTH = 50


def unstorable_problem(value) -> str | None:
    """What the database cannot store (NUL, lone surrogates, infinite numbers) or nesting too deep."""
    problem = json_problem(value)
    return problem.message if problem else None


def _storable_first(check):
    """Every check below answers ``unstorable_problem`` first, so no door lets such a value reach an INSERT."""

    @functools.wraps(check)
    def checked(value) -> str | None:
        return unstorable_problem(value) or check(value)

    return checked


@_storable_first
def metrics_problem(value) -> str | None:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool) for k, v in value.items()
    ):
        return 'Metrics must be an object of names to numbers, e.g. {"accuracy": 0.91}.'
    return None


@_storable_first
def hyperparameters_problem(value) -> str | None:
    return None if isinstance(value, dict) else "Hyperparameters must be a JSON object."


@_storable_first
def tags_problem(value) -> str | None:
    if not isinstance(value, list) or not all(isinstance(t, str) and 0 < len(t) <= MAX_TAG_LENGTH for t in value):
        return f"Tags must be a list of strings of 1 to {MAX_TAG_LENGTH} characters."
    return None


MAX_PROFILE_BYTES = 1_000_000


@_storable_first
def training_profile_problem(value) -> str | None:
    """A profile of the training data as ``workers.engines.data_quality.profile`` writes it
    (``manage.py profile_data train.csv`` prints one): only statistics, never rows."""
    import json

    if value in ({}, None):
        return None
    columns = value.get("columns") if isinstance(value, dict) else None
    if not isinstance(columns, dict) or not columns:
        return 'The training profile must be an object with "columns" (from manage.py profile_data).'
    for name, column in columns.items():
        if not isinstance(column, dict) or not {"kind", "dtype", "missing_share"} <= set(column):
            return f"The training profile's column {str(name)[:60]!r} lacks kind, dtype or missing_share."
    if len(json.dumps(value, default=str)) > MAX_PROFILE_BYTES:
        return f"The training profile is larger than {MAX_PROFILE_BYTES:,} bytes."
    return None


CHECKS = {
    "metrics": metrics_problem,
    "hyperparameters": hyperparameters_problem,
    "tags": tags_problem,
    "training_profile": training_profile_problem,
}
