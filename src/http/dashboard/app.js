// Troupe dashboard: a small single-page app over the management API. No framework, no build.
//
// Pages: "/" (fleet overview), "/schedulers/NAME" (rooms, chart, operations, plan),
// "/plan" (the pending plan and the revisions). Each page has `mount()` (builds its skeleton
// once) and `refresh()` (refetches what it shows and fills the skeleton in). The page follows
// GET /api/v1/events (server-sent events) and refreshes on each; when the stream fails, it
// polls every 2 s until the stream is back.
"use strict";

const POLL_MS = 2000;
const HISTORY_REFETCH_MS = 10000;
const PAGE_SIZE = 50;
const TOKEN_KEY = "troupe.apiToken";
const STATUSES = ["pending", "unready", "ready", "active", "occupied", "allocated", "terminating", "error"];

// ---------- helpers ----------

const $ = (sel, root = document) => root.querySelector(sel);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) =>
  ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

function ago(ms) {
  if (!ms) return "—";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

function age(ms) {
  return ms ? ago(ms).replace(" ago", "") : "—";
}

function clock(ms) {
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function pct(n, d) {
  return d > 0 ? Math.round((100 * n) / d) : 0;
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, options = {}) {
  const headers = { Accept: "application/json" };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  if (options.method && options.method !== "GET" && token()) headers.Authorization = `Bearer ${token()}`;
  const resp = await fetch(path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  let body = null;
  try { body = await resp.json(); } catch (_) { /* not JSON */ }
  if (!resp.ok) {
    const message = body && body.error ? body.error.message : `${resp.status} ${resp.statusText}`;
    throw new ApiError(resp.status, message);
  }
  return body;
}

/// GET that answers null on 404/503 (no such thing yet) instead of throwing.
async function maybe(path) {
  try { return await api(path); } catch (e) {
    if (e.status === 404 || e.status === 503) return null;
    throw e;
  }
}

let toastTimer = null;
function toast(message, bad = false) {
  const t = $("#toast");
  t.textContent = message;
  t.className = bad ? "toast bad" : "toast";
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, bad ? 8000 : 3000);
}

async function write(path, body, done) {
  try {
    await api(path, { method: "POST", body });
    toast(done);
    refresh();
  } catch (e) {
    if (e.status === 401) toast(`${e.message} — enter the API token at the top right`, true);
    else toast(e.message, true);
  }
}

/// Set an element's HTML only when it changed: a refresh then leaves untouched what did not
/// change (no flicker, hover and text selection kept, buttons stay the same elements).
const rendered = new WeakMap();
function put(sel, html) {
  const el = $(sel);
  if (el && rendered.get(el) !== html) {
    el.innerHTML = html;
    rendered.set(el, html);
  }
}

function badge(cls, text) {
  return `<span class="badge ${esc(cls)}">${esc(text)}</span>`;
}

function statusBar(rooms, total) {
  const parts = STATUSES.filter((s) => rooms[s]).map((s) =>
    `<span class="bg-${s}" title="${s}: ${rooms[s]}" style="width:${(100 * rooms[s]) / Math.max(total, 1)}%"></span>`);
  return `<div class="bar">${parts.join("")}</div>`;
}

function statusCounts(rooms) {
  return STATUSES.filter((s) => rooms[s]).map((s) =>
    `<span class="dot s-${s}"><b class="n-${s}">${rooms[s]}</b> ${s}</span>`).join("");
}

const SYNC_LABEL = { inSync: "in sync", pending: "plan pending", error: "error", suspended: "suspended", orphaned: "orphaned" };
const ACTION_LABEL = { create: "create", updateInPlace: "update in place", scale: "scale", rollout: "rollout", converge: "converge", delete: "delete", orphan: "orphan" };

function syncCell(sync) {
  let label = SYNC_LABEL[sync.state] || sync.state;
  if (sync.action && sync.state === "pending") label += ` (${ACTION_LABEL[sync.action] || sync.action})`;
  const why = sync.message ? `<div class="why ${sync.state === "error" ? "bad" : ""}">${esc(sync.message)}</div>` : "";
  return `${badge(sync.state, label)}${why}`;
}

function targetText(s) {
  if (s.autoscaling) {
    const max = s.autoscaling.max < 0 ? "∞" : s.autoscaling.max;
    return `${s.targetRooms} <div class="why">autoscaled ${s.autoscaling.min}–${max}</div>`;
  }
  return `${s.targetRooms}`;
}

function occupancyCell(s) {
  const p = pct(s.busyRooms, s.totalRooms);
  return `<div class="occ"><span class="pct">${p}%</span> <span class="muted">${s.busyRooms}/${s.totalRooms} busy</span>
    <div class="meter"><span style="width:${p}%"></span></div>
    <div class="why"><span class="matches">${s.runningMatches}</span> running match${s.runningMatches === 1 ? "" : "es"}</div></div>`;
}

function causeText(c) {
  if (!c) return "";
  switch (c.type) {
    case "revision": return `revision ${c.revision.slice(0, 12)}${c.commit ? ` (${c.commit})` : ""}`;
    case "user": return `by ${c.name}`;
    case "plan": return `saved plan ${c.plan} by ${c.user}`;
    case "autoscaler": return `autoscaler: ${c.reason}`;
    case "health": return `repair: ${c.reason}`;
    default: return c.type;
  }
}

function commitText(commit) {
  if (!commit) return "";
  const first = (commit.message || "").split("\n")[0];
  const author = (commit.author || "").replace(/\s*<.*>$/, "");
  return `<code>${esc(commit.sha.slice(0, 10))}</code> ${esc(first)} <span class="muted">— ${esc(author)}</span>`;
}

function diffHtml(diff) {
  return diff.replace(/\n+$/, "").split("\n").map((line) => {
    let cls = "ctx";
    if (line.startsWith("+++") || line.startsWith("---")) cls = "file";
    else if (line.startsWith("@@")) cls = "hunk";
    else if (line.startsWith("+")) cls = "add";
    else if (line.startsWith("-")) cls = "del";
    return `<span class="${cls}">${esc(line) || " "}</span>`;
  }).join("");
}

function symbolClass(action) {
  if (action === "create") return "create";
  if (action === "delete") return "delete";
  if (action === "rollout") return "rollout";
  return "other";
}
const SYMBOL = { create: "+", updateInPlace: "~", scale: "~", converge: "~", rollout: "-/+", delete: "-", orphan: "?" };

function impactHtml(change) {
  const i = change.impact;
  const target = change.liveTargetRooms != null && change.liveTargetRooms !== change.targetRooms
    ? `${change.liveTargetRooms} → ${change.targetRooms}` : `${change.targetRooms}`;
  return `<div class="impact">
    <span>rooms <b>${target}</b>${change.autoscaled ? " (autoscaled)" : ""}</span>
    <span>create <b>${i.create}</b></span><span>replace <b>${i.replace}</b></span>
    <span>remove <b>${i.remove}</b></span><span>busy kept <b>${i.keptBusy}</b></span>
    ${(change.fromVersion || change.toVersion) && change.fromVersion !== change.toVersion ? `<span>version <code>${esc(change.fromVersion || "—")}</code> → <code>${esc(change.toVersion || "—")}</code></span>` : ""}
  </div>`;
}

/// The API server's refusal of a change's pods, with where the scheduler is declared.
function refusalHtml(change) {
  const r = change.admission;
  if (!r) return "";
  const where = r.declared ? `<span class="where">${esc(r.declared.file)}:${r.declared.line}</span>: ` : "";
  return `<p class="refused">${where}refused by the API server: ${esc(r.reason)}</p>`;
}

/// One scheduler's change; `sync` (from the overview), when given, says whether it waits.
function changeHtml(change, link, sync) {
  const waits = sync && (sync.state === "suspended" || sync.message)
    ? `${badge(sync.state, SYNC_LABEL[sync.state] || sync.state)} <span class="why">${esc(sync.message || "")}</span>` : "";
  const name = link ? `<a href="/schedulers/${encodeURIComponent(change.scheduler)}" data-link>${esc(change.scheduler)}</a>` : esc(change.scheduler);
  return `<section class="change" data-change="${esc(change.scheduler)}">
    <h3><span class="sym ${symbolClass(change.action)}">${SYMBOL[change.action] || "~"}</span> ${name}
      <span class="muted">${esc(ACTION_LABEL[change.action] || change.action)}</span> ${waits}</h3>
    <ul class="reasons">${change.reasons.map((r) => `<li>${esc(r)}</li>`).join("")}</ul>
    ${refusalHtml(change)}
    ${impactHtml(change)}
    ${change.diff ? `<pre class="diff">${diffHtml(change.diff)}</pre>` : ""}
  </section>`;
}

function locatedHtml(errors) {
  if (!errors || !errors.length) return "";
  return `<ul class="located">${errors.map((e) =>
    `<li><span class="where">${esc(e.file)}:${e.line}:${e.column}</span>: ${esc(e.path)}: ${esc(e.message)}</li>`).join("")}</ul>`;
}

function opsTable(ops, withScheduler, openOps) {
  if (!ops.length) return `<div class="empty">No operations yet.</div>`;
  const rows = ops.map((o) => {
    const last = o.events.length ? o.events[o.events.length - 1].message : "";
    const cancel = o.status === "pending" || o.status === "running"
      ? `<button class="danger" data-cancel="${esc(o.id)}">Cancel</button>` : "";
    const events = o.events.map((e) => `<li><time>${esc(clock(e.at))}</time>${esc(e.message)}</li>`).join("");
    return `<tr data-op="${esc(o.id)}">
      <td><details class="op" data-op-details="${esc(o.id)}" ${openOps.has(o.id) ? "open" : ""}>
        <summary><code>${esc(o.id)}</code> <span class="muted">${esc(last)}</span></summary>
        <ul class="events">${events || "<li>no events yet</li>"}</ul>
        ${o.error ? `<div class="why bad">${esc(o.error)}</div>` : ""}</details></td>
      ${withScheduler ? `<td><a href="/schedulers/${encodeURIComponent(o.scheduler)}" data-link>${esc(o.scheduler)}</a></td>` : ""}
      <td>${esc(o.kind)}</td>
      <td class="status">${badge(o.status, o.status)}</td>
      <td class="why">${esc(causeText(o.cause))}</td>
      <td class="muted">${esc(ago(o.createdAt))}</td>
      <td>${cancel}</td></tr>`;
  }).join("");
  return `<table><thead><tr><th>Operation</th>${withScheduler ? "<th>Scheduler</th>" : ""}<th>Kind</th><th>Status</th><th>Cause</th><th>Queued</th><th></th></tr></thead><tbody>${rows}</tbody></table>`;
}

/// Remember which operations' event lists are open across refreshes.
const openOps = new Set();
document.addEventListener("toggle", (ev) => {
  const id = ev.target.dataset && ev.target.dataset.opDetails;
  if (!id) return;
  if (ev.target.open) openOps.add(id); else openOps.delete(id);
}, true);

// ---------- the revision bar (every page) ----------

async function renderRevision() {
  const rev = await api("/api/v1/revision");
  const el = $("#revision");
  let html;
  if (rev.revision) {
    const r = rev.revision;
    html = `Running revision <b><code id="revision-id">${esc(r.id.slice(0, 16))}</code></b>
      ${r.commit ? ` · ${commitText(r.commit)}` : ""} · seen ${esc(ago(r.seenAt))} · ${r.schedulers} schedulers`;
  } else {
    html = "No revision loaded yet.";
  }
  if (rev.error) {
    html += ` · <span class="bad">newest revision rejected: ${esc(rev.error.message)}</span> <a href="/plan" data-link>details</a>`;
  }
  el.innerHTML = html;
  return rev;
}

// ---------- overview ----------

const overview = {
  mount(view) {
    view.innerHTML = `
      <div id="ov-banner"></div>
      <div class="stats" id="ov-stats"></div>
      <div class="card flush"><h2>Schedulers <small id="ov-count"></small></h2>
        <div id="ov-schedulers"></div></div>
      <div class="card flush"><h2>Recent operations <small id="ov-ops-count"></small></h2>
        <div id="ov-ops"></div></div>`;
  },
  async refresh() {
    const [ov, ops] = await Promise.all([api("/api/v1/overview"), api("/api/v1/operations?limit=20")]);
    const s = ov.schedulers;
    const total = s.reduce((a, x) => a + x.totalRooms, 0);
    const ready = s.reduce((a, x) => a + (x.rooms.ready || 0), 0);
    const busy = s.reduce((a, x) => a + x.busyRooms, 0);
    const matches = s.reduce((a, x) => a + x.runningMatches, 0);
    const active = ops.filter((o) => o.status === "running" || o.status === "pending").length;
    const out = s.filter((x) => x.sync.state !== "inSync").length;
    put("#ov-stats", `
      <div class="stat"><div class="label">Schedulers</div><div class="value" id="stat-schedulers">${s.length}</div><div class="sub">${out} not in sync</div></div>
      <div class="stat"><div class="label">Rooms</div><div class="value" id="stat-rooms">${total}</div><div class="sub">${ready} ready</div></div>
      <div class="stat"><div class="label">Occupancy</div><div class="value">${pct(busy, total)}%</div><div class="sub">${busy} busy room${busy === 1 ? "" : "s"}</div></div>
      <div class="stat"><div class="label">Matches</div><div class="value">${matches}</div><div class="sub">running now</div></div>
      <div class="stat"><div class="label">Operations</div><div class="value">${active}</div><div class="sub">pending or running</div></div>
      <div class="stat"><div class="label">Plan</div><div class="value">${ov.plan && ov.plan.hasChanges ? `<a href="/plan" data-link>${planCount(ov.plan.summary)} changes</a>` : "in sync"}</div><div class="sub">sync ${esc(ov.syncMode)}</div></div>`);
    $("#ov-count").textContent = `${s.length}`;
    put("#ov-schedulers", s.length ? `<table id="schedulers"><thead><tr>
        <th>Scheduler</th><th>Version</th><th>Sync</th><th>Rooms</th><th>Occupancy</th><th class="num">Target</th><th>Last operation</th>
      </tr></thead><tbody>${s.map((x) => `<tr data-scheduler="${esc(x.name)}">
        <td><a href="/schedulers/${encodeURIComponent(x.name)}" data-link><b>${esc(x.name)}</b></a><div class="why">${esc(x.game)}</div></td>
        <td><code>${esc(x.version)}</code></td>
        <td class="sync">${syncCell(x.sync)}</td>
        <td class="rooms"><b class="total">${x.totalRooms}</b> rooms${statusBar(x.rooms, x.totalRooms)}<div class="counts">${statusCounts(x.rooms)}</div></td>
        <td>${occupancyCell(x)}</td>
        <td class="num target">${targetText(x)}</td>
        <td>${x.lastOperation ? `${esc(x.lastOperation.kind)} ${badge(x.lastOperation.status, x.lastOperation.status)}${x.lastOperation.error ? `<div class="why bad">${esc(x.lastOperation.error)}</div>` : ""}` : `<span class="muted">none</span>`}</td>
      </tr>`).join("")}</tbody></table>` : `<div class="empty">No schedulers yet: commit scheduler YAML to the source.</div>`);
    $("#ov-ops-count").textContent = `${ops.length} shown`;
    put("#ov-ops", opsTable(ops, true, openOps));
  },
};

function planCount(summary) {
  return summary.create + summary.update + summary.rollout + summary.scale + summary.delete + summary.converge;
}

// ---------- one scheduler ----------

const scheduler = {
  name: "",
  filter: { status: "", q: "", offset: 0 },
  historyAt: 0,
  history: null,
  current: null,
  mount(view, name) {
    this.name = name;
    this.history = null;
    this.historyAt = 0;
    const params = new URLSearchParams(location.search);
    this.filter = { status: params.get("status") || "", q: params.get("q") || "", offset: Number(params.get("offset")) || 0 };
    view.innerHTML = `<div id="sc-missing"></div><div id="sc-body">
      <div class="head"><h1 id="sc-name">${esc(name)}</h1><span id="sc-sync"></span><span class="spacer"></span>
        <span id="sc-actions"></span></div>
      <div class="stats" id="sc-stats"></div>
      <div class="charts">
        <div class="card"><h2>Rooms over the last hour <small id="sc-chart-note"></small></h2><div id="sc-chart"></div></div>
        <div class="card"><h2>Occupancy <small>busy rooms ÷ rooms</small></h2><div id="sc-occ-chart"></div></div>
      </div>
      <div class="card flush"><h2>Rooms <small id="rooms-summary"></small></h2>
        <div class="toolbar"><span id="sc-chips"></span><span class="spacer"></span>
          <input type="search" id="rooms-q" placeholder="Filter by id, address, port, reason…" value="${esc(this.filter.q)}"></div>
        <div id="sc-rooms"></div>
        <div class="pager"><span id="rooms-range"></span><span class="spacer"></span>
          <button id="rooms-prev">‹ Previous</button><button id="rooms-next">Next ›</button></div></div>
      <div class="card flush"><h2>Operations <small id="sc-ops-count"></small></h2><div id="sc-ops"></div></div>
      <div class="card"><h2>Plan for this scheduler</h2><div id="sc-plan"></div></div></div>`;
    let timer = null;
    $("#rooms-q").addEventListener("input", (ev) => {
      clearTimeout(timer);
      timer = setTimeout(() => { this.setFilter({ q: ev.target.value, offset: 0 }); }, 250);
    });
    $("#rooms-prev").addEventListener("click", () => this.setFilter({ offset: Math.max(0, this.filter.offset - PAGE_SIZE) }));
    $("#rooms-next").addEventListener("click", () => this.setFilter({ offset: this.filter.offset + PAGE_SIZE }));
    $("#sc-chips").addEventListener("click", (ev) => {
      const b = ev.target.closest("button[data-status]");
      if (b) this.setFilter({ status: b.dataset.status, offset: 0 });
    });
  },
  setFilter(change) {
    Object.assign(this.filter, change);
    const params = new URLSearchParams();
    if (this.filter.status) params.set("status", this.filter.status);
    if (this.filter.q) params.set("q", this.filter.q);
    if (this.filter.offset) params.set("offset", String(this.filter.offset));
    const qs = params.toString();
    history.replaceState(null, "", location.pathname + (qs ? `?${qs}` : ""));
    refresh();
  },
  async refresh() {
    const n = encodeURIComponent(this.name);
    const f = this.filter;
    const page = new URLSearchParams({ offset: String(f.offset), limit: String(PAGE_SIZE) });
    if (f.status) page.set("status", f.status);
    if (f.q.trim()) page.set("q", f.q.trim());
    const wantHistory = Date.now() - this.historyAt > HISTORY_REFETCH_MS;
    const [ov, rooms, ops, plan, hist] = await Promise.all([
      api("/api/v1/overview"),
      maybe(`/api/v1/schedulers/${n}/rooms/page?${page}`),
      api(`/api/v1/operations?scheduler=${n}&limit=50`),
      maybe("/api/v1/plan"),
      wantHistory ? maybe(`/api/v1/schedulers/${n}/history`) : Promise.resolve(this.history),
    ]);
    if (wantHistory) { this.history = hist; this.historyAt = Date.now(); }
    const s = ov.schedulers.find((x) => x.name === this.name);
    $("#sc-body").hidden = !s || !rooms;
    if (!s || !rooms) {
      put("#sc-missing", `<div class="banner error">Scheduler <b>${esc(this.name)}</b> is not known: it is neither applied nor in the running revision. <a href="/" data-link>Back to the fleets</a></div>`);
      return;
    }
    put("#sc-missing", "");
    this.current = s;
    put("#sc-name", `${esc(s.name)} <small>${esc(s.game)} · version <code>${esc(s.version)}</code></small>`);
    put("#sc-sync", syncCell(s.sync));
    put("#sc-actions", s.suspended
      ? `<button data-resume="${esc(s.name)}">Resume git sync</button>`
      : `<button data-suspend="${esc(s.name)}">Suspend git sync</button>`);
    put("#sc-stats", `
      <div class="stat"><div class="label">Rooms</div><div class="value" id="sc-total">${s.totalRooms}</div><div class="sub">target ${targetText(s)}</div></div>
      <div class="stat"><div class="label">Ready</div><div class="value" id="sc-ready">${s.rooms.ready || 0}</div><div class="sub">free for a match</div></div>
      <div class="stat"><div class="label">Occupancy</div><div class="value">${pct(s.busyRooms, s.totalRooms)}%</div><div class="sub">${s.busyRooms} busy room${s.busyRooms === 1 ? "" : "s"}</div></div>
      <div class="stat"><div class="label">Matches</div><div class="value">${s.runningMatches}</div><div class="sub">running now</div></div>
      <div class="stat"><div class="label">Operations</div><div class="value">${(s.operations.pending || 0) + (s.operations.running || 0)}</div><div class="sub">pending or running</div></div>`);
    this.renderRooms(rooms);
    $("#sc-ops-count").textContent = `${ops.length}`;
    put("#sc-ops", opsTable(ops, false, openOps));
    const change = plan && plan.changes.find((c) => c.scheduler === this.name);
    put("#sc-plan", change ? changeHtml(change, false)
      : `<div class="muted">${plan ? "In sync with the running revision: nothing to change." : "No revision planned yet."}</div>`);
    const samples = (this.history ? this.history.samples : []).slice();
    samples.push({ at: Date.now(), rooms: rooms.counts, total: s.totalRooms, busy: s.busyRooms, runningMatches: s.runningMatches });
    put("#sc-chart", roomsChart(samples));
    put("#sc-occ-chart", occupancyChart(samples));
    const kept = this.history ? this.history.samples.length : 0;
    $("#sc-chart-note").textContent = this.history
      ? `a sample every ${this.history.intervalSeconds}s${kept < this.history.capacity ? `, ${kept} so far` : ""}` : "";
  },
  renderRooms(page) {
    const f = this.filter;
    const all = Object.values(page.counts).reduce((a, b) => a + b, 0);
    const chips = [`<button class="chip ${f.status ? "" : "on"}" data-status="">all ${all}</button>`]
      .concat(STATUSES.filter((s) => page.counts[s] || f.status === s).map((s) =>
        `<button class="chip ${f.status === s ? "on" : ""}" data-status="${s}">${s} ${page.counts[s] || 0}</button>`));
    put("#sc-chips", chips.join(" "));
    put("#rooms-summary", `<span id="rooms-total">${page.total}</span> ${f.status || f.q ? "matching" : "rooms"}`);
    const rows = page.rooms.map((r) => `<tr data-room="${esc(r.id)}">
      <td><code>${esc(r.id)}</code><div class="why">version <code>${esc(r.version)}</code></div></td>
      <td>${badge(r.status, r.status)}</td>
      <td class="mono">${esc(r.host || "—")}${r.ports.length ? `<div class="why">${r.ports.map((p) => `${esc(p.name)} ${p.port}/${esc(String(p.protocol).toLowerCase())}`).join(" · ")}</div>` : ""}</td>
      <td class="muted">${esc(age(r.createdAt))}</td>
      <td class="num">${r.runningMatches}</td>
      <td class="muted">${esc(r.lastPing ? ago(r.lastPing) : "never")}</td>
      <td class="why ${r.status === "error" ? "bad" : ""}">${esc(r.reason || "")}</td></tr>`).join("");
    put("#sc-rooms", page.rooms.length
      ? `<table id="rooms"><thead><tr><th>Room</th><th>Status</th><th>Address and ports</th><th>Age</th><th class="num">Matches</th><th>Last ping</th><th>Reason</th></tr></thead><tbody>${rows}</tbody></table>`
      : `<div class="empty">${all ? "No room matches the filter." : "No rooms."}</div>`);
    const first = page.total ? page.offset + 1 : 0;
    const last = Math.min(page.offset + page.rooms.length, page.total);
    $("#rooms-range").textContent = `${first}–${last} of ${page.total}`;
    $("#rooms-prev").disabled = page.offset === 0;
    $("#rooms-next").disabled = page.offset + page.limit >= page.total;
  },
};

// ---------- charts (inline SVG) ----------

/// Chart sizes in SVG units: the occupancy chart sits in a column half as wide, so it is drawn
/// half as wide to keep its labels the same size on screen.
const CHART_W = 640;
const OCC_W = 320;
const CHART_H = 200;
const PAD = { l: 36, r: 10, t: 10, b: 22 };
/// Layers of the rooms chart, bottom up.
const LAYERS = [
  { name: "busy", color: "var(--occupied)", of: (r) => (r.active || 0) + (r.occupied || 0) + (r.allocated || 0) },
  { name: "ready", color: "var(--ready)", of: (r) => r.ready || 0 },
  { name: "starting", color: "var(--pending)", of: (r) => (r.pending || 0) + (r.unready || 0) },
  { name: "terminating", color: "var(--terminating)", of: (r) => r.terminating || 0 },
  { name: "error", color: "var(--error)", of: (r) => r.error || 0 },
];

/// The time window: the last hour, or less while there is less history (10 minutes at least).
function window_(samples) {
  const now = Date.now();
  const first = samples.length ? samples[0].at : now;
  return [Math.max(now - 3600e3, Math.min(first, now - 600e3)), now];
}

function axes(width, x0, x1, yMax, yLabel) {
  const w = width - PAD.l - PAD.r;
  const h = CHART_H - PAD.t - PAD.b;
  let out = "";
  for (let i = 0; i <= 4; i++) {
    const y = PAD.t + h - (h * i) / 4;
    out += `<line class="grid" x1="${PAD.l}" x2="${PAD.l + w}" y1="${y}" y2="${y}"/>`;
    out += `<text class="axis" x="${PAD.l - 6}" y="${y + 4}" text-anchor="end">${yLabel((yMax * i) / 4)}</text>`;
  }
  const ticks = width < CHART_W ? 2 : 4;
  for (let i = 0; i <= ticks; i++) {
    const t = x0 + ((x1 - x0) * i) / ticks;
    const x = PAD.l + (w * i) / ticks;
    const label = new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    out += `<text class="axis" x="${x}" y="${CHART_H - 6}" text-anchor="${i === 0 ? "start" : i === ticks ? "end" : "middle"}">${label}</text>`;
  }
  return out;
}

function scaler(width, x0, x1, yMax) {
  const w = width - PAD.l - PAD.r;
  const h = CHART_H - PAD.t - PAD.b;
  return {
    x: (t) => (PAD.l + (w * (Math.max(t, x0) - x0)) / Math.max(1, x1 - x0)).toFixed(1),
    y: (v) => (PAD.t + h - (h * v) / yMax).toFixed(1),
  };
}

function niceMax(v) {
  if (v <= 4) return 4;
  const step = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= v) return m * step;
  return 10 * step;
}

function roomsChart(samples) {
  const [x0, x1] = window_(samples);
  const shown = samples.filter((s) => s.at >= x0);
  const yMax = niceMax(Math.max(1, ...shown.map((s) => Math.max(s.total, s.runningMatches))));
  const sc = scaler(CHART_W, x0, x1, yMax);
  let svg = axes(CHART_W, x0, x1, yMax, (v) => Math.round(v));
  const base = shown.map(() => 0);
  for (const layer of LAYERS) {
    const top = shown.map((s, i) => base[i] + layer.of(s.rooms));
    if (top.some((v, i) => v > base[i])) {
      const up = shown.map((s, i) => `${sc.x(s.at)},${sc.y(top[i])}`);
      const down = shown.map((s, i) => `${sc.x(s.at)},${sc.y(base[i])}`).reverse();
      svg += `<polygon points="${up.concat(down).join(" ")}" fill="${layer.color}" fill-opacity=".75"/>`;
    }
    top.forEach((v, i) => { base[i] = v; });
  }
  const line = shown.map((s) => `${sc.x(s.at)},${sc.y(s.runningMatches)}`).join(" ");
  svg += `<polyline points="${line}" fill="none" stroke="var(--matches)" stroke-width="2" stroke-dasharray="5 3"/>`;
  const legend = LAYERS.map((l) => `<span><i style="background:${l.color}"></i>${l.name}</span>`).join("")
    + `<span><i style="background:var(--matches)"></i>running matches</span>`;
  return `<svg class="chart" viewBox="0 0 ${CHART_W} ${CHART_H}" role="img" aria-label="Rooms by status over time">${svg}</svg><div class="legend">${legend}</div>`;
}

function occupancyChart(samples) {
  const [x0, x1] = window_(samples);
  const shown = samples.filter((s) => s.at >= x0);
  const sc = scaler(OCC_W, x0, x1, 100);
  let svg = axes(OCC_W, x0, x1, 100, (v) => `${Math.round(v)}%`);
  const pts = shown.map((s) => `${sc.x(s.at)},${sc.y(pct(s.busy, s.total))}`);
  const area = pts.concat([`${sc.x(shown[shown.length - 1].at)},${sc.y(0)}`, `${sc.x(shown[0].at)},${sc.y(0)}`]);
  svg += `<polygon points="${area.join(" ")}" fill="var(--occupied)" fill-opacity=".15"/>`;
  svg += `<polyline points="${pts.join(" ")}" fill="none" stroke="var(--occupied)" stroke-width="2"/>`;
  const now = shown[shown.length - 1];
  return `<svg class="chart" viewBox="0 0 ${OCC_W} ${CHART_H}" role="img" aria-label="Occupancy over time">${svg}</svg>
    <div class="legend"><span>now <b>${pct(now.busy, now.total)}%</b> (${now.busy} of ${now.total} rooms busy)</span></div>`;
}

// ---------- plan and revisions ----------

const planPage = {
  mount(view) {
    view.innerHTML = `
      <div id="pl-error"></div>
      <div class="card"><div class="head"><h2 style="margin:0">Pending plan <small id="pl-id"></small></h2><span class="spacer"></span><span id="pl-approve"></span></div>
        <div id="pl-summary"></div><div id="pl-changes"></div></div>
      <div class="card flush"><h2>Revisions <small>newest first</small></h2><div id="pl-revisions"></div></div>`;
  },
  async refresh() {
    const [plan, ov, rev, revisions] = await Promise.all([
      maybe("/api/v1/plan"), api("/api/v1/overview"), api("/api/v1/revision"), api("/api/v1/revisions"),
    ]);
    put("#pl-error", rev.error ? `<div class="banner error" id="revision-error">
        <b>The newest revision${rev.error.revision ? ` <code>${esc(rev.error.revision.slice(0, 16))}</code>` : ""} is rejected</b> — ${esc(rev.error.message)}
        ${locatedHtml(rev.error.errors)}</div>` : "");
    if (!plan) {
      $("#pl-id").textContent = "";
      put("#pl-summary", `<div class="muted">No revision planned yet.</div>`);
      put("#pl-changes", "");
      put("#pl-approve", "");
    } else {
      const sm = plan.summary;
      const actionable = plan.changes.filter((c) => c.action !== "orphan");
      put("#pl-id", `plan <code id="plan-id">${esc(plan.id)}</code>${plan.revision ? ` of revision <code>${esc(plan.revision.slice(0, 16))}</code>` : ""}`);
      const manual = ov.syncMode === "manual";
      put("#pl-approve", actionable.length
        ? `<button class="primary" id="approve" data-approve="${esc(plan.id)}">${manual ? "Approve plan" : "Apply now"}</button>` : "");
      put("#pl-summary", `<p>${actionable.length ? "" : "Nothing to change: live state is what the running revision declares. "}
        <b>${sm.create}</b> to create · <b>${sm.update}</b> to update in place · <b>${sm.rollout}</b> to roll out · <b>${sm.scale}</b> to scale ·
        <b>${sm.delete}</b> to delete · <b>${sm.converge}</b> to repair · <b>${sm.orphan}</b> orphaned;
        rooms: <b>${sm.roomsCreated}</b> created, <b>${sm.roomsReplaced}</b> replaced, <b>${sm.roomsRemoved}</b> removed, <b>${sm.busyKept}</b> busy kept.
        ${plan.inSync.length} in sync.</p>
        <p class="muted">${manual ? "Manual sync: changes wait for approval (repairs do not)." : "Automatic sync: changes apply as soon as they are planned; Apply now retries changes held after a failed or canceled operation."}</p>`);
      const syncs = new Map(ov.schedulers.map((x) => [x.name, x.sync]));
      put("#pl-changes", plan.changes.map((c) => changeHtml(c, true, syncs.get(c.scheduler))).join(""));
    }
    const running = rev.revision && rev.revision.id;
    put("#pl-revisions", revisions.length ? `<table id="revisions"><thead><tr><th>Revision</th><th>Commit</th><th>Seen</th><th class="num">Errors</th><th>Applied</th></tr></thead><tbody>${revisions.map((r) => `
      <tr data-revision="${esc(r.id)}"><td><code>${esc(r.id.slice(0, 16))}</code> ${r.id === running ? badge("inSync", "running") : ""}</td>
        <td>${esc(r.commit || "—")}</td><td class="muted">${esc(ago(r.seenAt))}</td>
        <td class="num">${r.errors ? `<span class="s-error"><b>${r.errors}</b></span>` : "0"}</td>
        <td class="muted">${r.appliedAt ? esc(ago(r.appliedAt)) : "never"}</td></tr>`).join("")}</tbody></table>`
      : `<div class="empty">No revision seen yet.</div>`);
  },
};

// ---------- routing, actions, live updates ----------

let page = null;

function route() {
  const path = location.pathname;
  const m = path.match(/^\/schedulers\/([^/]+)\/?$/);
  document.querySelectorAll("[data-nav]").forEach((a) => a.classList.remove("current"));
  const view = $("#view");
  if (m) {
    page = scheduler;
    scheduler.mount(view, decodeURIComponent(m[1]));
    document.title = `${decodeURIComponent(m[1])} · Troupe`;
  } else if (path === "/plan") {
    page = planPage;
    planPage.mount(view);
    $('[data-nav="plan"]').classList.add("current");
    document.title = "Plan & revisions · Troupe";
  } else {
    page = overview;
    overview.mount(view);
    $('[data-nav="overview"]').classList.add("current");
    document.title = "Fleets · Troupe";
  }
  refresh();
}

let refreshing = false;
let again = false;
async function refresh() {
  if (refreshing) { again = true; return; }
  refreshing = true;
  try {
    const current = page;
    await Promise.all([renderRevision(), current.refresh()]);
    document.body.dataset.loaded = String(Date.now());
  } catch (e) {
    toast(`Cannot reach the server: ${e.message}`, true);
  } finally {
    refreshing = false;
    if (again) { again = false; refresh(); }
  }
}

document.addEventListener("click", (ev) => {
  const link = ev.target.closest("a[data-link]");
  if (link && !ev.metaKey && !ev.ctrlKey && !ev.shiftKey && ev.button === 0) {
    ev.preventDefault();
    if (link.getAttribute("href") !== location.pathname + location.search) {
      history.pushState(null, "", link.getAttribute("href"));
      route();
    }
    return;
  }
  const b = ev.target.closest("button");
  if (!b) return;
  if (b.dataset.cancel) {
    ev.preventDefault();
    write(`/api/v1/operations/${encodeURIComponent(b.dataset.cancel)}/cancel`, undefined, `Cancel of ${b.dataset.cancel} requested`);
  } else if (b.dataset.approve) {
    write("/api/v1/plan/apply", { planId: b.dataset.approve }, `Plan ${b.dataset.approve} applied`);
  } else if (b.dataset.suspend) {
    write(`/api/v1/schedulers/${encodeURIComponent(b.dataset.suspend)}/suspend`, undefined, `${b.dataset.suspend}: git sync suspended`);
  } else if (b.dataset.resume) {
    write(`/api/v1/schedulers/${encodeURIComponent(b.dataset.resume)}/resume`, undefined, `${b.dataset.resume}: git sync resumed`);
  }
});
window.addEventListener("popstate", route);

function showToken() {
  const set = Boolean(token());
  $("#token").value = "";
  $("#token").placeholder = set ? "API token set for this tab" : "API token (for writes)";
  $("#token-clear").hidden = !set;
}
$("#token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const t = $("#token").value.trim();
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  showToken();
  toast(t ? "API token kept for this tab" : "No token entered");
});
$("#token-clear").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  showToken();
});

let poller = null;
function setLive(cls, text) {
  const el = $("#live");
  el.className = `live ${cls}`;
  el.textContent = text;
}
function startPolling() {
  if (poller) return;
  setLive("polling", "polling every 2s");
  poller = setInterval(refresh, POLL_MS);
}
function stopPolling() {
  clearInterval(poller);
  poller = null;
}
function connect() {
  if (!window.EventSource) { startPolling(); return; }
  const es = new EventSource("/api/v1/events");
  es.onopen = () => { stopPolling(); setLive("on", "live"); refresh(); };
  es.onmessage = () => refresh();
  // The browser reconnects by itself; poll meanwhile so the page never goes stale.
  es.onerror = () => startPolling();
}

showToken();
route();
connect();
