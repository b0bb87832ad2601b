"""Plotly figure specs as plain dicts: ``{"data": [...], "layout": {...}}``, no plotly import.

The browser renders them with the vendored plotly.js (``Plotly.newPlot(el, fig.data, fig.layout)``);
the stored JSON is the evidence. Every builder returns JSON-safe data (numpy converted, NaN as
``None``, which Plotly draws as a gap).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from workers.engines.serialize import jsonable

Figure = dict[str, Any]

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
# Categories are drawn as given, in order: labels such as "0" and "1" are names, not numbers (Plotly
# would otherwise read them as numbers and draw a linear axis from -0.5 to 1.5).
CATEGORY_AXIS = {"type": "category"}
# Low to high feature value, as SHAP's own beeswarm colours them.
VALUE_COLOURSCALE = [[0.0, "#008bfb"], [1.0, "#ff0051"]]


def figure(data: Sequence[Mapping[str, Any]], layout: Mapping[str, Any]) -> Figure:
    return jsonable({"data": list(data), "layout": dict(layout)})


def rounded(values: Any, digits: int = 5) -> np.ndarray:
    """``values`` to ``digits`` significant digits: point clouds need no more, and the JSON shrinks."""
    a = np.asarray(values, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        magnitude = np.floor(np.log10(np.abs(a)))
        scale = np.where(np.isfinite(magnitude), 10.0 ** (digits - 1 - magnitude), 1.0)
        return np.where(np.isfinite(a) & (a != 0), np.round(a * scale) / scale, a)


def _layout(title: str, x_title: str = "", y_title: str = "", **extra: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "title": {"text": title},
        "xaxis": {"title": {"text": x_title}, "automargin": True},
        "yaxis": {"title": {"text": y_title}, "automargin": True},
        "margin": {"t": 50},
    }
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(layout.get(key), dict):
            layout[key] = {**layout[key], **value}
        else:
            layout[key] = value
    return layout


def _error(values: Sequence[float], ci: Sequence[Sequence[float | None]] | None) -> dict[str, Any] | None:
    """Plotly's asymmetric error bars from (low, high) intervals around ``values``."""
    if ci is None:
        return None
    plus, minus = [], []
    for value, (low, high) in zip(values, ci, strict=True):
        plus.append(None if high is None or value is None else max(high - value, 0.0))
        minus.append(None if low is None or value is None else max(value - low, 0.0))
    return {"type": "data", "symmetric": False, "array": plus, "arrayminus": minus, "visible": True}


def bar(
    categories: Sequence[Any],
    values: Sequence[float],
    *,
    title: str,
    value_title: str = "",
    category_title: str = "",
    horizontal: bool = False,
    ci: Sequence[Sequence[float | None]] | None = None,
    reference: tuple[float, str] | None = None,
) -> Figure:
    """One bar per category; optional confidence intervals and a dashed reference line."""
    cats = [str(c) for c in categories]
    trace: dict[str, Any] = {"type": "bar", "marker": {"color": COLOURS[0]}}
    if horizontal:
        # Plotly draws the first category at the bottom: reverse so the largest sits on top.
        trace.update(x=list(values)[::-1], y=cats[::-1], orientation="h")
        error = _error(list(values)[::-1], list(ci)[::-1] if ci is not None else None)
        if error:
            trace["error_x"] = error
        layout = _layout(title, value_title, category_title, yaxis=CATEGORY_AXIS)
    else:
        trace.update(x=cats, y=list(values))
        error = _error(list(values), ci)
        if error:
            trace["error_y"] = error
        layout = _layout(title, category_title, value_title, xaxis=CATEGORY_AXIS)
    if reference is not None:
        level, label = reference
        axis = "x" if horizontal else "y"
        line = {"type": "line", "line": {"dash": "dash", "color": "#555"}, "xref": "paper" if not horizontal else "x"}
        if horizontal:
            line.update(x0=level, x1=level, y0=0, y1=1, yref="paper")
        else:
            line.update(x0=0, x1=1, y0=level, y1=level, yref="y")
        layout["shapes"] = [line]
        layout["annotations"] = [
            {"text": label, "showarrow": False, "xref": "paper" if axis == "y" else "x", "yref": "y" if axis == "y" else "paper",
             "x": 1 if axis == "y" else level, "y": level if axis == "y" else 1, "xanchor": "right", "yanchor": "bottom",
             "bgcolor": "rgba(255,255,255,0.85)", "font": {"size": 11}}
        ]  # fmt: skip
    return figure([trace], layout)


def grouped_bars(
    categories: Sequence[Any],
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    value_title: str = "",
    category_title: str = "",
    ci: Mapping[str, Sequence[Sequence[float | None]]] | None = None,
) -> Figure:
    """Several bars per category (one trace per series), with optional intervals per series."""
    cats = [str(c) for c in categories]
    traces = []
    for i, (name, values) in enumerate(series.items()):
        trace: dict[str, Any] = {
            "type": "bar",
            "name": name,
            "x": cats,
            "y": list(values),
            "marker": {"color": COLOURS[i % len(COLOURS)]},
        }
        error = _error(list(values), ci.get(name) if ci else None)
        if error:
            trace["error_y"] = error
        traces.append(trace)
    return figure(traces, _layout(title, category_title, value_title, barmode="group", xaxis=CATEGORY_AXIS))


def heatmap(
    z: Sequence[Sequence[float]],
    *,
    x: Sequence[Any],
    y: Sequence[Any],
    title: str,
    x_title: str = "",
    y_title: str = "",
    text: Sequence[Sequence[str]] | None = None,
) -> Figure:
    """A heatmap with the cell values written in the cells (confusion matrices)."""
    trace: dict[str, Any] = {
        "type": "heatmap",
        "z": [list(row) for row in z],
        "x": [str(v) for v in x],
        "y": [str(v) for v in y],
        "colorscale": "Blues",
        "reversescale": True,  # Plotly's Blues runs dark to light: the largest counts dark
        "hoverongaps": False,
    }
    if text is not None:
        trace.update(text=[list(row) for row in text], texttemplate="%{text}")
    layout = _layout(title, x_title, y_title, xaxis=CATEGORY_AXIS, yaxis={**CATEGORY_AXIS, "autorange": "reversed"})
    return figure([trace], layout)


def lines(
    series: Sequence[Mapping[str, Any]],
    *,
    title: str,
    x_title: str = "",
    y_title: str = "",
    diagonal: bool = False,
    square: bool = False,
) -> Figure:
    """Line traces from ``{"name", "x", "y", optional "text"}`` dicts; optional y = x reference."""
    traces: list[dict[str, Any]] = []
    for i, s in enumerate(series):
        trace = {
            "type": "scatter",
            "mode": s.get("mode", "lines+markers"),
            "name": s.get("name", ""),
            "x": list(s["x"]),
            "y": list(s["y"]),
            "line": {"color": COLOURS[i % len(COLOURS)]},
        }
        if "text" in s:
            trace["text"] = list(s["text"])
        traces.append(trace)
    if diagonal:
        traces.append(
            {"type": "scatter", "mode": "lines", "name": "reference (y = x)", "x": [0, 1], "y": [0, 1],
             "line": {"dash": "dash", "color": "#999"}, "hoverinfo": "skip"}
        )  # fmt: skip
    layout = _layout(title, x_title, y_title)
    if square:
        layout["xaxis"]["range"] = [0, 1]
        layout["yaxis"].update(range=[0, 1], scaleanchor="x", scaleratio=1)
    return figure(traces, layout)


def beeswarm(
    feature_names: Sequence[str],
    shap_values: np.ndarray,
    colour: np.ndarray,
    *,
    title: str,
    value_title: str,
    seed: int = 0,
) -> Figure:
    """SHAP's summary plot: one row per feature (the first on top), a point per sampled row at its
    SHAP value, coloured by the feature's value (0 = lowest, 1 = highest rank within the sample).

    ``shap_values`` and ``colour`` have shape (n_rows, n_features) in ``feature_names`` order.
    Points are jittered vertically in proportion to the local density, as in a beeswarm.
    """
    rng = np.random.default_rng(seed)
    n_features = len(feature_names)
    xs, ys, cs = [], [], []
    for j in range(n_features):
        values = np.asarray(shap_values[:, j], dtype=np.float64)
        row = n_features - 1 - j
        jitter = _density_jitter(values, rng)
        xs.append(values)
        ys.append(row + jitter)
        cs.append(np.asarray(colour[:, j], dtype=np.float64))
    trace = {
        "type": "scattergl",
        "mode": "markers",
        "x": rounded(np.concatenate(xs)) if xs else [],
        "y": np.round(np.concatenate(ys), 3) if ys else [],
        "marker": {
            "color": np.round(np.concatenate(cs), 3) if cs else [],
            "colorscale": VALUE_COLOURSCALE,
            "cmin": 0,
            "cmax": 1,
            "size": 4,
            "opacity": 0.7,
            "colorbar": {"title": {"text": "feature value"}, "tickvals": [0, 1], "ticktext": ["low", "high"]},
        },
        "hoverinfo": "x",
        "showlegend": False,
    }
    layout = _layout(title, value_title, "")
    layout["yaxis"].update(
        tickvals=list(range(n_features)), ticktext=list(feature_names)[::-1], range=[-0.7, n_features - 0.3]
    )
    layout["shapes"] = [
        {"type": "line", "x0": 0, "x1": 0, "y0": 0, "y1": 1, "yref": "paper", "line": {"color": "#999", "width": 1}}
    ]
    layout["height"] = max(300, 28 * n_features + 120)
    return figure([trace], layout)


def _density_jitter(values: np.ndarray, rng: np.random.Generator, width: float = 0.4) -> np.ndarray:
    if values.size == 0:
        return values
    finite = np.where(np.isfinite(values), values, 0.0)
    counts, edges = np.histogram(finite, bins=min(50, max(1, values.size // 5)))
    density = counts / max(counts.max(), 1)
    bin_of = np.clip(np.searchsorted(edges, finite, side="right") - 1, 0, len(counts) - 1)
    return rng.uniform(-1.0, 1.0, size=values.size) * width * density[bin_of]


def dependence(
    x: np.ndarray,
    shap_values: np.ndarray,
    *,
    feature: str,
    value_title: str,
    colour: np.ndarray | None = None,
    colour_feature: str | None = None,
) -> Figure:
    """SHAP dependence plot: the feature's value against its SHAP value, coloured by another feature."""
    marker: dict[str, Any] = {"size": 5, "opacity": 0.7, "color": COLOURS[0]}
    if colour is not None:
        marker.update(
            color=np.round(np.asarray(colour, dtype=np.float64), 3),
            colorscale=VALUE_COLOURSCALE,
            cmin=0,
            cmax=1,
            colorbar={"title": {"text": colour_feature or ""}, "tickvals": [0, 1], "ticktext": ["low", "high"]},
        )
    trace = {
        "type": "scattergl",
        "mode": "markers",
        "x": rounded(x),
        "y": rounded(shap_values),
        "marker": marker,
        "showlegend": False,
    }
    return figure([trace], _layout(f"Dependence on {feature}", feature, value_title))
