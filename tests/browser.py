"""Shared helpers for the Chromium tests: did every chart on the page draw real data?

A chart that draws no trace passes every HTML assertion, so the browser tests ask Plotly itself:
every chart container on the page (``[data-figure]`` for stored evaluation figures, ``[data-chart]``
for charts a page builds from its own JSON) must have become a Plotly plot with at least one trace
that carries data.
"""

from __future__ import annotations

CHART_SELECTOR = "[data-figure], [data-chart]"

# For each chart container: its label, whether Plotly drew it, how many traces, how many with data, and
# the type Plotly gave its x and y axes ("category", "linear", ...).
_CHART_STATE_JS = """
(selector) => Array.from(document.querySelectorAll(selector)).map((el) => {
  const traces = Array.isArray(el.data) ? el.data : [];
  const filled = (v) => Array.isArray(v) ? v.some((x) => Array.isArray(x) ? filled(x) : x !== null && x !== undefined)
                                        : (v && typeof v.length === "number" ? v.length > 0 : false);
  const withData = traces.filter((t) => ["x", "y", "z", "values"].some((k) => filled(t[k])));
  return {
    label: el.getAttribute("data-figure") || el.getAttribute("data-chart") || el.id || el.className,
    drawn: el.classList.contains("js-plotly-plot"),
    traces: traces.length,
    with_data: withData.length,
    svg_marks: el.querySelectorAll(".trace, .point, .bars path, .heatmaplayer image, canvas").length,
    axes: { x: (el._fullLayout && el._fullLayout.xaxis || {}).type, y: (el._fullLayout && el._fullLayout.yaxis || {}).type },
  };
})
"""


def chart_states(page) -> list[dict]:
    """What Plotly drew in every chart container of ``page`` (a Playwright page), after it settles."""
    page.wait_for_load_state("networkidle")
    return page.evaluate(_CHART_STATE_JS, CHART_SELECTOR)


def assert_charts_drew(page, *, at_least: int = 1) -> list[dict]:
    """Every chart on the page drew at least one trace with non-empty data; there are ``at_least``."""
    states = chart_states(page)
    assert len(states) >= at_least, f"expected at least {at_least} chart(s) on {page.url}, found {len(states)}"
    empty = [s for s in states if not (s["drawn"] and s["with_data"] >= 1)]
    assert not empty, f"charts that drew no data on {page.url}: {empty}"
    return states


# Every Content-Security-Policy violation a page reports: Chromium's console errors ("Refused to
# execute inline script because it violates the following Content Security Policy directive ...")
# and the DOM's securitypolicyviolation events, collected from every page loaded after the call.
_CSP_LISTENER_JS = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error("Content Security Policy violation: " + e.violatedDirective + " blocked " + (e.blockedURI || "inline"));
});
"""


def watch_csp(page) -> list[str]:
    """Start collecting ``page``'s CSP violations (console messages); returns the list it fills."""
    violations: list[str] = []
    page.context.add_init_script(_CSP_LISTENER_JS)

    def on_console(message):
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            violations.append(f"{page.url}: {message.text}")

    page.on("console", on_console)
    return violations
