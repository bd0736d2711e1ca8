// Portcullis console: the one script of our own. Counts down "time left" on pending
// approvals, dismisses a vote's confirmation in place and brings a new one into view;
// everything else is server-rendered, with htmx for live updates.
(function () {
  "use strict";
  function left(expires) {
    var secs = Math.floor((Date.parse(expires) - Date.now()) / 1000);
    if (!(secs > 0)) return "expired";
    var h = Math.floor(secs / 3600), m = Math.floor(secs / 60) % 60, s = secs % 60;
    if (h > 0) return h + " h " + m + " min left";
    if (m > 0) return m + " min " + s + " s left";
    return s + " s left";
  }
  function tick() {
    var els = document.querySelectorAll("time[data-expires]");
    for (var i = 0; i < els.length; i++) {
      var text = left(els[i].getAttribute("data-expires"));
      if (els[i].textContent !== text) els[i].textContent = text;
    }
  }
  setInterval(tick, 1000);

  // Whether the pending list is live: approvers must know when it is not.
  function live(text, on) {
    var el = document.getElementById("live");
    if (!el) return;
    el.textContent = text;
    el.setAttribute("data-live", on ? "on" : "off");
  }
  document.addEventListener("htmx:sseOpen", function () {
    live("Live: new requests appear here.", true);
  });
  document.addEventListener("htmx:sseError", function () {
    live("Live updates interrupted; reconnecting…", false);
  });

  // A vote's confirmation: dismissed here (without this script, its form reloads the page
  // without it); a new one is focused, so it is seen (and read out) wherever the vote was.
  document.addEventListener("click", function (e) {
    var b = e.target.closest && e.target.closest("button[data-dismiss]");
    if (!b) return;
    var c = document.getElementById(b.getAttribute("data-dismiss"));
    if (!c) return;
    e.preventDefault();
    c.remove();
  });
  // A vote refused (decided meanwhile by someone else, voted already, not allowed): htmx
  // swaps nothing for an error, so its page's message is put above the list, as text.
  document.addEventListener("htmx:responseError", function (e) {
    var path = e.detail.requestConfig && e.detail.requestConfig.path;
    if (!/^\/console\/approvals\/[^/]+\/(approve|deny)$/.test(path || "")) return;
    var list = document.getElementById("confirmations");
    if (!list) return;
    var doc = new DOMParser().parseFromString(e.detail.xhr.responseText, "text/html");
    var title = doc.querySelector("h1"), message = doc.querySelector("main p");
    var n = document.createElement("div");
    n.className = "confirmation confirmation-refused";
    n.id = "refused-" + Date.now();
    n.setAttribute("tabindex", "-1");
    var p = document.createElement("p");
    var b = document.createElement("b");
    b.textContent = "Not counted: " + (title ? title.textContent : "the vote failed");
    p.appendChild(b);
    p.appendChild(document.createTextNode(" " + (message ? message.textContent : "") + " Reload to see it as it is now."));
    var d = document.createElement("button");
    d.type = "button";
    d.className = "dismiss";
    d.setAttribute("data-dismiss", n.id);
    d.textContent = "Dismiss";
    n.appendChild(p);
    n.appendChild(d);
    list.insertBefore(n, list.firstChild);
    n.focus();
  });

  // After the vote's own swap has settled (the card it replaced held the focus).
  document.addEventListener("htmx:afterSettle", function () {
    var c = document.querySelector("#confirmations .confirmation:not([data-seen])");
    if (!c) return;
    c.setAttribute("data-seen", "");
    c.focus();
  });
})();
