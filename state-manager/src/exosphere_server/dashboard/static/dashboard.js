// Exosphere dashboard: live run graph and state page. Plain ES module, no build step, no dependencies.
// The server draws everything; this file only recolours nodes, lists states on demand and calls retry.

// Phases, their labels and order, and which statuses a person may retry come from the server's state
// machine (exospherehost.statuses), rendered into the page by base.html: this file lists no status.
const STATUSES = JSON.parse(document.getElementById("statuses").textContent);
const PHASES = STATUSES.phases; // the order of a node's stacked bar
const LABELS = STATUSES.labels;
const SUMMARY_ORDER = STATUSES.priority; // failures first: they must not be cut off
const CSRF = { "x-exosphere-dashboard": "1" };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  return node;
}

async function getJSON(url, options = {}) {
  const response = await fetch(url, { credentials: "same-origin", ...options });
  if (response.status === 401) { window.location.assign("/dashboard/login?next=" + encodeURIComponent(location.pathname)); throw new Error("logged out"); }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(typeof body.detail === "string" ? body.detail : `HTTP ${response.status}`);
  return body;
}

/** Dollars with the digits that matter ($12.34, $0.0031), as the server's `usd` filter writes them. */
function usd(dollars) {
  if (dollars >= 1) return `$${dollars.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
  return `$${Number(dollars.toPrecision(4))}`;
}

function summary(phases) {
  const parts = SUMMARY_ORDER.filter((p) => phases[p]).map((p) => `${phases[p]} ${LABELS[p]}`);
  return parts.length ? parts.slice(0, 3).join(" · ") : "no states yet";
}

function badge(status, phase) {
  return el("span", { class: `badge p-${phase}` }, status);
}

// Follow a run over server-sent events; `onProgress` gets each new per-node count snapshot.
function follow(url, liveEl, onProgress) {
  const source = new EventSource(url);
  const mark = (state, text) => { if (liveEl) { liveEl.dataset.live = state; liveEl.textContent = text; } };
  source.addEventListener("open", () => mark("connected", "live"));
  source.addEventListener("progress", (event) => { mark("connected", "live"); onProgress(JSON.parse(event.data)); });
  source.addEventListener("gone", () => { source.close(); mark("lost", "run deleted"); });
  source.addEventListener("error", () => mark(source.readyState === EventSource.CLOSED ? "lost" : "connecting",
    source.readyState === EventSource.CLOSED ? "updates stopped (reload)" : "reconnecting…"));
  window.addEventListener("pagehide", () => source.close());
  return source;
}

// -- run page ------------------------------------------------------------------------------------

// The run page's cancel button: asks for confirmation, then cancels; the live view shows the result.
function initCancel(root) {
  const button = document.getElementById("cancel-run");
  if (!button) return;
  button.addEventListener("click", async () => {
    if (!window.confirm(`Cancel run ${root.dataset.runId}? Its unfinished states end CANCELLED and running nodes are stopped.`)) return;
    const result = document.getElementById("cancel-result");
    button.disabled = true;
    result.textContent = "cancelling…";
    try {
      const body = await getJSON(root.dataset.cancelUrl, {
        method: "POST",
        headers: { "content-type": "application/json", ...CSRF },
        body: JSON.stringify({ reason: "cancelled from the dashboard" }),
      });
      result.textContent = `Cancelled: ${body.cancelled_states} state${body.cancelled_states === 1 ? "" : "s"}`;
    } catch (error) {
      result.textContent = `Cancel refused: ${error.message}`;
      result.className = "problem";
      button.disabled = false;
    }
  });
  button.disabled = false; // rendered disabled: clickable only once this handler is in place
}

function initRun(root) {
  initCancel(root);
  const svg = document.getElementById("graph");
  const panel = document.getElementById("node-panel");
  const statusSelect = document.getElementById("node-status");
  const barWidth = Number(svg.querySelector(".track")?.getAttribute("width") || 194);
  let selected = null, page = 1, pages = 1, lastSelectedCounts = "";

  function applyNode(g, view) {
    const phase = view ? view.phase : "none";
    const phases = view ? view.phases : {};
    const total = view ? view.total : 0;
    g.dataset.phase = phase;
    g.dataset.total = String(total);
    for (const cls of [...g.classList]) if (cls.startsWith("phase-")) g.classList.remove(cls);
    g.classList.add(`phase-${phase}`);
    g.querySelector('[data-role="counts"]').textContent = view ? summary(phases) : "no states yet";
    const fanout = total - (phases.retried || 0);
    g.querySelector('[data-role="fanout"]').textContent = fanout > 1 ? `×${fanout}` : "";
    let x = 0;
    for (const p of PHASES) {
      const width = total ? (barWidth * (phases[p] || 0)) / total : 0;
      const seg = g.querySelector(`[data-seg="${p}"]`);
      seg.setAttribute("x", x.toFixed(1));
      seg.setAttribute("width", width.toFixed(1));
      x += width;
    }
  }

  function applyUsage(usage) {
    const card = document.getElementById("usage-card");
    const cells = (u) => [u.input_tokens, u.output_tokens, u.requests].map((n) => n.toLocaleString("en-US")).concat(usd(u.cost_usd));
    const rows = Object.entries(usage.nodes).map(([identifier, u]) =>
      el("tr", { "data-usage-node": identifier }, el("td", {}, identifier), ...cells(u).map((c) => el("td", { class: "num" }, c))),
    );
    card.querySelector("tbody").replaceChildren(...rows);
    const total = card.querySelector("[data-usage-total]");
    cells(usage.total).forEach((c, i) => { total.children[i + 1].textContent = c; });
    card.hidden = rows.length === 0;
  }

  function apply(view) {
    const status = document.getElementById("run-status");
    status.textContent = view.status;
    status.dataset.status = view.status;
    status.className = `badge r-${view.status.toLowerCase()}`;
    const cancel = document.getElementById("cancel-run");
    if (cancel && view.status !== "PENDING") cancel.disabled = true; // finished: nothing left to cancel
    for (const p of PHASES) root.querySelector(`[data-total="${p}"]`).textContent = view.phases[p];
    root.querySelector('[data-total="all"]').textContent = view.total;
    const took = document.getElementById("run-duration");
    if (took && view.finished_at != null) {
      took.dataset.finished = String(view.finished_at);
      took.textContent = `took ${formatMs(view.finished_at - view.created_at)}`;
    } else if (took && view.finished) {
      took.dataset.finished = "pending"; // the live counts do not hold the end: the timeline's last bar does
    } else if (took) {
      took.dataset.finished = "";
      took.textContent = "in progress";
    }
    if (view.usage) applyUsage(view.usage);
    for (const g of svg.querySelectorAll("g.node")) applyNode(g, view.nodes[g.dataset.node]);
    if (selected) {
      const counts = JSON.stringify(view.nodes[selected]?.by_status || {});
      if (counts !== lastSelectedCounts) { lastSelectedCounts = counts; loadStates(); }
    }
  }

  async function loadStates() {
    const params = new URLSearchParams({ page: String(page), size: "50" });
    if (statusSelect.value) params.set("status", statusSelect.value);
    const body = await getJSON(`${root.dataset.statesUrl}${encodeURIComponent(selected)}/states?${params}`);
    pages = body.pages;
    document.getElementById("node-panel-total").textContent = `${body.total} state${body.total === 1 ? "" : "s"}`;
    document.getElementById("node-page").textContent = `page ${body.page} of ${body.pages}`;
    document.getElementById("node-prev").disabled = body.page <= 1;
    document.getElementById("node-next").disabled = body.page >= body.pages;
    const rows = body.states.map((s) => el("tr", { "data-state": s.id, "data-status": s.status },
      el("td", {}, el("a", { href: s.url }, el("code", {}, s.id))),
      el("td", {}, badge(s.status, s.phase)),
      el("td", { class: "num" }, s.retry_count),
      el("td", { class: "num" }, s.attempts),
      el("td", {}, s.created_at),
      el("td", {}, s.updated_at),
      el("td", { class: "problem" }, s.error || "")));
    panel.querySelector("tbody").replaceChildren(...rows);
  }

  function open(identifier) {
    selected = identifier; page = 1; lastSelectedCounts = "";
    for (const g of svg.querySelectorAll("g.node")) g.classList.toggle("selected", g.dataset.node === identifier);
    document.getElementById("node-panel-title").textContent = identifier;
    panel.hidden = false;
    loadStates().catch((error) => { document.getElementById("node-panel-total").textContent = error.message; });
  }

  for (const g of svg.querySelectorAll("g.node")) {
    g.addEventListener("click", () => open(g.dataset.node));
    g.addEventListener("keydown", (event) => { if (event.key === "Enter" || event.key === " ") { event.preventDefault(); open(g.dataset.node); } });
  }
  statusSelect.addEventListener("change", () => { page = 1; loadStates(); });
  document.getElementById("node-prev").addEventListener("click", () => { if (page > 1) { page -= 1; loadStates(); } });
  document.getElementById("node-next").addEventListener("click", () => { if (page < pages) { page += 1; loadStates(); } });
  const timeline = document.getElementById("timeline-card");
  const refreshTimeline = timeline ? initTimeline(timeline) : () => {};
  follow(root.dataset.eventsUrl, document.getElementById("live"), (view) => { apply(view); refreshTimeline(); });
}

// -- run timeline --------------------------------------------------------------------------------
// One bar per attempt (claim to result), one row per template node in the order the run reached them.
// A node's overlapping attempts are packed into lanes; a fan-out of thousands folds its lanes so the
// row stays at most TIMELINE_ROW_MAX pixels high: every bar keeps at least a pixel, none is dropped.

const SVG_NS = "http://www.w3.org/2000/svg";
const TIMELINE_LABEL = 190, TIMELINE_ROW_MAX = 160, TIMELINE_AXIS = 22;

function svgEl(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function formatMs(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  return `${(ms / 60_000).toFixed(1)} min`;
}

// Lanes for one node's attempts (sorted by start): each goes in the first lane free at its start.
function packLanes(attempts, now) {
  const laneEnds = [];
  const lanes = attempts.map((a) => {
    let lane = laneEnds.findIndex((laneEnd) => laneEnd <= a.start);
    if (lane < 0) lane = laneEnds.length;
    laneEnds[lane] = a.end ?? now;
    return lane;
  });
  return { lanes, count: Math.max(1, laneEnds.length) };
}

function drawTimeline(svg, note, body) {
  const now = body.now;
  const t0 = body.created_at;
  const groups = new Map();
  for (const a of body.attempts) {
    if (!groups.has(a.identifier)) groups.set(a.identifier, []);
    groups.get(a.identifier).push(a);
  }
  const tEnd = Math.max(t0 + 1, ...body.attempts.map((a) => a.end ?? now));
  const width = Math.max(600, svg.parentElement.clientWidth || 1000);
  const plot = width - TIMELINE_LABEL - 12;
  const x = (t) => TIMELINE_LABEL + (plot * (t - t0)) / (tEnd - t0);
  const children = [];
  let y = 0, row = 0;
  for (const [identifier, attempts] of groups) {
    const placed = packLanes(attempts, now);
    const lanes = placed.count;
    const laneHeight = Math.max(1, Math.min(14, Math.floor(TIMELINE_ROW_MAX / lanes)));
    const shown = Math.min(lanes, Math.floor(TIMELINE_ROW_MAX / laneHeight));
    const height = shown * laneHeight + 8;
    const group = svgEl("g", { class: "lane", "data-node": identifier, "data-attempts": attempts.length, "data-lanes": lanes });
    group.append(svgEl("rect", { class: `row-bg${row % 2 ? " odd" : ""}`, x: 0, y, width, height }));
    group.append(svgEl("text", { class: "lane-label", x: 6, y: y + 15 }, identifier));
    group.append(svgEl("text", { class: "lane-count", x: 6, y: y + 29 }, `${attempts.length} attempt${attempts.length === 1 ? "" : "s"}`));
    attempts.forEach((a, i) => {
      const end = a.end ?? now;
      const bar = svgEl("rect", {
        class: `bar p-${a.phase}`, "data-state": a.id, "data-status": a.status, "data-url": a.url,
        x: x(a.start).toFixed(1), y: y + 4 + (placed.lanes[i] % shown) * laneHeight,
        width: Math.max(1, x(end) - x(a.start)).toFixed(1), height: Math.max(1, laneHeight - (laneHeight > 3 ? 1 : 0)),
      });
      const ran = `${a.end === null ? "running for" : "ran"} ${formatMs(end - a.start)}`;
      bar.append(svgEl("title", {}, `${identifier} ${a.id} ${a.status}, ${ran}${a.retry_count ? `, retry #${a.retry_count}` : ""}${a.runtime ? ` on ${a.runtime}` : ""}${a.error ? `: ${a.error}` : ""}`));
      group.append(bar);
    });
    children.push(group);
    y += height;
    row += 1;
  }
  const axis = svgEl("g", { class: "axis" });
  for (let i = 0; i <= 5; i += 1) {
    const t = t0 + ((tEnd - t0) * i) / 5;
    axis.append(svgEl("line", { class: "tick", x1: x(t), x2: x(t), y1: 0, y2: y + 4 }));
    axis.append(svgEl("text", { class: "tick-label", x: x(t), y: y + 16, "text-anchor": i === 5 ? "end" : i === 0 ? "start" : "middle" }, `+${formatMs(t - t0)}`));
  }
  svg.replaceChildren(axis, ...children);
  svg.setAttribute("height", String(y + TIMELINE_AXIS));
  svg.setAttribute("viewBox", `0 0 ${width} ${y + TIMELINE_AXIS}`);
  svg.dataset.bars = String(body.attempts.length);
  const took = document.getElementById("run-duration");
  const lastEnd = Math.max(0, ...body.attempts.map((a) => a.end ?? 0));
  if (took && took.dataset.finished === "pending" && lastEnd) {
    took.dataset.finished = String(lastEnd);
    took.textContent = `took ${formatMs(lastEnd - body.created_at)}`;
  }
  note.textContent = body.attempts.length === 0 ? "no attempt has started yet"
    : body.total > body.attempts.length ? `the first ${body.attempts.length} of ${body.total} attempts` : `${body.total} attempt${body.total === 1 ? "" : "s"}`;
}

function initTimeline(card) {
  const svg = document.getElementById("timeline");
  const note = document.getElementById("timeline-note");
  let inFlight = false, again = false;
  async function refresh() {
    if (inFlight) { again = true; return; }
    inFlight = true;
    try { drawTimeline(svg, note, await getJSON(card.dataset.timelineUrl)); }
    catch (error) { note.textContent = error.message; }
    finally {
      inFlight = false;
      // Progress that came during the request is drawn by one more request, not by one per event.
      if (again) { again = false; setTimeout(refresh, 250); }
    }
  }
  svg.addEventListener("click", (event) => { const url = event.target.dataset?.url; if (url) window.location.assign(url); });
  return refresh;
}

// -- state page ----------------------------------------------------------------------------------

function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16)); // also works outside secure contexts
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function initState(root) {
  const table = document.querySelector("#attempts tbody");
  let pending = null;

  async function refresh() {
    const body = await getJSON(root.dataset.attemptsUrl);
    const own = document.getElementById("state-status");
    own.textContent = body.state.status;
    own.dataset.status = body.state.status;
    own.className = `badge p-${body.state.phase}`;
    const rows = body.attempts.map((a) => el("tr", { "data-state": a.id, "data-status": a.status, class: a.id === root.dataset.stateId ? "current" : "" },
      el("td", {}, el("a", { href: a.url }, el("code", {}, a.id)), a.id === root.dataset.stateId ? " (this one)" : ""),
      el("td", {}, badge(a.status, a.phase)),
      el("td", { class: "num" }, a.retry_count),
      el("td", { class: "num" }, a.attempts),
      el("td", {}, a.created_at),
      el("td", {}, a.error || "")));
    table.replaceChildren(...rows);
    const retry = document.getElementById("retry");
    if (retry && !STATUSES.retryable_by_hand.includes(body.state.status)) retry.disabled = true;
  }

  // Coalesce bursts of progress events into one attempts request.
  const refreshSoon = () => { if (!pending) pending = setTimeout(() => { pending = null; refresh().catch(() => {}); }, 150); };

  const retry = document.getElementById("retry");
  if (retry) {
    const fanoutId = randomId(); // one id per page: a double click creates one retry, not two
    retry.addEventListener("click", async () => {
      const result = document.getElementById("retry-result");
      retry.disabled = true;
      result.textContent = "retrying…";
      try {
        const body = await getJSON(root.dataset.retryUrl, {
          method: "POST",
          headers: { "content-type": "application/json", ...CSRF },
          body: JSON.stringify({ fanout_id: fanoutId }),
        });
        result.replaceChildren("New attempt created: ", el("a", { href: body.url, id: "new-attempt", "data-state": body.id }, el("code", {}, body.id)), ` (${body.status})`);
        await refresh();
      } catch (error) {
        result.textContent = `Retry refused: ${error.message}`;
        result.className = "problem";
      }
    });
    retry.disabled = false; // rendered disabled: clickable only once this handler is in place
  }
  const form = document.getElementById("signal-form");
  if (form) initSignalForm(root, form, refresh);
  follow(root.dataset.eventsUrl, null, refreshSoon);
}

// A waiting state's form: KEY=VALUE lines become the signal's payload, sent to the state's run.
function initSignalForm(root, form, refresh) {
  const button = document.getElementById("send-signal");
  const result = document.getElementById("signal-result");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const payload = {};
    for (const line of document.getElementById("signal-payload").value.split("\n")) {
      if (!line.trim()) continue;
      const at = line.indexOf("=");
      if (at <= 0) {
        result.textContent = `Each line must be KEY=VALUE: ${JSON.stringify(line)}`;
        result.className = "problem";
        return;
      }
      payload[line.slice(0, at).trim()] = line.slice(at + 1);
    }
    button.disabled = true;
    result.className = "";
    result.textContent = "sending…";
    try {
      const body = await getJSON(root.dataset.signalUrl, {
        method: "POST",
        headers: { "content-type": "application/json", ...CSRF },
        body: JSON.stringify({ payload }),
      });
      result.textContent = `Signal ${body.name} sent: ${body.woken} waiting state${body.woken === 1 ? "" : "s"} woken`;
      await refresh();
    } catch (error) {
      result.textContent = `Signal refused: ${error.message}`;
      result.className = "problem";
      button.disabled = false;
    }
  });
  button.disabled = false; // rendered disabled: clickable only once this handler is in place
}

// A state's live stream: chunks appended as text (never HTML) as they come; EventSource reconnects
// with Last-Event-ID by itself, so a dropped connection resumes after the last chunk shown.
function initStream(pre) {
  const status = document.getElementById("stream-status");
  const attempt = new URLSearchParams(location.search).get("attempt");
  const source = new EventSource(pre.dataset.streamUrl + (attempt ? `?attempt=${encodeURIComponent(attempt)}` : ""));
  const mark = (state, text) => { status.dataset.live = state; status.textContent = text; };
  source.addEventListener("open", () => mark("connected", "live"));
  source.addEventListener("chunk", (event) => {
    const chunk = JSON.parse(event.data);
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.append(chunk.text);
    pre.dataset.attempt = chunk.attempt;
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  });
  source.addEventListener("end", (event) => {
    source.close(); // the attempt ended: nothing more will come
    const end = JSON.parse(event.data);
    pre.dataset.attempt = end.attempt;
    mark("ended", `attempt ${end.attempt} ended${end.status ? ` (${end.status})` : ""}: ${end.next_offset} chunk${end.next_offset === 1 ? "" : "s"}`);
  });
  source.addEventListener("error", () => {
    if (status.dataset.live !== "ended") mark(source.readyState === EventSource.CLOSED ? "lost" : "connecting",
      source.readyState === EventSource.CLOSED ? "stream stopped (reload)" : "reconnecting…");
  });
  window.addEventListener("pagehide", () => source.close());
}

const run = document.querySelector("[data-run-live]");
if (run) initRun(run);
const state = document.querySelector("[data-state-page]");
if (state) initState(state);
const liveStream = document.getElementById("live-stream");
if (liveStream) initStream(liveStream);
