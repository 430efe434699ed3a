// agentcap UI: the live tail of the exchanges list. Served from /assets/ui.js; no inline script.
// Rows arrive as server-rendered <tr> fragments (every recorded value escaped by the server).
"use strict";
(function () {
  var MAX_ROWS = 500;
  var box = document.getElementById("tail");
  var table = document.getElementById("exchanges");
  if (!box || !table) { return; }
  var status = document.getElementById("tail-status");
  var tbody = table.tBodies[0];
  var source = null;
  function say(text) { if (status) { status.textContent = text; } }
  function stop() { if (source) { source.close(); source = null; } say(""); }
  function start() {
    var after = table.getAttribute("data-tail-after") || "";
    var filters = table.getAttribute("data-filters") || "";
    var url = "/tail?after=" + encodeURIComponent(after) + (filters ? "&" + filters : "");
    source = new EventSource(url);
    source.addEventListener("ready", function () { say("waiting for traffic…"); });
    source.addEventListener("row", function (e) {
      var t = document.createElement("template");
      t.innerHTML = e.data;
      var tr = t.content.firstElementChild;
      if (!tr) { return; }
      tr.classList.add("new");
      var empty = document.getElementById("empty");
      if (empty) { empty.remove(); }
      if (e.lastEventId) { table.setAttribute("data-tail-after", e.lastEventId); }
      tbody.insertBefore(tr, tbody.firstChild);
      while (tbody.rows.length > MAX_ROWS) { tbody.deleteRow(tbody.rows.length - 1); }
      say("live");
    });
    source.addEventListener("failed", function () { stop(); say("tail stopped (query failed)"); box.checked = false; });
    source.onerror = function () {
      // Reconnect ourselves, from the last row received, so no row is shown twice.
      stop();
      say("reconnecting…");
      setTimeout(function () { if (box.checked && !source) { start(); } }, 1000);
    };
  }
  box.addEventListener("change", function () { if (box.checked) { start(); } else { stop(); } });
})();
