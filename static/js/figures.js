// Draws every stored Plotly figure on the page: <div data-figure="ID"> + a json_script with that ID.
(function () {
  if (!window.Plotly) return;
  var base = {
    margin: { t: 36, r: 12, b: 48, l: 56 },
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)",
    font: { family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 12, color: "#334155" }
  };
  document.querySelectorAll("[data-figure]").forEach(function (el) {
    var source = document.getElementById(el.getAttribute("data-figure"));
    if (!source) return;
    var spec = JSON.parse(source.textContent);
    var layout = Object.assign({}, base, spec.layout || {});
    window.Plotly.newPlot(el, spec.data || [], layout, { displayModeBar: false, responsive: true });
  });
})();
