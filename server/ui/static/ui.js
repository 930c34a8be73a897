// The featurestore UI's one script: no framework, no network but this server.
// 1. Search as you type: <input data-filter="#target"> hides the [data-search] items inside the
//    target whose text does not hold every word typed; [data-filter-count] shows how many remain, and
//    the words go into the page's ?q= so the search can be bookmarked. With data-filter-src="/ui/..."
//    (a list too long to send whole) the server searches instead: a pause in typing fetches that
//    URL's ?q= and puts its HTML in place of the target; an answer to an older search is dropped.
// 2. Parts filled in after the page loads: <div data-src="/ui/..."> is replaced by that URL's HTML
//    (for figures that take longer to work out, so the page itself comes at once).
(function () {
  "use strict";

  function words(text) {
    return text.toLowerCase().split(/\s+/).filter(Boolean);
  }

  function applyFilter(input) {
    var target = document.querySelector(input.getAttribute("data-filter"));
    if (!target) return;
    var wanted = words(input.value);
    var shown = 0;
    var items = target.querySelectorAll("[data-search]");
    for (var i = 0; i < items.length; i++) {
      var hay = items[i].getAttribute("data-search").toLowerCase();
      var ok = wanted.every(function (w) { return hay.indexOf(w) !== -1; });
      items[i].hidden = !ok;
      if (ok) shown++;
    }
    var groups = target.querySelectorAll("[data-filter-group]");
    for (var j = 0; j < groups.length; j++) {
      groups[j].hidden = groups[j].querySelector("[data-search]:not([hidden])") === null;
    }
    setCount(String(shown));
    keepQuery(input.value);
  }

  function setCount(text) {
    var counts = document.querySelectorAll("[data-filter-count]");
    for (var k = 0; k < counts.length; k++) counts[k].textContent = text;
  }

  function keepQuery(value) {
    var url = new URL(window.location.href);
    if (value) url.searchParams.set("q", value); else url.searchParams.delete("q");
    window.history.replaceState(null, "", url.toString());
  }

  // Search on the server as you type: the latest search alone may fill the target.
  function serverFilter(input) {
    var sent = 0;
    var timer = null;
    function search() {
      var value = input.value;
      var mine = ++sent;
      var url = input.getAttribute("data-filter-src") + "?q=" + encodeURIComponent(value);
      keepQuery(value);
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html", "X-FS-Fragment": "1" } })
        .then(function (r) { return r.text().then(function (t) { return { ok: r.ok, status: r.status, text: t }; }); })
        .then(function (res) {
          if (mine !== sent) return;  // a later search was sent: its answer is the one to show
          var target = document.querySelector(input.getAttribute("data-filter"));
          if (!target) return;
          if (!res.ok) {
            target.textContent = res.status === 401 ? "Your session ended: reload the page to sign in again."
              : "Could not search: reload the page.";
            target.className = "alert";
            return;
          }
          target.outerHTML = res.text;
          var fresh = document.querySelector(input.getAttribute("data-filter"));
          if (fresh && fresh.hasAttribute("data-filter-shown")) setCount(fresh.getAttribute("data-filter-shown"));
        })
        .catch(function () {
          var target = mine === sent && document.querySelector(input.getAttribute("data-filter"));
          if (target) { target.textContent = "Could not search: reload the page."; target.className = "alert"; }
        });
    }
    input.addEventListener("input", function () {
      if (timer !== null) clearTimeout(timer);
      timer = setTimeout(function () { timer = null; search(); }, 150);
    });
  }

  function load(el) {
    fetch(el.getAttribute("data-src"), { credentials: "same-origin", headers: { "Accept": "text/html", "X-FS-Fragment": "1" } })
      .then(function (r) { return r.text().then(function (t) { return { ok: r.ok, status: r.status, text: t }; }); })
      .then(function (res) {
        if (res.ok) { el.outerHTML = res.text; return; }
        el.textContent = res.status === 401 ? "Your session ended: reload the page to sign in again."
          : "Could not load this part of the page.";
        el.className = "alert";
      })
      .catch(function () { el.textContent = "Could not load this part of the page."; el.className = "alert"; });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var inputs = document.querySelectorAll("input[data-filter]");
    for (var i = 0; i < inputs.length; i++) {
      (function (input) {
        if (input.hasAttribute("data-filter-src")) { serverFilter(input); return; }  // the page came searched
        input.addEventListener("input", function () { applyFilter(input); });
        if (input.value) applyFilter(input);
      })(inputs[i]);
    }
    var parts = document.querySelectorAll("[data-src]");
    for (var j = 0; j < parts.length; j++) load(parts[j]);
  });
})();
