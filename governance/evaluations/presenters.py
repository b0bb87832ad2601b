"""Shape a stored result for the page: the same generic layout for every kind of evaluation.

A result document (written by ``workers/engines/runner.py``) has ``summary`` (flat numbers that
make sense to compare across versions), ``tables`` (title, columns, rows of aggregates),
``notes`` (sentences) and kind-specific keys the gates read; figures are Plotly specs by name.
"""

from __future__ import annotations

from typing import Any

from governance.evaluations.models import EvaluationRun


def _label(key: str) -> str:
    return key.replace("_", " ").capitalize()


def present(run: EvaluationRun) -> dict[str, Any]:
    result = run.result or {}
    summary = [(_label(k), v) for k, v in (result.get("summary") or {}).items()]
    figures = [
        {"id": f"figure-{run.pk}-{i}", "name": _label(name), "spec": spec}
        for i, (name, spec) in enumerate((run.figures or {}).items())
    ]
    return {"summary": summary, "tables": result.get("tables") or [], "notes": result.get("notes") or [],
            "figures": figures}  # fmt: skip


def compare(a: EvaluationRun, b: EvaluationRun) -> dict[str, Any]:
    left, right = (a.result or {}).get("summary") or {}, (b.result or {}).get("summary") or {}
    rows = []
    for key in list(dict.fromkeys([*left, *right])):
        x, y = left.get(key), right.get(key)
        delta = y - x if isinstance(x, int | float) and isinstance(y, int | float) else None
        rows.append({"label": _label(key), "a": x, "b": y, "delta": delta})
    names = list(dict.fromkeys([*(a.figures or {}), *(b.figures or {})]))
    figures = [
        {"name": _label(name),
         "a": {"id": f"cmp-a-{i}", "spec": (a.figures or {}).get(name)},
         "b": {"id": f"cmp-b-{i}", "spec": (b.figures or {}).get(name)}}
        for i, name in enumerate(names)
    ]  # fmt: skip
    return {"rows": rows, "figures": figures, "same_kind": a.kind == b.kind}
