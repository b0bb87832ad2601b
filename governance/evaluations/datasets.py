"""Evaluation data uploaded with a request: stored under a random name, hashed, and checked
before the run is queued, so a run never starts on data that cannot work.

The checks name columns and counts, never values: error messages go to people and logs.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

import pandas as pd
from django.conf import settings
from django.core.files import File

from governance.core.errors import ValidationFailed
from workers.engines.data import sample_weight_problem
from workers.engines.fairness import sensitive_column_problem

CHUNK = 1024 * 1024
FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class Stored:
    path: str
    name: str
    format: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Summary:
    rows: int
    columns: list[str]


def _format(name: str) -> str:
    lowered = name.lower()
    for suffix, fmt in FORMATS.items():
        if lowered.endswith(suffix):
            return fmt
    raise ValidationFailed(
        "Evaluation data must be a .csv or .parquet file.", code="unsupported_data_format",
        fields={"data": "CSV or Parquet."},
    )  # fmt: skip


def store(upload, *, storage) -> Stored:
    """Hash while copying; refuse empty and oversized files before anything is kept."""
    if upload is None:
        raise ValidationFailed("Attach the evaluation data file.", code="missing_data", fields={"data": "Required."})
    name = (getattr(upload, "name", "") or "data.csv")[-255:]
    fmt = _format(name)
    limit = settings.EVALUATION_DATA_MAX_BYTES
    if getattr(upload, "size", None) is not None and upload.size > limit:
        raise ValidationFailed(f"The data file is larger than the {limit:,}-byte limit.", code="data_too_large")
    digest, size = hashlib.sha256(), 0
    for chunk in upload.chunks(CHUNK):
        size += len(chunk)
        if size > limit:
            raise ValidationFailed(f"The data file is larger than the {limit:,}-byte limit.", code="data_too_large")
        digest.update(chunk)
    if size == 0:
        raise ValidationFailed("The data file is empty.", code="empty_data")
    upload.seek(0)
    path = storage.save(f"{uuid.uuid4().hex}.{fmt}", File(upload))
    return Stored(path=path, name=name, format=fmt, sha256=digest.hexdigest(), size=size)


def read(stored_path: str, fmt: str, *, storage, max_rows: int) -> pd.DataFrame:
    with storage.open(stored_path, "rb") as handle:
        try:
            if fmt == "parquet":
                frame = pd.read_parquet(handle)
            else:
                frame = pd.read_csv(handle, nrows=max_rows + 1)
        except Exception as exc:  # parsers raise many types; the message names no value
            raise ValidationFailed(
                f"The data file could not be read as {fmt.upper()} ({type(exc).__name__}).", code="unreadable_data"
            ) from None
    return frame


def check(
    stored: Stored, *, storage, target_column: str, sensitive_features: list[str], slice_column=None,
    sample_weight_column=None,
) -> Summary:  # fmt: skip
    max_rows = settings.EVALUATION_MAX_ROWS
    frame = read(stored.path, stored.format, storage=storage, max_rows=max_rows)
    if len(frame) == 0:
        raise ValidationFailed("The data file has a header but no rows.", code="empty_data")
    if len(frame) > max_rows:
        raise ValidationFailed(f"The data has more than {max_rows:,} rows, the limit.", code="too_many_rows")
    columns = [str(c) for c in frame.columns]
    named = [c for c in [target_column, *sensitive_features, slice_column, sample_weight_column] if c]
    missing = [c for c in named if c not in columns]
    if missing:
        field = (
            "target_column" if target_column in missing
            else "parameters.sample_weight_column" if missing == [sample_weight_column]
            else "sensitive_features"
        )  # fmt: skip
        raise ValidationFailed(
            f"Column(s) not in the data: {', '.join(missing)}. The data has: {', '.join(columns[:30])}"
            + (" …" if len(columns) > 30 else "") + ".",
            code="missing_column",
            fields={field: f"Not in the data: {', '.join(missing)}."},
        )  # fmt: skip
    if sample_weight_column:
        _check_sample_weights(frame, sample_weight_column, others=[target_column, *sensitive_features])
    if target_column and frame[target_column].isna().any():
        raise ValidationFailed(
            f"The target column '{target_column}' has {int(frame[target_column].isna().sum())} empty value(s).",
            code="missing_target_values",
        )
    for column in sensitive_features:
        groups = frame[column].dropna().nunique()
        if groups < 2:
            raise ValidationFailed(
                f"The sensitive column '{column}' has {groups} group(s); fairness needs at least two.",
                code="single_group",
            )
        if frame[column].isna().any():
            raise ValidationFailed(
                f"The sensitive column '{column}' has {int(frame[column].isna().sum())} empty value(s); "
                "label them (for example 'unknown') so that no group is silently dropped.",
                code="empty_group",
            )
        # its values become group labels in the stored result: never identifiers (the worker checks again)
        problem = sensitive_column_problem(frame[column], column, max_groups=settings.EVALUATION_MAX_SENSITIVE_GROUPS)
        if problem is not None:
            code, sentence = problem
            raise ValidationFailed(sentence, code=code, fields={"sensitive_features": sentence})
    return Summary(rows=len(frame), columns=columns)


def _check_sample_weights(frame: pd.DataFrame, column: str, *, others: list[str]) -> None:
    """The rule the worker applies again (``workers.engines.data.sample_weight_problem``), before queuing."""
    field = "parameters.sample_weight_column"
    if column in others:
        sentence = (
            f"The sample-weight column '{column}' is also the target or a sensitive column; name a column of weights."
        )
        raise ValidationFailed(sentence, code="bad_sample_weight", fields={field: sentence})
    problem = sample_weight_problem(frame[column], column)
    if problem is not None:
        raise ValidationFailed(problem, code="bad_sample_weight", fields={field: problem})
