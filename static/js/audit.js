// Audit log: opening an event's <details> shows its before/after row under it (plain <details> keeps it
// keyboard-accessible). Listened for on the document, in the capture phase ("toggle" does not bubble),
// so the rows of a page htmx swaps in work too.
document.addEventListener(
  "toggle",
  function (event) {
    var details = event.target;
    if (!(details instanceof HTMLDetailsElement) || !details.classList.contains("event-details")) return;
    var row = document.getElementById("event-" + details.dataset.seq);
    if (row) row.hidden = !details.open;
  },
  true
);
