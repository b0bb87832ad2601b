// A form with data-confirm="question" asks before it is sent. (The Content-Security-Policy allows no
// inline event handler, so no onsubmit="return confirm(...)".)
document.addEventListener(
  "submit",
  function (event) {
    var form = event.target;
    var question = form instanceof HTMLFormElement ? form.getAttribute("data-confirm") : null;
    if (question && !window.confirm(question)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  },
  true
);
