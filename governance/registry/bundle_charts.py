"""Static PNG images of stored Plotly figures, drawn offline with matplotlib, for evidence bundles.

The stored Plotly JSON (``{"data": [...], "layout": {...}}``, see ``workers/engines/figures.py``) is the
evidence; these images are a reading of it that needs no browser. The trace types the engines write
are drawn: ``bar`` (vertical, horizontal, grouped, with error bars), ``scatter`` and ``scattergl``
(lines, markers, a colour scale), ``heatmap`` (with the cell texts) and ``box`` from precomputed
quartiles. A figure with any other trace type is not drawn at all (half a chart would mislead): the
caller gets ``Unrenderable`` with the reason, and the bundle's manifest lists it as skipped.
"""

from __future__ import annotations

import io
import math
import re
from typing import Any

RENDERED_TYPES = ("bar", "scatter", "scattergl", "heatmap", "box")
WIDTH_IN, HEIGHT_IN, DPI = 8.0, 4.8, 100
BOX_STATS = ("lowerfence", "q1", "median", "q3", "upperfence")
_RGB = re.compile(r"^rgba?\(\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)\s*(?:,\s*([\d.]+)\s*)?\)$")
_DASHES = {"dash": "--", "dot": ":", "dashdot": "-.", "longdash": "--", "solid": "-"}


class Unrenderable(Exception):
    """A figure this module does not draw; the message says why."""


def render_png(spec: dict[str, Any]) -> bytes:
    """The figure as a PNG, or ``Unrenderable``."""
    traces = spec.get("data")
    layout = spec.get("layout") or {}
    if not isinstance(traces, list) or not isinstance(layout, dict):
        raise Unrenderable("not a Plotly figure (no list of traces)")
    if not traces:
        raise Unrenderable("the figure has no trace")
    kinds = [(t.get("type") or "scatter") if isinstance(t, dict) else None for t in traces]
    unknown = sorted({str(k) for k in kinds if k not in RENDERED_TYPES})
    if unknown:
        raise Unrenderable(f"trace type {', '.join(unknown)} is not drawn offline (drawn: {', '.join(RENDERED_TYPES)})")
    for trace in traces:
        if trace.get("type") == "box" and not all(key in trace for key in BOX_STATS):
            raise Unrenderable("a box trace without precomputed quartiles and fences is not drawn offline")

    from matplotlib.figure import Figure  # the web process pays for matplotlib only when it draws

    height = layout.get("height")
    height_in = max(HEIGHT_IN, min(float(height) / DPI, 30.0)) if _is_number(height) else HEIGHT_IN
    figure = Figure(figsize=(WIDTH_IN, height_in), dpi=DPI, layout="constrained")
    axes = figure.add_subplot()
    try:
        _draw(axes, figure, traces, layout)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", metadata={"Software": None})
    except Exception as exc:  # whatever a stored spec holds, the bundle lists it as skipped, never a 500
        raise Unrenderable(f"its data could not be drawn ({type(exc).__name__}: {exc})") from exc
    return buffer.getvalue()


def _draw(axes, figure, traces: list[dict], layout: dict) -> None:
    bars = [t for t in traces if t.get("type") == "bar"]
    categories = _bar_categories(bars)
    for index, trace in enumerate(traces):
        kind = trace.get("type") or "scatter"
        if kind == "bar":
            _bar(axes, trace, bars.index(trace), len(bars), categories, index)
        elif kind in ("scatter", "scattergl"):
            _scatter(axes, figure, trace, index)
        elif kind == "heatmap":
            _heatmap(axes, figure, trace)
        elif kind == "box":
            _box(axes, trace)
    _decorate(axes, layout)
    if any(t.get("name") and t.get("showlegend", True) is not False for t in traces) and len(traces) > 1:
        axes.legend(fontsize=8)


def _title(node: Any) -> str:
    if isinstance(node, dict):
        node = node.get("text")
    return node if isinstance(node, str) else ""


def _decorate(axes, layout: dict) -> None:
    axes.set_title(_title(layout.get("title")), fontsize=11)
    for name, axis in (("x", axes.xaxis), ("y", axes.yaxis)):
        spec = layout.get(f"{name}axis") or {}
        if not isinstance(spec, dict):
            continue
        axis.set_label_text(_title(spec.get("title")))
        rng = spec.get("range")
        if isinstance(rng, list) and len(rng) == 2 and all(_is_number(v) for v in rng):
            (axes.set_xlim if name == "x" else axes.set_ylim)(*rng)
        ticks, labels = spec.get("tickvals"), spec.get("ticktext")
        if isinstance(ticks, list) and isinstance(labels, list) and len(ticks) == len(labels):
            (axes.set_xticks if name == "x" else axes.set_yticks)(ticks, [str(t) for t in labels])
        if spec.get("autorange") == "reversed" and not getattr(axes, "_charter_reversed_" + name, False):
            (axes.invert_xaxis if name == "x" else axes.invert_yaxis)()
    for shape in layout.get("shapes") or []:
        if not isinstance(shape, dict) or shape.get("type") != "line":
            continue
        style = _line_style(shape.get("line") or {})
        if shape.get("yref") == "paper" and _is_number(shape.get("x0")) and shape.get("x0") == shape.get("x1"):
            axes.axvline(shape["x0"], **style)
        elif shape.get("xref") == "paper" and _is_number(shape.get("y0")) and shape.get("y0") == shape.get("y1"):
            axes.axhline(shape["y0"], **style)
    for note in layout.get("annotations") or []:
        _annotate(axes, note)
    axes.tick_params(labelsize=8)
    if not axes.images:  # grid lines over a heatmap's cells only hide them
        axes.grid(True, alpha=0.25)


def _annotate(axes, note: Any) -> None:
    """A text annotation (a reference line's label), placed as Plotly places it: each coordinate in
    data units or, with ``xref``/``yref`` ``paper``, as a fraction of the plot."""
    if not isinstance(note, dict) or not isinstance(note.get("text"), str):
        return
    x, y = note.get("x"), note.get("y")
    if not (_is_number(x) and _is_number(y)):
        return
    from matplotlib.transforms import blended_transform_factory

    transform = blended_transform_factory(
        axes.transAxes if note.get("xref") == "paper" else axes.transData,
        axes.transAxes if note.get("yref") == "paper" else axes.transData,
    )
    axes.text(x, y, note["text"], transform=transform, fontsize=8, ha=note.get("xanchor", "center")
              if note.get("xanchor") in ("left", "right", "center") else "center",
              va={"bottom": "bottom", "top": "top"}.get(note.get("yanchor"), "center"))  # fmt: skip


def _line_style(line: dict) -> dict[str, Any]:
    style: dict[str, Any] = {"linewidth": 1}
    colour = _colour(line.get("color"))
    if colour is not None:
        style["color"] = colour
    style["linestyle"] = _DASHES.get(line.get("dash") or "solid", "-")
    return style


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _numbers(values: Any) -> list[float]:
    return [float(v) if _is_number(v) else math.nan for v in (values or [])]


def _colour(value: Any):
    """A matplotlib colour from a Plotly one (hex, a name, ``rgb()`` or ``rgba()``), else ``None``."""
    if not isinstance(value, str):
        return None
    match = _RGB.match(value.strip())
    if match:
        r, g, b, a = match.groups()
        return (float(r) / 255, float(g) / 255, float(b) / 255, float(a) if a is not None else 1.0)
    from matplotlib.colors import is_color_like

    return value if is_color_like(value) else None


def _colourmap(scale: Any):
    from matplotlib.colors import LinearSegmentedColormap

    if isinstance(scale, str):
        return {"Blues": "Blues", "Reds": "Reds", "Greens": "Greens", "Viridis": "viridis"}.get(scale, "viridis")
    if isinstance(scale, list) and scale and all(isinstance(s, list) and len(s) == 2 for s in scale):
        stops = [(float(at), _colour(colour) or "#888888") for at, colour in scale]
        return LinearSegmentedColormap.from_list("plotly", stops)
    return "viridis"


# --- bars


def _bar_categories(bars: list[dict]) -> list[str]:
    """Every category of the bar traces, in order of first appearance: grouped bars share one axis."""
    seen: dict[str, None] = {}
    for trace in bars:
        axis = "y" if trace.get("orientation") == "h" else "x"
        for value in trace.get(axis) or []:
            seen.setdefault(str(value), None)
    return list(seen)


def _bar(axes, trace: dict, position: int, count: int, categories: list[str], index: int) -> None:
    horizontal = trace.get("orientation") == "h"
    names = [str(v) for v in (trace.get("y" if horizontal else "x") or [])]
    values = _numbers(trace.get("x" if horizontal else "y"))
    if len(names) != len(values):
        raise ValueError("a bar trace's categories and values differ in length")
    width = 0.8 / max(count, 1)
    offset = (position - (count - 1) / 2) * width
    places = [categories.index(n) + offset for n in names]
    colour = _colour((trace.get("marker") or {}).get("color")) or f"C{index % 10}"
    error = trace.get("error_x" if horizontal else "error_y")
    spread = None
    if isinstance(error, dict) and isinstance(error.get("array"), list):
        plus = [0.0 if math.isnan(v) else v for v in _numbers(error.get("array"))]
        minus = [0.0 if math.isnan(v) else v for v in _numbers(error.get("arrayminus") or error.get("array"))]
        if len(plus) == len(values) == len(minus):
            spread = [minus, plus]
    label = trace.get("name") or None
    if horizontal:
        axes.barh(places, values, height=width, color=colour, xerr=spread, label=label, capsize=2)
        axes.set_yticks(range(len(categories)), categories)
        axes.set_ylim(-0.5, len(categories) - 0.5)  # a category without a value keeps its place
    else:
        axes.bar(places, values, width=width, color=colour, yerr=spread, label=label, capsize=2)
        axes.set_xticks(range(len(categories)), categories, rotation=30 if len(categories) > 6 else 0, ha="right"
                        if len(categories) > 6 else "center")  # fmt: skip
        axes.set_xlim(-0.5, len(categories) - 0.5)


# --- scatter and lines


def _axis_values(values: Any) -> list:
    """Numbers as floats (gaps as NaN); text as it is (matplotlib draws it as categories)."""
    values = list(values or [])
    if any(isinstance(v, str) for v in values):
        return [str(v) for v in values]
    return _numbers(values)


def _scatter(axes, figure, trace: dict, index: int) -> None:
    xs, ys = _axis_values(trace.get("x")), _axis_values(trace.get("y"))
    if not xs and ys:
        xs = list(range(len(ys)))
    if len(xs) != len(ys):
        raise ValueError("a scatter trace's x and y differ in length")
    mode = trace.get("mode") or ("lines+markers" if len(xs) < 20 else "lines")
    line = trace.get("line") or {}
    marker = trace.get("marker") or {}
    label = trace.get("name") or None
    colour = _colour(line.get("color")) or _colour(marker.get("color")) or f"C{index % 10}"
    if "lines" in mode:
        style = _line_style(line)
        style.setdefault("color", colour)
        axes.plot(xs, ys, marker="o" if "markers" in mode else None, markersize=3, label=label, **style)
        return
    size = marker.get("size")
    area = float(size) ** 2 / 2 if _is_number(size) else 12.0
    alpha = marker.get("opacity") if _is_number(marker.get("opacity")) else 0.8
    shades = marker.get("color")
    if isinstance(shades, list) and len(shades) == len(xs):
        cmin, cmax = marker.get("cmin"), marker.get("cmax")
        drawn = axes.scatter(
            xs, ys, c=_numbers(shades), cmap=_colourmap(marker.get("colorscale")), s=area, alpha=alpha, label=label,
            vmin=cmin if _is_number(cmin) else None, vmax=cmax if _is_number(cmax) else None, linewidths=0,
        )  # fmt: skip
        bar = marker.get("colorbar")
        if isinstance(bar, dict):
            legend = figure.colorbar(drawn, ax=axes)
            legend.set_label(_title(bar.get("title")), fontsize=8)
            ticks, labels = bar.get("tickvals"), bar.get("ticktext")
            if isinstance(ticks, list) and isinstance(labels, list) and len(ticks) == len(labels):
                legend.set_ticks(ticks, labels=[str(t) for t in labels])
    else:
        axes.scatter(xs, ys, color=colour, s=area, alpha=alpha, label=label, linewidths=0)


# --- heatmaps and boxes


def _heatmap(axes, figure, trace: dict) -> None:
    rows = trace.get("z") or []
    if not rows or not all(isinstance(r, list) for r in rows):
        raise ValueError("a heatmap without a table of values")
    z = [_numbers(r) for r in rows]
    width = max(len(r) for r in z)
    z = [r + [math.nan] * (width - len(r)) for r in z]
    xs = [str(v) for v in (trace.get("x") or range(width))]
    ys = [str(v) for v in (trace.get("y") or range(len(z)))]
    image = axes.imshow(z, cmap=_colourmap(trace.get("colorscale") or "Blues"), aspect="auto")
    axes.set_xticks(range(len(xs)), xs)
    axes.set_yticks(range(len(ys)), ys)
    axes._charter_reversed_y = True  # imshow already draws the first row on top, as Plotly's reversed axis does
    text = trace.get("text")
    finite = [v for r in z for v in r if not math.isnan(v)]
    middle = (min(finite) + max(finite)) / 2 if finite else 0
    for i, row in enumerate(z):
        for j, value in enumerate(row):
            label = text[i][j] if isinstance(text, list) and i < len(text) and j < len(text[i]) else None
            if label is None and not math.isnan(value):
                label = f"{value:g}"
            if label is not None:
                axes.text(j, i, str(label), ha="center", va="center", fontsize=9,
                          color="white" if not math.isnan(value) and value > middle else "black")  # fmt: skip
    figure.colorbar(image, ax=axes)


def _box(axes, trace: dict) -> None:
    horizontal = trace.get("orientation") == "h"
    names = [str(v) for v in (trace.get("y" if horizontal else "x") or [])]
    columns = {key: _numbers(trace.get(key)) for key in BOX_STATS}
    if not names or any(len(values) != len(names) for values in columns.values()):
        raise ValueError("a box trace's categories and statistics differ in length")
    stats = [
        {"label": name, "whislo": columns["lowerfence"][i], "q1": columns["q1"][i], "med": columns["median"][i],
         "q3": columns["q3"][i], "whishi": columns["upperfence"][i], "fliers": []}
        for i, name in enumerate(names)
    ]  # fmt: skip
    axes.bxp(stats, orientation="horizontal" if horizontal else "vertical", showfliers=False)
