// tugboat console: confirmations for actions, and live updates over server-sent events.
// Everything it puts on the page goes in as text (textContent), never as markup.
"use strict";
(function () {
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (e) => {
      if (!window.confirm(form.dataset.confirm)) e.preventDefault();
    });
  }

  const live = document.querySelector("[data-live]");
  if (!live || !window.EventSource) return;
  const indicator = document.getElementById("live");
  const source = new EventSource(live.dataset.live);
  source.onopen = () => indicator && (indicator.classList.remove("off"), indicator.classList.add("on"));
  source.onerror = () => indicator && (indicator.classList.remove("on"), indicator.classList.add("off"));
  source.addEventListener("resync", () => window.location.reload());

  let reloading = false;
  const rendered = Number(new URL(live.dataset.live, location.href).searchParams.get("after")) || 0;
  source.addEventListener("instances", (e) => {
    const data = JSON.parse(e.data);
    if (live.dataset.mode === "instance") {
      // The instance changed: show its new state (at most once a second).
      if (data.instances.length && !reloading) {
        reloading = true;
        setTimeout(() => window.location.reload(), 300);
      }
      return;
    }
    if (data.counts) {
      let all = 0;
      for (const [status, n] of Object.entries(data.counts)) {
        all += n;
        const el = document.querySelector(`[data-count="${CSS.escape(status)}"]`);
        if (el) el.textContent = n;
      }
      const el = document.querySelector('[data-count="all"]');
      if (el) el.textContent = all;
    }
    const body = live.querySelector("tbody");
    const q = live.dataset.q || "";
    const since = parseSince(live.dataset.since);
    const updates = data.instances.slice().sort((a, b) => a.updated_ms - b.updated_ms);
    for (const s of updates) {
      if (q && !s.id.includes(q) && !(s.event_id || "").includes(q)) continue;
      if (since && s.updated_ms < Date.now() - since) continue;
      const old = Array.from(body.rows).find((r) => r.dataset.id === s.id);
      if (old) old.remove();
      else if (s.created_ms >= rendered) {
        // A new instance: one more matches the filters.
        const matching = document.getElementById("matching");
        if (matching) matching.textContent = Number(matching.textContent) + 1;
      }
      const row = render(s);
      body.prepend(row);
      row.classList.add("flash");
    }
    const limit = Number(live.dataset.limit) || 100;
    while (body.rows.length > limit) body.deleteRow(body.rows.length - 1);
    const shown = document.getElementById("shown");
    if (shown) shown.textContent = body.rows.length;
    const empty = document.querySelector("p.empty");
    if (empty && body.rows.length) empty.remove();
  });

  function render(s) {
    const tr = document.createElement("tr");
    tr.dataset.id = s.id;
    const cell = (text, cls) => {
      const td = document.createElement("td");
      if (cls) td.className = cls;
      td.textContent = text;
      tr.appendChild(td);
      return td;
    };
    const link = document.createElement("a");
    link.href = "/workflows/" + encodeURIComponent(s.id);
    link.textContent = s.id;
    cell("").appendChild(link);
    cell(s.workflow);
    cell(s.route);
    const badge = document.createElement("span");
    badge.className = "status " + s.status;
    badge.textContent = s.status;
    cell("").appendChild(badge);
    cell(s.step || "");
    cell(String(s.steps), "num");
    cell(new Date(s.updated_ms).toISOString().slice(0, 19).replace("T", " "));
    cell(s.reason || s.last_error || "", "detail");
    return tr;
  }

  function parseSince(text) {
    const m = /^(\d+)\s*(s|m|min|h|d)$/.exec((text || "").trim());
    if (!m) return 0;
    return Number(m[1]) * { s: 1e3, m: 6e4, min: 6e4, h: 3.6e6, d: 8.64e7 }[m[2]];
  }
})();
