// ingestd dashboard: plain JS, no build step, no network beyond this server.
// Reads /v1/dashboard/* (admin session cookie), stays live through the SSE stream
// /v1/dashboard/events (a "change" whenever jobs move; polling only while it is down),
// draws its charts as SVG. Every text goes through textContent (never innerHTML).
"use strict";

const API = "/v1/dashboard";
const STATES = ["uploaded", "parse_queued", "parsed", "parse_validated", "chunking",
  "chunks_stored", "embedding_queued", "embedding_in_progress", "embeddings_stored", "complete",
  "failed_parse", "failed_chunking", "failed_embedding", "cancelled"];
const COLORS = ["#0b4fa8", "#a30d0d", "#14622b", "#7a4b00", "#6a1b9a", "#00695c", "#ad1457",
  "#37474f", "#1565c0", "#8d6e00"];
const $ = (id) => document.getElementById(id);

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v; else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

function fill(el, nodes) { el.replaceChildren(...nodes); }
function ago(iso) {
  if (!iso) return "";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  return s < 90 ? `${Math.round(s)} s ago` : s < 5400 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`;
}
function jobLink(id, text) { return h("a", { href: `#/jobs/${id}` }, text || id.slice(0, 8)); }

class Unauthorized extends Error {}

async function getJSON(path) {
  const res = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (res.status === 401 || res.status === 403) throw new Unauthorized();
  if (!res.ok) throw new Error(`${path}: ${res.status}`);
  return res.json();
}

// -- sign in ---------------------------------------------------------------------------------

function showLogin(message) {
  $("login").hidden = false; $("overview").hidden = true; $("job").hidden = true;
  $("logout").hidden = true;
  $("login-error").textContent = message || "";
  $("connection").textContent = "signed out";
  $("api-key").focus();
}

async function signIn(event) {
  event.preventDefault();
  const res = await fetch(`${API}/session`, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ key: $("api-key").value }),
  });
  $("api-key").value = "";
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    showLogin((body.error && body.error.message) || "That key was not accepted.");
    return;
  }
  $("login").hidden = true;
  start();
}

async function signOut() {
  await fetch(`${API}/session`, { method: "DELETE", credentials: "same-origin" });
  if (live.source) live.source.close();
  showLogin("Signed out.");
}

// -- overview --------------------------------------------------------------------------------

function renderStates(fleet) {
  const counts = fleet.jobs_by_state;
  fill($("states"), STATES.filter((s) => counts[s] || !s.startsWith("failed") && s !== "cancelled")
    .map((s) => h("li", { class: s.startsWith("failed") ? "failed" : s },
      h("a", { href: "#jobs", "data-state": s, id: `count-${s}` },
        h("strong", {}, String(counts[s] || 0)), s.replaceAll("_", " ")))));
  const oldest = fleet.oldest_runnable_seconds;
  $("queue").textContent = `${fleet.runnable} runnable, ${fleet.leased} in progress, ` +
    `${fleet.waiting_retry} waiting to retry, ${fleet.lease_expired} with an expired lease; ` +
    `oldest runnable job due ${oldest ? Math.round(oldest) + " s" : "—"} ago.`;
}

function renderAlerts(alerts) {
  alerts = [...alerts].sort((a, b) => b.firing - a.firing);
  const firing = alerts.filter((a) => a.firing);
  const badge = $("alert-badge");
  badge.hidden = firing.length === 0;
  badge.firstElementChild.textContent = `${firing.length} alert(s) firing`;
  badge.firstElementChild.className = "firing";
  if (!alerts.length) { fill($("alert-list"), [h("li", { class: "muted" }, "not evaluated yet")]); return; }
  fill($("alert-list"), alerts.map((a) => h("li", {},
    h("span", { class: a.firing ? "firing" : "ok" }, a.firing ? "FIRING " : "ok "),
    h("strong", {}, a.name), " — ", a.summary || "", " ",
    h("span", { class: "muted" }, `(evaluated ${ago(a.evaluated_at)}) `),
    h("span", { class: "muted" }, "runbook: "), h("code", {}, a.runbook || ""))));
}

function renderWorkers(workers) {
  const rows = workers.map((w) => h("tr", {},
    h("td", {}, w.id),
    h("td", { class: w.liveness }, w.liveness),
    h("td", {}, ago(w.heartbeat_at)),
    h("td", {}, w.holds.length ? w.holds.map((j, i) => [i ? ", " : "", jobLink(j.job_id), ` ${j.state}`]) : "—",
      w.holds_total > w.holds.length ? ` +${w.holds_total - w.holds.length}` : "")));
  fill($("workers").tBodies[0], rows.length ? rows : [h("tr", {}, h("td", { colspan: 4 }, "no workers registered"))]);
}

function renderTraffic(summary) {
  const u = summary.fleet.usage || {};
  const pairs = [["Embedding tokens", Number(u.embedding_tokens || 0).toLocaleString()],
    ["Pages parsed", Number(u.parse_pages || 0).toLocaleString()],
    ["Spend (USD)", (Number(u.embedding_cost_usd || 0) + Number(u.parse_cost_usd || 0)).toFixed(4)]];
  const t = summary.traffic || {};
  const none = (n) => [h("tr", {}, h("td", { colspan: n, class: "muted" }, "none"))];
  const br = (t.breakers || []).map((b) => h("tr", {}, h("td", {}, b.service),
    h("td", { class: b.state === "closed" ? "ok" : "open" }, b.state.replace("_", "-"))));
  const parked = Object.entries(t.parked || {});
  if (parked.length) pairs.push(["Parked jobs", parked.map(([k, v]) => `${v} on ${k}`).join(", ")]);
  fill($("spend"), pairs.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  fill($("breakers").tBodies[0], br.length ? br : none(2));
  const li = (t.limits || []).map((l) => h("tr", {}, h("td", {}, l.name), h("td", { class: "num" }, l.per_minute), h("td", {}, l.paused_until || "—")));
  fill($("limits").tBodies[0], li.length ? li : none(3));
  const bu = (t.budgets || []).map((b) => h("tr", {}, h("td", {}, `${b.name} (${b.unit})`),
    h("td", { class: b.spent >= b.cap ? "num open" : "num" }, Number(b.spent).toLocaleString()),
    h("td", { class: "num" }, Number(b.cap).toLocaleString())));
  fill($("budgets").tBodies[0], bu.length ? bu : none(3));
}

function renderFailures(failures) {
  fill($("failures"), failures.length ? failures.map((f) => h("li", {},
    jobLink(f.id, f.filename), " ", h("span", { class: "error" }, f.code || f.state), " — ",
    f.message || "", " ", h("span", { class: "muted" }, ago(f.completed_at)))) :
    [h("li", { class: "muted" }, "no failures")]);
}

// -- charts (SVG) ----------------------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function lineChart(el, lines, minutes, label) {
  const W = 600, H = 180, L = 44, B = 20, T = 8;
  const end = Date.now(), startT = end - minutes * 60000;
  const max = Math.max(1, ...lines.flatMap((l) => l.points.map((p) => p.v)));
  const x = (t) => L + (W - L - 4) * (Date.parse(t) - startT) / (end - startT);
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label, preserveAspectRatio: "none" },
    s("title", {}, label),
    s("line", { class: "axis", x1: L, y1: H - B, x2: W, y2: H - B }),
    s("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }),
    s("text", { x: L - 4, y: T + 10, "text-anchor": "end" }, Math.round(max)),
    s("text", { x: L - 4, y: H - B, "text-anchor": "end" }, "0"),
    s("text", { x: L, y: H - 4 }, `-${minutes} min`),
    s("text", { x: W - 4, y: H - 4, "text-anchor": "end" }, "now"));
  lines.forEach((line, i) => {
    if (!line.points.length) return;
    const color = line.color || COLORS[i % COLORS.length];
    const d = line.points.map((p, j) => `${j ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join("");
    svg.append(s("path", { d, fill: "none", stroke: color, "stroke-width": 2 }));
    // A dot per minute: a lone minute still shows, and each point is a tooltip.
    for (const p of line.points) {
      svg.append(s("circle", { cx: x(p.t).toFixed(1), cy: y(p.v).toFixed(1), r: 3, fill: color },
        s("title", {}, `${line.name}: ${p.v} at ${p.t.slice(11, 16)} UTC`)));
    }
  });
  const legend = h("ul", { class: "legend" }, lines.map((line, i) =>
    h("li", {}, h("span", { style: `background:${line.color || COLORS[i % COLORS.length]}` }), line.name)));
  fill(el, lines.some((l) => l.points.length) ? [svg, legend] : [h("p", { class: "muted" }, "no data in this window")]);
}

function renderCharts(series) {
  const failedTotal = {};
  for (const pts of Object.values(series.failed)) for (const p of pts) failedTotal[p.t] = (failedTotal[p.t] || 0) + p.v;
  const failedPts = Object.entries(failedTotal).sort().map(([t, v]) => ({ t, v }));
  const done = series.completed.reduce((a, p) => a + p.v, 0);
  lineChart($("throughput-chart"), [{ name: "completed / min", points: series.completed, color: COLORS[2] },
    { name: "failed / min", points: failedPts, color: COLORS[1] }], series.minutes,
    `${done} documents completed in the last ${series.minutes} minutes`);
  lineChart($("latency-chart"), Object.entries(series.latency_ms).map(([name, points]) => ({ name, points })),
    series.minutes, "Mean stage latency per minute, by stage");
  lineChart($("errors-chart"), Object.entries(series.failed).map(([name, points]) => ({ name, points })),
    series.minutes, "Failures per minute, by error code");
}

// -- jobs table ------------------------------------------------------------------------------

const table = { next: null, filters: {} };

function filtersFromForm() {
  const data = new FormData($("job-filters"));
  return Object.fromEntries([...data.entries()].filter(([, v]) => v));
}

async function loadJobs(append) {
  const params = new URLSearchParams(table.filters);
  if (append && table.next) params.set("before", table.next);
  const page = await getJSON(`${API}/jobs?${params}`);
  const rows = page.jobs.map((j) => h("tr", {},
    h("td", {}, jobLink(j.id, j.filename)), h("td", {}, j.state), h("td", { class: j.code ? "error" : "" }, j.code || ""),
    h("td", {}, j.owner), h("td", {}, ago(j.created_at))));
  const body = $("jobs").tBodies[0];
  if (append) body.append(...rows);
  else fill(body, rows.length ? rows : [h("tr", {}, h("td", { colspan: 5, class: "muted" }, "no jobs match"))]);
  table.next = page.next;
  $("more").hidden = !page.next;
}

async function loadChoices() {
  const c = await getJSON(`${API}/choices`);
  fill($("codes"), c.codes.map((code) => h("option", { value: code })));
  fill($("owners"), c.owners.map((o) => h("option", { value: o })));
}

// -- job page --------------------------------------------------------------------------------

async function showJob(id) {
  $("overview").hidden = true; $("job").hidden = false;
  let job;
  try { job = await getJSON(`${API}/jobs/${encodeURIComponent(id)}`); } catch (e) {
    if (e instanceof Unauthorized) return showLogin();
    $("job-title").textContent = "Job not found"; fill($("job-facts"), []); return;
  }
  $("job-title").textContent = `Job ${job.filename}`;
  const facts = [["Job id", job.id], ["Document", job.document_id], ["Owner", job.owner], ["State", job.state],
    ["Attempt", job.attempt], ["Retries of this stage", job.retry_count], ["Correlation id", job.correlation_id],
    ["Media type", job.media_type], ["Size", `${job.size_bytes} bytes`], ["Chunks", job.chunk_count ?? "—"],
    ["Model", job.embedding_model || "—"], ["Held by", job.lease_owner || "—"], ["Created", job.created_at],
    ["Finished", job.completed_at || "—"]];
  fill($("job-facts"), facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]));
  $("job-error").textContent = job.last_error ? JSON.stringify(job.last_error, null, 2) : "none";
  const t0 = job.events.length ? Date.parse(job.events[0].created_at) : 0;
  fill($("timeline"), job.events.map((e) => h("li", {},
    h("time", { datetime: e.created_at, title: e.created_at },
      `+${((Date.parse(e.created_at) - t0) / 1000).toFixed(2)} s`), " ", h("strong", {}, e.kind), " ",
    `${e.from_state} → ${e.to_state}`, e.duration_ms != null ? ` (${e.duration_ms} ms)` : "",
    e.worker_id ? ` by ${e.worker_id}` : "", e.error ? h("span", { class: "error" }, ` ${e.error.code}: ${e.error.message || ""}`) : "")));
  const usage = Object.entries(job.usage || {});
  fill($("job-usage"), usage.length ? usage.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]) : [h("dt", {}, "none"), h("dd", {}, "")]);
  fill($("chunks"), job.chunks.map((c) => h("li", {}, `${c.token_count} tokens`, c.page ? `, page ${c.page}` : "", ": ", h("span", { class: "muted" }, c.preview))));
  $("job-title").focus?.();
}

// -- live updates ----------------------------------------------------------------------------

const live = { source: null, timer: null, poll: null, charts: null, rendered: 0, slowAt: 0, refreshedAt: 0 };

function render(summary) {
  renderStates(summary.fleet); renderAlerts(summary.alerts); renderWorkers(summary.workers);
  renderTraffic(summary); renderFailures(summary.latest_failures);
  live.rendered = Date.now();
  document.body.dataset.updated = String(live.rendered);
}

async function refresh() {
  try {
    render(await getJSON(`${API}/summary`));
  } catch (e) {
    if (e instanceof Unauthorized) return showLogin();
    $("connection").textContent = "server unreachable, retrying";
  }
}

async function refreshSlow() {
  try {
    renderCharts(await getJSON(`${API}/series?minutes=60`));
  } catch (e) { if (e instanceof Unauthorized) showLogin(); }
}

// A change after a quiet moment is shown at once; a stream of changes (a busy drain) refreshes
// the summary at most four times a second, not once per change.
const REFRESH_EVERY_MS = 250;

function scheduleRefresh() {
  if (live.timer) return;
  const wait = Math.max(0, live.refreshedAt + REFRESH_EVERY_MS - Date.now());
  live.timer = setTimeout(() => {
    live.timer = null;
    live.refreshedAt = Date.now();
    refresh();
    // The charts and the table move too, but at most every 5 s.
    if (Date.now() - live.slowAt > 5000) { live.slowAt = Date.now(); refreshSlow(); loadJobsIfFirstPage(); }
  }, wait);
}

function loadJobsIfFirstPage() {
  if ($("jobs").tBodies[0].rows.length <= 50) loadJobs(false).catch(() => {});
}

function connect() {
  if (live.source) live.source.close();
  const source = new EventSource(`${API}/events`);
  live.source = source;
  source.onopen = () => { $("connection").textContent = "live"; };
  source.addEventListener("change", scheduleRefresh);
  source.onerror = () => { $("connection").textContent = "reconnecting (updates every 5 s)"; };
}

// -- routing ---------------------------------------------------------------------------------

function route() {
  const m = location.hash.match(/^#\/jobs\/([0-9a-f-]{36})$/);
  if (m) return showJob(m[1]);
  $("job").hidden = true; $("overview").hidden = false;
  if (location.hash === "#jobs" || location.hash === "#alerts") $(location.hash.slice(1)).scrollIntoView();
}

// The summary the server put in the page for a signed-in browser (used once): the first paint
// shows the counts without waiting for a request.
function initialSummary() {
  const el = $("initial-summary");
  if (!el) return null;
  el.remove();
  try { return JSON.parse(el.textContent); } catch (e) { return null; }
}

async function start(initial) {
  if (initial) render(initial);
  else { try { await refresh(); } catch (e) { return; } }
  if (!$("login").hidden) return;
  $("logout").hidden = false;
  route();
  refreshSlow(); loadJobs(false).catch(() => {}); loadChoices().catch(() => {});
  connect();
  clearInterval(live.poll);
  // Charts every 15 s; the summary too, but only while the event stream is down.
  live.poll = setInterval(() => {
    if (!live.source || live.source.readyState !== EventSource.OPEN) refresh();
  }, 5000);
  clearInterval(live.charts);
  live.charts = setInterval(refreshSlow, 15000);
}

function init() {
  const select = $("f-state");
  for (const st of STATES) select.append(h("option", { value: st }, st.replaceAll("_", " ")));
  $("login-form").addEventListener("submit", signIn);
  $("logout").addEventListener("click", signOut);
  $("job-filters").addEventListener("submit", (e) => { e.preventDefault(); table.filters = filtersFromForm(); loadJobs(false); });
  $("job-filters").addEventListener("reset", () => { table.filters = {}; setTimeout(() => loadJobs(false)); });
  $("more").addEventListener("click", () => loadJobs(true));
  $("states").addEventListener("click", (e) => {
    const a = e.target.closest("a[data-state]");
    if (!a) return;
    $("f-state").value = a.dataset.state; table.filters = filtersFromForm(); loadJobs(false);
  });
  window.addEventListener("hashchange", route);
  start(initialSummary());
}

document.addEventListener("DOMContentLoaded", init);
