// The dashboard's live part: follow /ui/events, and explain plans with /ui/plan.
"use strict";
(function () {
  const MAX_ROWS = 100;
  const $ = (sel) => document.querySelector(sel);
  const text = (tag, value, cls) => {
    const el = document.createElement(tag);
    el.textContent = value === null || value === undefined ? "-" : String(value);
    if (cls) el.className = cls;
    return el;
  };

  function requestRow(r, fresh) {
    const tr = document.createElement("tr");
    if (fresh) tr.className = "fresh";
    tr.dataset.requestId = r.request_id;
    const when = new Date(r.at * 1000).toLocaleTimeString();
    const trail = r.attempts.map((a) => `${a.target} ${a.outcome} ${Math.round(a.latency_ms)}ms`).join(" → ");
    tr.append(
      text("td", when), text("td", r.request_id, "dim"), text("td", r.route),
      text("td", r.model_requested), text("td", r.served_by),
      text("td", `${r.status} ${r.status_code}`, r.status),
      text("td", Math.round(r.latency_ms), "num"),
      text("td", r.cost === null ? null : r.cost.toFixed(6), "num"),
      text("td", trail || "(no upstream call)", "dim"),
    );
    return tr;
  }

  function addRequest(r, fresh) {
    const body = $("#requests tbody");
    body.prepend(requestRow(r, fresh));
    while (body.rows.length > MAX_ROWS) body.deleteRow(-1);
  }

  function applySnapshot(s) {
    for (const route of s.routes) {
      for (const t of route.targets) {
        for (const row of document.querySelectorAll("#routes tr[data-target]")) {
          if (row.dataset.target !== t.name) continue;
          row.querySelector(".latency").textContent = t.latency_ms === null ? "-" : t.latency_ms;
          row.querySelector(".inflight").textContent = t.in_flight;
          const b = row.querySelector(".breaker");
          b.textContent = t.breaker;
          b.className = "breaker " + t.breaker;
        }
      }
    }
    const budgets = $("#budgets tbody");
    if (s.budgets.length) {
      budgets.replaceChildren(...s.budgets.map((b) => {
        const tr = document.createElement("tr");
        tr.append(text("td", b.name), text("td", b.match), text("td", b.unit),
          text("td", b.limit, "num"), text("td", b.spent, "num"), text("td", b.reserved, "num"),
          text("td", b.remaining, "num"), text("td", b.resets_in + "s", "num"));
        return tr;
      }));
    }
    if (s.reloads.length) {
      $("#reloads tbody").replaceChildren(...s.reloads.map((r) => {
        const tr = document.createElement("tr");
        tr.append(text("td", new Date(r.at * 1000).toLocaleTimeString()),
          text("td", r.result, r.result), text("td", r.reason),
          text("td", r.problems.join("\n")));
        return tr;
      }));
    }
    $("#state-error").textContent = s.state_error || "";
  }

  JSON.parse($("#initial-requests").textContent).reverse().forEach((r) => addRequest(r, false));

  const live = $("#live");
  const events = new EventSource("/ui/events");
  events.addEventListener("open", () => { live.textContent = "live"; live.className = "live on"; });
  events.addEventListener("error", () => { live.textContent = "reconnecting…"; live.className = "live off"; });
  events.addEventListener("request", (e) => addRequest(JSON.parse(e.data), true));
  events.addEventListener("snapshot", (e) => applySnapshot(JSON.parse(e.data)));

  $("#plan-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = new FormData(e.target);
    const asked = { model: form.get("model") };
    for (const f of ["user", "prompt"]) if (form.get(f)) asked[f] = form.get(f);
    if (form.get("max_tokens")) asked.max_tokens = Number(form.get("max_tokens"));
    const out = $("#plan-out");
    try {
      const res = await fetch("/ui/plan", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(asked) });
      const body = await res.json();
      const error = typeof body.error === "string" ? body.error : body.error && body.error.message;
      out.textContent = body.explain || error || JSON.stringify(body);
      out.className = body.explain ? "" : "error";
    } catch (err) {
      out.textContent = "the gateway did not answer: " + err;
      out.className = "error";
    }
  });
})();
