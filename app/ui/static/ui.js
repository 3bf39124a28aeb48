// nas-surrogate dashboard: the only script. (1) Parts marked data-poll="URL" are refreshed
// from that URL (an HTML fragment the server renders) every data-every ms until the fragment
// carries data-final; (2) forms with data-confirm ask first. No inline script (CSP).
(function () {
  "use strict";
  function poll(el) {
    var url = el.getAttribute("data-poll");
    var every = parseInt(el.getAttribute("data-every") || "1500", 10);
    function tick() {
      if (el.querySelector("[data-final]")) { return; }
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) {
          if (r.status === 401) { window.location.reload(); return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (html) {
          if (html !== null && html !== undefined) {
            // Keep keyboard focus where it was when the fragment is swapped.
            var focused = document.activeElement && el.contains(document.activeElement)
              ? document.activeElement.getAttribute("id") : null;
            el.innerHTML = html;
            wire(el);
            if (focused && document.getElementById(focused)) {
              document.getElementById(focused).focus();
            }
          }
        })
        .catch(function () { /* a network blip: try again on the next tick */ })
        .then(function () { setTimeout(tick, every); });
    }
    setTimeout(tick, every);
  }
  function wire(root) {
    root.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    wire(document);
    document.querySelectorAll("[data-poll]").forEach(poll);
  });
})();
