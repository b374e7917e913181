// Live screens: countdowns tick every second; the page refreshes its live parts on news.
//
// Contract (docs/screens.md, "Live updates"):
// - every <span class="countdown" data-due="ISO"> shows the time left ("2h 14m 05s left") or
//   overdue ("overdue 3d 4h 02m 05s"), and gets the class "overdue" once past its due instant;
//   a page pinned to an instant (<main data-at="ISO">) counts from that instant on;
// - when <main data-live> is present, an EventSource on /live/events listens for the caller's
//   events; on news the page re-fetches its own URL and replaces each element marked
//   data-live-region whose id matches (at most once every 2 s); without EventSource (or when
//   it fails), the same refresh runs every 30 s.
(function () {
  "use strict";

  var REFRESH_GAP_MS = 2000;
  var POLL_MS = 30000;
  var main = document.querySelector("main");
  var pinned = main && main.dataset.at ? Date.parse(main.dataset.at) : NaN;
  var loaded = Date.now();

  function now() {
    return isNaN(pinned) ? Date.now() : pinned + (Date.now() - loaded);
  }

  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }

  function countdownText(ms) {
    var late = ms < 0;
    var s = Math.floor(Math.abs(ms) / 1000);
    var days = Math.floor(s / 86400);
    var hours = Math.floor((s % 86400) / 3600);
    var minutes = Math.floor((s % 3600) / 60);
    var seconds = s % 60;
    var clock = hours + "h " + pad(minutes) + "m " + pad(seconds) + "s";
    var text = days ? days + "d " + clock : clock;
    return late ? "overdue " + text : text + " left";
  }

  function tick() {
    var t = now();
    var spans = document.querySelectorAll(".countdown[data-due]");
    for (var i = 0; i < spans.length; i++) {
      var due = Date.parse(spans[i].dataset.due);
      if (isNaN(due)) continue;
      var text = countdownText(due - t);
      if (spans[i].textContent !== text) spans[i].textContent = text;
      spans[i].classList.toggle("overdue", due - t < 0);
    }
  }

  // the reader's place survives a refresh: open <details>, scrolled lists, the focused link
  function replaceKeepingPlace(region, replacement) {
    var opened = [];
    var details = region.querySelectorAll("details");
    for (var i = 0; i < details.length; i++) opened.push(details[i].open);
    var scrolled = [];
    var scrollers = region.querySelectorAll(".scroll");
    for (var j = 0; j < scrollers.length; j++) scrolled.push(scrollers[j].scrollTop);
    var active = document.activeElement;
    var focusKey = null;
    if (active && region.contains(active)) {
      focusKey = active.id ? "#" + CSS.escape(active.id)
        : active.getAttribute("href") ? 'a[href="' + CSS.escape(active.getAttribute("href")) + '"]'
        : null;
    }
    region.replaceWith(replacement);
    var fresh = replacement.querySelectorAll("details");
    for (var k = 0; k < fresh.length && k < opened.length; k++) fresh[k].open = opened[k];
    var freshScrollers = replacement.querySelectorAll(".scroll");
    for (var m = 0; m < freshScrollers.length && m < scrolled.length; m++) {
      freshScrollers[m].scrollTop = scrolled[m];
    }
    if (focusKey) {
      var target = replacement.querySelector(focusKey);
      if (target) target.focus({ preventScroll: true });
    }
  }

  var pending = null;
  var lastRefresh = 0;
  var refreshing = false;
  var again = false;

  function refresh() {
    if (refreshing) {
      again = true; // news during a fetch: fetch once more after it
      return;
    }
    refreshing = true;
    lastRefresh = Date.now();
    fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        var regions = document.querySelectorAll("[data-live-region][id]");
        for (var i = 0; i < regions.length; i++) {
          var region = regions[i];
          var replacement = fresh.getElementById(region.id);
          if (!replacement) continue;
          replaceKeepingPlace(region, document.importNode(replacement, true));
        }
        tick();
        document.dispatchEvent(new CustomEvent("live:refreshed"));
      })
      .catch(function () { /* the next news or poll tries again */ })
      .then(function () {
        refreshing = false;
        if (again) {
          again = false;
          schedule();
        }
      });
  }

  // at most one refresh every REFRESH_GAP_MS: news arriving in a burst causes one fetch
  function schedule() {
    if (pending !== null) return;
    var wait = Math.max(0, lastRefresh + REFRESH_GAP_MS - Date.now());
    pending = window.setTimeout(function () {
      pending = null;
      refresh();
    }, wait);
  }

  var polling = null;
  function poll() {
    if (polling === null) polling = window.setInterval(refresh, POLL_MS);
  }

  function listen() {
    if (!("EventSource" in window)) {
      poll();
      return;
    }
    var source = new EventSource("/live/events");
    source.onopen = function () {
      if (polling !== null) {
        window.clearInterval(polling);
        polling = null;
      }
    };
    source.onmessage = schedule;
    source.onerror = function () {
      // the browser reconnects by itself; poll meanwhile, and stop once it is closed for good
      poll();
    };
    // SSE messages named by an "event:" line reach only the listeners of that name
    var types = (main.dataset.liveTypes || "").split(/\s+/).filter(Boolean);
    for (var i = 0; i < types.length; i++) source.addEventListener(types[i], schedule);
    window.addEventListener("pagehide", function () { source.close(); });
    window.effigateLive = { source: source, refresh: refresh };
    return source;
  }

  tick();
  window.setInterval(tick, 1000);
  if (main && main.hasAttribute("data-live")) listen();
})();
