"""Stored results keep aggregates only: the one function every engine's document passes through.

DESIGN.md: "no value seen fewer than k times, no exact extremes, no row of evaluation data, ever".
:func:`aggregates_only` enforces it on a run's result and figures (``runner.evaluate`` calls it for
every kind, and the service that stores a result calls it again), :func:`profile_aggregates_only` on a
training-data profile registered with a version. ``k`` is :data:`MIN_COUNT` (5) unless the caller
says otherwise (the ``EVALUATION_MIN_COUNT`` setting). The rules:

- **Category values**: a value is stored only when at least k rows hold it. A column profile's
  ``categories`` keep the values seen k times or more; the others are folded into ``other_count``
  (how many distinct values in ``withheld_values``). When the evaluation data is given, every string
  of the document equal to a value that fewer than k rows of a column hold (as a whole, as a part of
  a group label such as ``sex=F, age=18-25``, or as a word of a sentence) becomes :data:`WITHHELD`.
- **Numeric extremes**: ``min`` and ``max`` (and their ``train_`` / ``eval_`` forms) are never stored.
  The spread of a column is told by quantiles p1 to p99 (``data_quality.QUANTILES``), each stored only
  when at least k values lie on either side of it (n·min(q, 1 − q) ≥ k: p1 and p99 from 500 values,
  p5 and p95 from 100, the median from 10); mean and standard deviation from k values; the decile
  histogram from 10·k.
- **Small groups**: a group (a fairness group, a performance slice, a calibration bin) of fewer than
  k rows keeps its size (``count`` / ``n``) and nothing else: no confusion counts, no rates, no
  intervals, no label. A rate needs withholding as much as the counts: with the group's size it *is*
  the counts, and a one-row group's selection rate or accuracy is that person's decision or label.
  Its row in a table keeps only its size, its points leave the figures, and any entry keyed by its
  group key (fairlearn's per-group metrics) goes.

Plain data in (what ``serialize.jsonable`` returns), a cleaned copy out. No Django here.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

MIN_COUNT = 5
WITHHELD = "(withheld)"
EXTREME_KEYS = frozenset({"min", "max", "train_min", "train_max", "eval_min", "eval_max"})
COUNT_KEYS = ("count", "n")
LABEL_KEYS = ("label", "value")
GROUP_PAYLOAD = frozenset({"confusion", "metrics", "ci", "key"})
TABLE_COUNT_COLUMNS = ("rows", "count", "n")
HISTOGRAM_BINS = 10
# In a Plotly spec only these scalar strings are text a person reads; the others ("type", "mode",
# "orientation", ...) are Plotly's vocabulary and are left alone.
FIGURE_TEXT_KEYS = frozenset({"name", "text", "hovertext", "title"})
_COMPONENTS = re.compile(r"(\s*(?:,|;|×|=|:)\s*)")
_WORDS = re.compile(r"(\s+)")
MIN_WORD_LENGTH = 6  # a rare value is looked for as a word of a sentence from this length (e-mails, names)
_EDGE = "()[]{}'\"`.,;:!?"


def min_count_setting(min_count: int | None = None) -> int:
    """The k of the rule: ``min_count``, else the ``EVALUATION_MIN_COUNT`` environment variable, else
    :data:`MIN_COUNT`; at least 1."""
    if min_count is None:
        min_count = int(os.environ.get("EVALUATION_MIN_COUNT", MIN_COUNT))
    return max(int(min_count), 1)


def withheld_sentence(k: int) -> str:
    return f"Fewer than {k} rows: only the size is stored."


def rare_values(frame: Any, *, k: int = MIN_COUNT) -> set[str]:
    """The values (as text) that fewer than ``k`` rows of a non-numeric column of ``frame`` hold."""
    import pandas as pd

    rare: set[str] = set()
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            continue
        counts = column.dropna().astype(str).value_counts()
        rare.update(str(v) for v in counts.index[counts.to_numpy() < k])
    return rare


def aggregates_only(result: Any, figures: Any = None, *, k: int = MIN_COUNT, frame: Any = None) -> tuple[Any, Any]:
    """``result`` and ``figures`` with the rules of the module docstring applied (copies)."""
    keep = {str(c) for c in frame.columns} if frame is not None else set()
    bad = rare_values(frame, k=k) if frame is not None else set()
    scrub = _Scrub(k=k, bad=bad - keep, keep=keep)
    scrub.collect(result)
    scrub.collect(figures)
    return scrub.clean(result), scrub.clean(figures, in_figure=True)


def profile_aggregates_only(profile: Any, *, k: int = MIN_COUNT) -> Any:
    """A training-data profile (``data_quality.profile``'s shape) with the rules applied."""
    if not isinstance(profile, Mapping):
        return profile
    cleaned, _ = aggregates_only(dict(profile), None, k=k)
    return cleaned


def column_aggregates_only(entry: Mapping[str, Any], *, k: int = MIN_COUNT) -> dict[str, Any]:
    """One column of a profile: category values under ``k`` rows folded away, extremes dropped,
    quantiles, moments and histogram only where enough values stand behind them."""
    out = {key: value for key, value in entry.items() if key not in EXTREME_KEYS}
    categories = out.get("categories")
    if isinstance(categories, Mapping) and categories:
        kept = {str(v): c for v, c in categories.items() if _is_number(c) and c >= k}
        withheld = {v: c for v, c in categories.items() if v not in kept}
        if withheld:
            out["categories"] = kept
            out["other_count"] = int(out.get("other_count") or 0) + int(
                sum(c for c in withheld.values() if _is_number(c))
            )
            out["withheld_values"] = int(out.get("withheld_values") or 0) + len(withheld)
            out["categories_withheld"] = (
                f"{out['withheld_values']} value(s) seen fewer than {k} times: counted in other_count, values not stored."
            )
    n = out.get("count")
    n = int(n) if _is_number(n) else 0
    quantiles = out.get("quantiles")
    if isinstance(quantiles, Mapping):
        out["quantiles"] = {q: v for q, v in quantiles.items() if quantile_stored(q, n, k=k)}
    if out.get("kind") == "numeric":
        if n < k:
            out.update({"mean": None, "std": None})
        if out.get("bins") and n < HISTOGRAM_BINS * k:
            out["bins"] = None
    return out


def quantile_stored(q: Any, n: int, *, k: int = MIN_COUNT) -> bool:
    """Whether the ``q`` quantile of ``n`` values has at least ``k`` of them on either side."""
    try:
        q = float(q)
    except (TypeError, ValueError):
        return False
    return 0.0 < q < 1.0 and n * min(q, 1.0 - q) >= k


# --- the walk ------------------------------------------------------------------------------------


class _Scrub:
    def __init__(self, *, k: int, bad: set[str], keep: set[str]) -> None:
        self.k = k
        self.bad = set(bad)  # strings never stored: rare values of the data, labels of small groups
        self.keep = keep  # column names: the document's vocabulary, never data
        self.keys: set[str] = set()  # group keys ({feature: value}) of small groups
        self.labels: set[str] = set()

    # pass 1: which groups are small, wherever the document lists them

    def collect(self, node: Any) -> None:
        if isinstance(node, Mapping):
            if self._small_group(node):
                label = next((node[key] for key in LABEL_KEYS if isinstance(node.get(key), str)), None)
                if label is not None:
                    self.labels.add(label)
                if isinstance(node.get("key"), Mapping):
                    self.keys.add(_canonical(node["key"]))
            elif _is_table(node):
                index = _count_column(node["columns"])
                for row in node["rows"]:
                    if index is not None and _small_cell(row, index, self.k) and row and isinstance(row[0], str):
                        self.labels.add(row[0])
            for value in node.values():
                self.collect(value)
        elif isinstance(node, list):
            for value in node:
                self.collect(value)

    # pass 2: a cleaned copy

    def clean(self, node: Any, *, in_figure: bool = False, key: str | None = None) -> Any:
        if isinstance(node, Mapping):
            return self._dict(node, in_figure=in_figure)
        if isinstance(node, list):
            return [self.clean(value, in_figure=in_figure) for value in node]
        if isinstance(node, str) and (not in_figure or key is None or key in FIGURE_TEXT_KEYS):
            return self.text(node)
        return node

    def _dict(self, node: Mapping[str, Any], *, in_figure: bool) -> Any:
        if self._small_group(node):
            return self._withheld_group(node)
        if isinstance(node.get("key"), Mapping) and _canonical(node["key"]) in self.keys:
            return {"key": WITHHELD, "withheld": withheld_sentence(self.k)}
        if _is_column_profile(node):
            node = column_aggregates_only(node, k=self.k)
        elif _is_calibration(node):
            node = self._calibration(node)
        elif _is_table(node):
            node = {**node, "rows": [self._table_row(row, node["columns"]) for row in node["rows"]]}
        elif in_figure and isinstance(node.get("data"), list) and isinstance(node.get("layout", {}), Mapping):
            node = {**node, "data": [self._trace(t) if isinstance(t, Mapping) else t for t in node["data"]]}
        out: dict[str, Any] = {}
        for name, value in node.items():
            if name in EXTREME_KEYS and (_is_number(value) or _is_timestamp(value)):
                continue
            if not in_figure and isinstance(name, str) and name not in self.keep and self._is_bad(name):
                continue  # an entry keyed by a rare value (a category, a group)
            out[name] = self.clean(value, in_figure=in_figure, key=name)
        return out

    def _small_group(self, node: Mapping[str, Any]) -> bool:
        count = next((node[key] for key in COUNT_KEYS if key in node), None)
        if not _is_number(count) or count >= self.k:
            return False
        labelled = any(key in node for key in LABEL_KEYS)
        return labelled and (bool(GROUP_PAYLOAD & set(node)) or any(_is_rate(node, key) for key in node))

    def _withheld_group(self, node: Mapping[str, Any]) -> dict[str, Any]:
        out = {key: WITHHELD for key in LABEL_KEYS if key in node}
        out.update({key: node[key] for key in (*COUNT_KEYS, "small") if key in node})
        out["withheld"] = withheld_sentence(self.k)
        return out

    def _calibration(self, node: Mapping[str, Any]) -> dict[str, Any]:
        counts = node["counts"]
        keep = [i for i, c in enumerate(counts) if _is_number(c) and c >= self.k]
        out = dict(node)
        for name in ("counts", "mean_predicted", "fraction_positive", "weighted_counts"):
            if isinstance(node.get(name), list) and len(node[name]) == len(counts):
                out[name] = [node[name][i] for i in keep]
        if len(keep) < len(counts):
            out["bins_withheld"] = len(counts) - len(keep)
        return out

    def _table_row(self, row: Any, columns: list[Any]) -> Any:
        if not isinstance(row, list) or not row:
            return row
        index = _count_column(columns)
        small = (index is not None and _small_cell(row, index, self.k)) or (
            isinstance(row[0], str) and row[0] in self.labels
        )
        if not small:
            return [self.clean(cell) for cell in row]
        kept = (
            {index} | {i for i, c in enumerate(columns) if str(c).startswith("small")} if index is not None else set()
        )
        return [WITHHELD if i == 0 else (cell if i in kept else None) for i, cell in enumerate(row)]

    def _trace(self, trace: Mapping[str, Any]) -> dict[str, Any]:
        """A bar or line trace without the points of withheld categories; a heatmap keeps its cells and
        only its labels are replaced."""
        if trace.get("type") in ("heatmap", "box", "histogram"):
            return dict(trace)
        categories = next(
            (trace[axis] for axis in ("x", "y", "labels") if isinstance(trace.get(axis), list)
             and any(isinstance(v, str) for v in trace[axis])), None,
        )  # fmt: skip
        if categories is None:
            return dict(trace)
        drop = {i for i, v in enumerate(categories) if isinstance(v, str) and (v in self.labels or self._is_bad(v))}
        if not drop:
            return dict(trace)
        return _without_points(trace, drop, len(categories))

    # strings

    def _is_bad(self, text: str) -> bool:
        return text in self.bad or text in self.labels or text.strip() in self.bad

    def text(self, text: str) -> str:
        if text in self.keep or not (self.bad or self.labels):
            return text
        if self._is_bad(text):
            return WITHHELD
        for label in self.labels:  # a small group's label inside a sentence ("Small groups: sex=F, age=1")
            if "=" in label and label in text:
                text = re.sub(rf"(?<![^\s,(;:]){re.escape(label)}(?=$|[\s,.;)])", WITHHELD, text)
        if not self.bad:
            return text
        parts = _COMPONENTS.split(text)
        parts = [p if i % 2 else self._word(p, whole=True) for i, p in enumerate(parts)]
        text = "".join(parts)
        words = _WORDS.split(text)
        return "".join(w if i % 2 else self._word(w, whole=False) for i, w in enumerate(words))

    def _word(self, word: str, *, whole: bool) -> str:
        core = word.strip() if whole else word.strip(_EDGE)
        if not whole and len(core) < MIN_WORD_LENGTH:  # short words ("a", "1") are the sentence's own
            return word
        if core and core not in self.keep and core in self.bad:
            return word.replace(core, WITHHELD)
        return word


def _without_points(trace: Mapping[str, Any], drop: set[int], length: int) -> dict[str, Any]:
    def thin(value: Any) -> Any:
        if isinstance(value, list) and len(value) == length:
            return [v for i, v in enumerate(value) if i not in drop]
        if isinstance(value, Mapping):
            return {k: thin(v) for k, v in value.items()}
        return value

    return {key: thin(value) for key, value in trace.items()}


def _is_column_profile(node: Mapping[str, Any]) -> bool:
    return node.get("kind") in ("numeric", "categorical", "boolean", "datetime") and "missing_share" in node


def _is_calibration(node: Mapping[str, Any]) -> bool:
    return isinstance(node.get("counts"), list) and isinstance(node.get("fraction_positive"), list)


def _is_table(node: Mapping[str, Any]) -> bool:
    return isinstance(node.get("columns"), list) and isinstance(node.get("rows"), list) and "title" in node


def _count_column(columns: Iterable[Any]) -> int | None:
    names = [str(c).lower() for c in columns]
    return next((names.index(c) for c in TABLE_COUNT_COLUMNS if c in names), None)


def _small_cell(row: Any, index: int, k: int) -> bool:
    return isinstance(row, list) and len(row) > index and _is_number(row[index]) and row[index] < k


def _is_rate(node: Mapping[str, Any], key: str) -> bool:
    return key not in (*COUNT_KEYS, *LABEL_KEYS, "small") and _is_number(node.get(key))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}([T ][\d:.]+)?([+-]\d{2}:?\d{2}|Z)?")


def _is_timestamp(value: Any) -> bool:
    return isinstance(value, str) and bool(_TIMESTAMP.fullmatch(value))


def _canonical(key: Mapping[str, Any]) -> str:
    return json.dumps(key, sort_keys=True, default=str)
