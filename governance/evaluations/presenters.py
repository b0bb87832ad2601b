"""Shape a stored result for the page: the same generic layout for every kind of evaluation.

A result document (written by ``workers/engines/runner.py``) has ``summary`` (flat numbers that
make sense to compare across versions), ``tables`` (title, columns, rows of aggregates),
``notes`` (sentences) and kind-specific keys the gates read. ``figures`` holds Plotly specs
(``{"data": [...], "layout": {...}}``) by name, possibly nested: fairness keeps them per sensitive
feature (``{feature: {name: spec}}``) and LIME a list of one spec per explained row. Pages draw
exactly one spec per chart, so :func:`flat_figures` flattens any nesting into named figures.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.utils.text import slugify

from governance.evaluations import measures
from governance.evaluations.models import EvaluationRun

# What each figure an engine stores is called on the page (the key is its last name in the nesting),
# in the order the page shows them: stored JSON (PostgreSQL jsonb) keeps no key order.
FIGURE_TITLES = {
    "importance": "Importance (mean |SHAP|)",
    "beeswarm": "SHAP values per row",
    "attribution_spread": "Spread of SHAP attributions",
    "dependence_": "Dependence on …",  # dependence_<feature>
    "lime_importance": "LIME importance (mean |weight|)",
    "lime_rows": "LIME explanation",
    "selection_rate": "Selection rate",
    "error_rates": "Error rates (TPR and FPR)",
    "confusion_matrix": "Confusion matrix",
    "roc": "ROC curve",
    "calibration": "Calibration",
    "predicted_vs_actual": "Predicted against actual",
    "slices": "By slice",
    "noise": "Under feature noise",
    "missing_values": "With missing values",
    "psi": "Population stability index",
    "missing": "Missing values (training and evaluation)",
}


def is_figure(node: Any) -> bool:
    """A Plotly spec: a ``data`` list of traces (and a ``layout`` object, when there is one)."""
    return isinstance(node, dict) and isinstance(node.get("data"), list) and isinstance(node.get("layout", {}), dict)


def _walk(node: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], dict]]:
    if is_figure(node):
        yield path, node
    elif isinstance(node, dict):
        for key, child in node.items():
            yield from _walk(child, (*path, str(key)))
    elif isinstance(node, list | tuple):
        for i, child in enumerate(node):
            yield from _walk(child, (*path, i))


def _names(path: tuple[str | int, ...]) -> tuple[str, ...]:
    """The names in a figure's path: the figure's own last, what it qualifies (a feature) before it."""
    return tuple(p for p in path if isinstance(p, str))


def _figure_rank(name: str) -> int:
    order = list(FIGURE_TITLES)
    if name.startswith("dependence_"):
        name = "dependence_"
    return order.index(name) if name in order else len(order)


def _figure_title(name: str) -> str:
    if name in FIGURE_TITLES and name != "dependence_":
        return FIGURE_TITLES[name]
    if name.startswith("dependence_"):
        return f"Dependence on {name.removeprefix('dependence_')}"
    text = name.replace("_", " ")
    return text[:1].upper() + text[1:]


def _title(path: tuple[str | int, ...], spec: dict) -> str:
    """The figure's name, then what it qualifies: "Selection rate · sex" for ``{"sex": {"selection_rate":
    ...}}``. An item of a list is named by its own chart title ("LIME explanation of row 12") or its place."""
    names = _names(path)
    title = _figure_title(names[-1]) if names else "Figure"
    if any(isinstance(p, int) for p in path):
        own = (spec.get("layout") or {}).get("title") or {}
        own = own.get("text") if isinstance(own, dict) else own
        index = next(p for p in reversed(path) if isinstance(p, int))
        title = own if isinstance(own, str) and own else f"{title} {index + 1}"
    return " · ".join([title, *names[:-1]])


def flatten_figures(figures: Any) -> list[dict[str, Any]]:
    """Every Plotly spec in ``figures`` (any nesting of dicts and lists), in order, as
    ``{"key": "sex/selection_rate", "name": "Selection rate · sex", "spec": {...}}``. The key is the
    spec's path in the nesting: the same figure of two runs has the same key."""
    found = list(_walk(figures or {}, ()))
    # grouped by what they qualify (a sensitive feature), in their order; within a group, in page order
    groups = list(dict.fromkeys(_names(path)[:-1] for path, _ in found))

    def order(item: tuple[int, tuple[tuple[str | int, ...], dict]]) -> tuple[int, int, int]:
        i, (path, _) = item
        names = _names(path)
        return groups.index(names[:-1]), _figure_rank(names[-1] if names else ""), i

    return [
        {"key": "/".join(str(p) for p in path) or "figure", "name": _title(path, spec), "spec": spec}
        for _, (path, spec) in sorted(enumerate(found), key=order)
    ]


def flat_figures(run: EvaluationRun) -> list[dict[str, Any]]:
    """The run's figures, one per chart, each with a page-unique ``id`` (for ``data-figure`` and
    its ``json_script``) beside ``key``, ``name`` and ``spec``."""
    return [
        {**figure, "id": f"figure-{run.pk}-{i}-{slugify(figure['key'].replace('/', '-'))}"}
        for i, figure in enumerate(flatten_figures(run.figures))
    ]


def summary_rows(result: dict[str, Any] | None) -> list[tuple[str, Any]]:
    summary = (result or {}).get("summary") or {}
    return [(measures.label(k), summary[k]) for k in measures.ordered(summary)]


def present(run: EvaluationRun) -> dict[str, Any]:
    result = run.result or {}
    return {"summary": summary_rows(result), "tables": result.get("tables") or [], "notes": result.get("notes") or [],
            "figures": flat_figures(run)}  # fmt: skip


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def compare(a: EvaluationRun, b: EvaluationRun) -> dict[str, Any]:
    """The summaries side by side (each change marked better or worse where the measure has a better
    way) and the figures paired by their flattened key."""
    left, right = (a.result or {}).get("summary") or {}, (b.result or {}).get("summary") or {}
    rows = []
    for key in measures.ordered({**left, **right}):
        x, y = left.get(key), right.get(key)
        delta = y - x if _number(x) and _number(y) else None
        rows.append({"key": key, "label": measures.label(key), "a": x, "b": y, "delta": delta,
                     "change": measures.change(key, delta), "direction": measures.direction(key)})  # fmt: skip
    by_key_a = {f["key"]: f for f in flatten_figures(a.figures)}
    by_key_b = {f["key"]: f for f in flatten_figures(b.figures)}
    figures = []
    for i, key in enumerate(dict.fromkeys([*by_key_a, *by_key_b])):
        fa, fb = by_key_a.get(key), by_key_b.get(key)
        slug = slugify(key.replace("/", "-"))
        figures.append({
            "key": key, "name": (fb or fa)["name"],
            "a": {"id": f"cmp-a-{i}-{slug}", "name": (fa or fb)["name"], "spec": fa["spec"] if fa else None},
            "b": {"id": f"cmp-b-{i}-{slug}", "name": (fb or fa)["name"], "spec": fb["spec"] if fb else None},
        })  # fmt: skip
    return {"rows": rows, "figures": figures, "same_kind": a.kind == b.kind}
