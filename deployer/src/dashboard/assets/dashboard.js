// The dashboard's script: keeps the server-rendered page live (one SSE
// stream from the deployer, which relays the manager's events), opens a
// service to its tasks in place, and runs the actions through the
// deployer's own HTTP API with the API token as a bearer header.
// Without this script the page is a complete read-only snapshot.
(function () {
  "use strict";

  var $ = function (sel, root) { return (root || document).querySelector(sel); };
  var $$ = function (sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); };
  var STRIP_MAX = 30;
  var open = {};          // app id -> true for services opened in place
  var refreshTimer = null;
  var refreshing = false;
  var again = false;

  document.documentElement.classList.add("js");
  $$(".js-only").forEach(function (el) { el.hidden = false; });

  // ---- token (kept for this tab only) ---------------------------------
  var tokenInput = $("#token");
  if (tokenInput) {
    tokenInput.value = sessionStorage.getItem("mdo-token") || "";
    tokenInput.addEventListener("input", function () {
      sessionStorage.setItem("mdo-token", tokenInput.value);
    });
  }
  function headers(extra) {
    var h = extra || {};
    var t = tokenInput ? tokenInput.value.trim() : "";
    if (t) { h["Authorization"] = "Bearer " + t; }
    return h;
  }

  // ---- live state -----------------------------------------------------
  var live = $("#live");
  function setLive(state, words) {
    if (!live) { return; }
    live.className = "live " + state;
    live.setAttribute("data-state", state);
    live.textContent = words;
  }

  // ---- refreshing the live region -------------------------------------
  function scheduleRefresh(delay) {
    if (refreshTimer) { return; }
    refreshTimer = setTimeout(function () { refreshTimer = null; refresh(); }, delay);
  }

  function refresh() {
    var region = $("#live-region");
    if (!region) { return; }
    if (refreshing) { again = true; return; }
    refreshing = true;
    fetch("/dashboard/live", { headers: headers(), credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) { throw new Error("the deployer answered " + r.status); }
        return r.text();
      })
      .then(function (html) {
        region.innerHTML = html;
        region.setAttribute("data-refreshed", String(Date.now()));
        Object.keys(open).forEach(function (app) { openService(app, true); });
      })
      .catch(function (e) { setLive("disconnected", "cannot refresh: " + e.message); })
      .then(function () {
        refreshing = false;
        if (again) { again = false; scheduleRefresh(50); }
      });
  }

  // ---- one service opened in place -------------------------------------
  function rowOf(app) {
    return $$("#services tr.svc").filter(function (tr) { return tr.getAttribute("data-app") === app; })[0];
  }

  function openService(app, keep) {
    var row = rowOf(app);
    if (!row) { delete open[app]; return; }
    var next = row.nextElementSibling;
    var detail = next && next.classList.contains("detail-row") ? next : null;
    if (detail && !keep) {
      detail.parentNode.removeChild(detail);
      delete open[app];
      return;
    }
    if (!detail) {
      detail = document.createElement("tr");
      detail.className = "detail-row";
      detail.setAttribute("data-app", app);
      detail.innerHTML = "<td colspan=\"10\"><i>loading…</i></td>";
      row.parentNode.insertBefore(detail, row.nextSibling);
    }
    open[app] = true;
    fetch("/dashboard/app?fragment=1&id=" + encodeURIComponent(app), { headers: headers(), credentials: "same-origin" })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        var cell = detail.firstElementChild;
        // Keep what is being typed into the instances box.
        var box = $(".scale-to", cell);
        var typing = box && document.activeElement === box ? box.value : null;
        cell.innerHTML = html;
        $$(".js-only", cell).forEach(function (el) { el.hidden = false; });
        if (typing !== null) {
          var nb = $(".scale-to", cell);
          if (nb) { nb.value = typing; nb.focus(); }
        }
      });
  }

  document.addEventListener("click", function (ev) {
    var a = ev.target.closest ? ev.target.closest("a.open") : null;
    if (a) {
      var tr = a.closest("tr.svc");
      if (tr) {
        ev.preventDefault();
        openService(tr.getAttribute("data-app"), false);
      }
      return;
    }
    var b = ev.target.closest ? ev.target.closest(".actions button") : null;
    if (b) { act(b); }
  });

  // ---- actions ---------------------------------------------------------
  function say(el, cls, text) {
    if (!el) { return; }
    el.className = "result " + cls;
    el.textContent = text;
  }

  function call(method, path, body, type) {
    var h = headers({ "Content-Type": type || "application/json" });
    return fetch(path, { method: method, headers: h, body: body, credentials: "same-origin" })
      .then(function (r) {
        return r.text().then(function (t) {
          var json = null;
          try { json = JSON.parse(t); } catch (e) { json = null; }
          return { ok: r.ok, status: r.status, json: json, text: t };
        });
      });
  }

  function refusal(r) {
    var msg = r.json && r.json.message ? r.json.message : r.text;
    if (r.status === 401) { msg = "refused: the API token is missing or wrong (" + msg + ")"; }
    return "failed (" + r.status + "): " + msg;
  }

  function act(button) {
    var box = button.closest(".actions");
    var app = box.getAttribute("data-app");
    var out = $(".result", box);
    var path, body;
    if (button.classList.contains("scale")) {
      var n = Number($(".scale-to", box).value);
      if (!Number.isInteger(n) || n < 0) { say(out, "bad", "instances must be a whole number, 0 or more"); return; }
      path = "/scale"; body = { app_id: app, instances: n };
    } else if (button.classList.contains("restart")) {
      path = "/restart"; body = { app_id: app };
    } else if (button.classList.contains("remove")) {
      if (!window.confirm("Remove " + app + " and stop all its tasks?")) { return; }
      path = "/remove"; body = { app_id: app };
    } else {
      return;
    }
    say(out, "", "sending…");
    call("POST", path, JSON.stringify(body)).then(function (r) {
      if (r.ok) {
        say(out, "ok", "done: deployment " + (r.json && r.json.deployment_id ? r.json.deployment_id : ""));
        scheduleRefresh(50);
      } else {
        say(out, "bad", refusal(r));
      }
    }, function (e) { say(out, "bad", "failed: " + e.message); });
  }

  // ---- apply a document --------------------------------------------------
  var doc = $("#doc");
  var planOut = $("#plan");
  var applyButton = $("#apply-button");
  var planned = null;

  function docType(text) {
    return /^\s*[{[]/.test(text) ? "application/json" : "application/yaml";
  }

  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;" }[c];
    });
  }

  function showReport(r, title) {
    if (!r.ok) {
      var details = r.json && r.json.details ? r.json.details : [];
      planOut.innerHTML = "<p class=\"bad\" id=\"plan-error\">" + esc(refusal(r)) + "</p>" +
        (details.length ? "<ul>" + details.map(function (d) {
          return "<li><code>" + esc(d.path) + "</code>: " + esc((d.errors || []).join("; ")) + "</li>";
        }).join("") + "</ul>" : "");
      return false;
    }
    var future = { created: "create", scaled: "scale", updated: "update", removed: "remove", unchanged: "unchanged" };
    var rows = (r.json.services || []).map(function (s) {
      var action = r.json.dry_run ? (future[s.action] || s.action) : s.action;
      return "<tr class=\"plan-row\" data-app=\"" + esc(s.app_id) + "\" data-action=\"" + esc(action) + "\"><td>" +
        esc(s.service) + "</td><td>" + esc(s.group) + "</td><td><code>" + esc(s.app_id) + "</code></td><td class=\"action " +
        esc(action) + "\">" + esc(action) + "</td><td>" + esc(s.instances) + "</td><td>" +
        esc((s.changes || []).join(", ")) + "</td></tr>";
    }).join("");
    planOut.innerHTML = "<h3>" + esc(title) + "</h3><table id=\"plan-table\"><tr><th>Service</th><th>Group</th><th>App</th>" +
      "<th>Action</th><th>Instances</th><th>Changes</th></tr>" + rows + "</table>";
    return true;
  }

  if (doc) {
    var file = $("#doc-file");
    file.addEventListener("change", function () {
      if (!file.files.length) { return; }
      file.files[0].text().then(function (t) { doc.value = t; applyButton.disabled = true; planOut.innerHTML = ""; });
    });
    doc.addEventListener("input", function () { applyButton.disabled = true; planned = null; });
    $("#plan-button").addEventListener("click", function () {
      var text = doc.value;
      planOut.innerHTML = "<i>planning…</i>";
      call("POST", "/deploy?dry_run=true", text, docType(text)).then(function (r) {
        if (showReport(r, "Plan (nothing applied yet)")) {
          planned = text;
          applyButton.disabled = false;
        }
      });
    });
    applyButton.addEventListener("click", function () {
      if (planned === null) { return; }
      var text = planned;
      applyButton.disabled = true;
      planOut.insertAdjacentHTML("beforeend", "<p><i>applying…</i></p>");
      call("POST", "/deploy", text, docType(text)).then(function (r) {
        showReport(r, "Applied");
        planned = null;
        scheduleRefresh(50);
      });
    });
  }

  // ---- the live stream -----------------------------------------------------
  function addLine(line) {
    var strip = $("#strip");
    if (!strip) { return; }
    var none = $("li.none", strip);
    if (none) { strip.removeChild(none); }
    var li = document.createElement("li");
    li.className = line.level;
    var t = document.createElement("time");
    var m = /T(\d\d:\d\d:\d\d)/.exec(line.time || "");
    t.textContent = m ? m[1] : (line.time || "");
    li.appendChild(t);
    li.appendChild(document.createTextNode(" " + line.text));
    strip.insertBefore(li, strip.firstChild);
    while (strip.children.length > STRIP_MAX) { strip.removeChild(strip.lastChild); }
  }

  if (window.EventSource && $("#live-region")) {
    var upstreamOk = true;
    var es = new EventSource("/dashboard/events");
    es.onopen = function () {
      if (upstreamOk) { setLive("live", "live"); }
      scheduleRefresh(0);
    };
    es.onerror = function () {
      setLive("disconnected", "disconnected from the deployer, reconnecting…");
    };
    es.addEventListener("upstream", function (ev) {
      var u = JSON.parse(ev.data);
      upstreamOk = !!u.connected;
      if (upstreamOk) {
        setLive("live", "live");
        scheduleRefresh(0);
      } else {
        setLive("disconnected", "manager events disconnected" + (u.reason ? ": " + u.reason : "") + ", reconnecting…");
      }
    });
    es.addEventListener("line", function (ev) {
      addLine(JSON.parse(ev.data));
      scheduleRefresh(150);
    });
    es.addEventListener("changed", function () { scheduleRefresh(150); });
    // Backoff countdowns and health results move without events too.
    setInterval(function () { scheduleRefresh(0); }, 5000);
  } else if ($("#live-region") && live) {
    setLive("snapshot", "snapshot (this browser has no EventSource)");
  }
})();
