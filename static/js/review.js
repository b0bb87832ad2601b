// The review page: keyboard shortcuts for the decision form and the chart of the registered metrics.
(function () {
  var form = document.getElementById("decision-form");
  if (form) {
    var keys = { a: "approve", c: "request_changes", r: "reject" };
    var comment = form.querySelector("textarea[name=comment]");
    document.addEventListener("keydown", function (e) {
      var t = e.target;
      var inForm = form.contains(t) || t === document.body || t === document.documentElement;
      if ((e.ctrlKey || e.metaKey) && e.key === "Enter" && inForm) {
        e.preventDefault();
        if (form.requestSubmit) form.requestSubmit(); else form.submit();
        return;
      }
      var typing = t && (t.isContentEditable || t.tagName === "TEXTAREA" || t.tagName === "SELECT" ||
        (t.tagName === "INPUT" && t.type !== "radio" && t.type !== "checkbox"));
      if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
      var value = keys[(e.key || "").toLowerCase()];
      if (!value) return;
      var radio = form.querySelector('input[name=decision][value="' + value + '"]');
      if (!radio) return;
      e.preventDefault();
      radio.checked = true;
      // the last two need a reason: go straight to the comment
      if (value !== "approve" && comment) comment.focus(); else radio.focus();
    });
  }

  var el = document.getElementById("metrics-chart");
  var data = document.getElementById("metrics-chart-data");
  if (!el || !data || !window.Plotly) return;
  var chart = JSON.parse(data.textContent);
  window.Plotly.newPlot(el, [{
    type: "bar",
    x: chart.labels,
    y: chart.values,
    marker: { color: "#4f46e5" },
    text: chart.values.map(function (v) { return Number(v).toPrecision(4).replace(/\.?0+$/, ""); }),
    textposition: "outside",
    cliponaxis: false,
    hovertemplate: "%{x}: %{y}<extra></extra>"
  }], {
    margin: { t: 20, r: 8, b: 36, l: 44 },
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)",
    font: { family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 12, color: "#334155" },
    yaxis: { gridcolor: "#eef2f6", zeroline: false, rangemode: "tozero" },
    bargap: 0.45
  }, { displayModeBar: false, responsive: true });
})();
