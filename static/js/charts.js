// Draws the home page's stage chart from the JSON the server put in the page.
(function () {
  var el = document.getElementById("stage-chart");
  var data = document.getElementById("stage-chart-data");
  if (!el || !data || !window.Plotly) return;
  var chart = JSON.parse(data.textContent);
  var most = Math.max.apply(null, chart.values.concat([1]));
  window.Plotly.newPlot(el, [{
    type: "bar",
    x: chart.labels,
    y: chart.values,
    marker: { color: chart.colors },
    text: chart.values.map(String),
    textposition: "outside",
    cliponaxis: false,
    hovertemplate: "%{x}: %{y} version(s)<extra></extra>"
  }], {
    margin: { t: 24, r: 8, b: 48, l: 44 },
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)",
    font: { family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 12, color: "#334155" },
    yaxis: { gridcolor: "#eef2f6", zeroline: false, rangemode: "tozero", tickformat: ",d", dtick: most <= 8 ? 1 : null },
    xaxis: { tickangle: 0 },
    bargap: 0.35
  }, { displayModeBar: false, responsive: true });
})();
