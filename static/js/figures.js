// Draws every stored Plotly figure on the page: <div data-figure="ID"> + a json_script with that ID.
// The server sends one spec per chart, {data: [traces], layout: {}} (governance/evaluations/presenters.py
// flattens the engines' nesting); a nested shape that slips through still draws its first spec.
// Until a chart draws, its container shows a sentence saying where its numbers are (.figure-fallback).
(function () {
  if (!window.Plotly) return;
  var base = {
    margin: { t: 36, r: 12, b: 48, l: 56 },
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)",
    font: { family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 12, color: "#334155" }
  };

  function isSpec(node) {
    return node && typeof node === "object" && Array.isArray(node.data);
  }

  function firstSpec(node) {
    if (isSpec(node)) return node;
    if (!node || typeof node !== "object") return null;
    var children = Array.isArray(node) ? node : Object.keys(node).map(function (k) { return node[k]; });
    for (var i = 0; i < children.length; i++) {
      var found = firstSpec(children[i]);
      if (found) return found;
    }
    return null;
  }

  function filled(v) {
    return Array.isArray(v) && v.some(function (x) { return Array.isArray(x) ? filled(x) : x !== null && x !== undefined; });
  }

  // Group names such as "0" and "1" are categories: Plotly would read them as numbers and draw
  // them at 0 and 1 on a linear axis (-0.5 to 1.5). Axes whose values are all strings are categories.
  function categoryAxes(traces, layout) {
    ["x", "y"].forEach(function (letter) {
      var axis = letter + "axis";
      if (layout[axis] && layout[axis].type) return;
      var seen = false;
      var allText = traces.every(function (t) {
        var values = t[letter];
        if (!Array.isArray(values) || !values.length) return true;
        seen = true;
        return values.every(function (v) { return typeof v === "string"; });
      });
      if (seen && allText) layout[axis] = Object.assign({}, layout[axis] || {}, { type: "category" });
    });
  }

  // Plotly does not wrap titles: one longer than the chart is clipped at both ends. Break it at
  // the spaces into lines that fit (about 7 px a character at 14 px), and make room above the plot.
  function wrapTitle(layout, width) {
    var title = layout.title && (typeof layout.title === "string" ? { text: layout.title } : layout.title);
    if (!title || !title.text || title.text.indexOf("<br>") >= 0) return;
    var perLine = Math.max(16, Math.floor((width - 24) / 7.5));
    if (title.text.length <= perLine) return;
    var lines = [], line = "";
    title.text.split(" ").forEach(function (word) {
      if (line && (line + " " + word).length > perLine) { lines.push(line); line = word; } else { line = line ? line + " " + word : word; }
    });
    lines.push(line);
    layout.title = Object.assign({}, title, { text: lines.join("<br>") });
    var margin = Object.assign({}, layout.margin || {});
    margin.t = Math.max(margin.t || 0, 30 + 18 * lines.length);
    layout.margin = margin;
  }

  document.querySelectorAll("[data-figure]").forEach(function (el) {
    var source = document.getElementById(el.getAttribute("data-figure"));
    var fallback = el.querySelector(".figure-fallback");
    if (!source) return;
    var spec;
    try { spec = firstSpec(JSON.parse(source.textContent)); } catch (e) { spec = null; }
    var traces = spec ? spec.data : [];
    if (!traces.some(function (t) { return ["x", "y", "z", "values"].some(function (k) { return filled(t[k]); }); })) {
      if (fallback) fallback.textContent = "Nothing to draw for this run; the tables and the downloadable JSON hold its numbers.";
      return;
    }
    var layout = Object.assign({}, base, spec.layout || {});
    categoryAxes(traces, layout);
    wrapTitle(layout, el.clientWidth || 600);
    if (fallback) fallback.remove();
    window.Plotly.newPlot(el, traces, layout, { displayModeBar: false, responsive: true });
  });
})();
