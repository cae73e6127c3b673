// folio's dashboard: polls /_folio/stats every 2 s and draws it.
//
// Served as /_folio/dashboard.js, because the admin pages' Content-Security-
// Policy allows no inline script. Endpoint, tenant and path names come from
// clients of the proxy, so they reach the page as text only: elements are
// made with createElement and filled with textContent, never parsed as HTML.
"use strict";
const RESULTS = ["hit", "miss", "stale", "bypass", "error", "refused"];
const COLORS = { hit: "#4cc38a", miss: "#f0a03c", stale: "#b38cf2", bypass: "#5aa9e6", error: "#ef5b5b", refused: "#8a8f98" };
const PALETTE = ["#4cc38a", "#5aa9e6", "#f0a03c", "#b38cf2", "#ef5b5b", "#e6d35a", "#5ae6d0", "#e65ab4"];
const KEEP = 150;
let previous = null;
const hitHistory = new Map();   // endpoint -> [ratio…]
const rpsHistory = Object.fromEntries(RESULTS.map(r => [r, []]));

const text = (id, value) => { document.getElementById(id).textContent = value; };
const pct = x => (100 * x).toFixed(1) + " %";
const ms = x => x < 1 ? (x * 1000).toFixed(0) + " µs" : x.toFixed(1) + " ms";
const bytes = n => n >= 1 << 30 ? (n / (1 << 30)).toFixed(2) + " GiB" : n >= 1 << 20 ? (n / (1 << 20)).toFixed(1) + " MiB" : (n / 1024).toFixed(1) + " KiB";
function push(series, value) { series.push(value); if (series.length > KEEP) series.shift(); }

function draw(canvas, lines, max) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 28;
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = "#26313c"; ctx.fillStyle = "#7d8b99"; ctx.font = "12px system-ui";
  for (let i = 0; i <= 4; i++) {
    const y = pad + (h - 2 * pad) * i / 4;
    ctx.beginPath(); ctx.moveTo(pad, y); ctx.lineTo(w - 8, y); ctx.stroke();
    ctx.fillText(((max * (4 - i)) / 4).toFixed(max <= 1 ? 2 : 0), 2, y + 4);
  }
  for (const { color, points } of lines) {
    if (points.length < 2) continue;
    ctx.strokeStyle = color; ctx.lineWidth = 2; ctx.beginPath();
    points.forEach((v, i) => {
      const x = pad + (w - pad - 8) * i / (KEEP - 1);
      const y = h - pad - (h - 2 * pad) * Math.min(v / max, 1);
      i ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
    });
    ctx.stroke();
  }
}

/** `[name, color]` pairs as swatches; the name is text, the color a CSSOM property. */
function legend(id, entries) {
  document.getElementById(id).replaceChildren(...entries.map(([name, color]) => {
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = color;
    item.append(swatch, document.createTextNode(name));
    return item;
  }));
}

/** Replaces a table body's rows; every cell is text. */
function rows(selector, table) {
  document.querySelector(selector).replaceChildren(...table.map(cells => {
    const row = document.createElement("tr");
    for (const value of cells) {
      const cell = document.createElement("td");
      cell.textContent = String(value);
      row.append(cell);
    }
    return row;
  }));
}

function render(stats) {
  const total = RESULTS.reduce((n, r) => n + stats.totals[r], 0);
  text("hit-ratio", pct(stats.hit_ratio));
  text("total-requests", total.toLocaleString("en"));
  // A tenant's view has no instance-wide figures (null).
  const latency = stats.latency_ms || {};
  text("p50", latency.p50 == null ? "–" : ms(latency.p50));
  text("p99", latency.p99 == null ? "–" : ms(latency.p99));
  const l1 = stats.l1;
  text("l1", !l1 ? "–" : l1.capacity ? bytes(l1.bytes) : "off");
  text("l1-cap", l1 && l1.capacity ? `of ${bytes(l1.capacity)} · ${l1.entries.toLocaleString("en")} entries` : "");
  const redis = stats.redis;
  const el = document.getElementById("redis");
  el.textContent = !redis.configured ? "off" : redis.reachable ? `up · ${redis.latency_ms.toFixed(1)} ms` : "down";
  el.className = "value " + (!redis.configured ? "" : redis.reachable ? "ok" : "bad");
  text("uptime", `up ${stats.uptime_s} s`);

  // Rates from successive snapshots.
  const now = performance.now();
  if (previous) {
    const seconds = Math.max((now - previous.at) / 1000, 0.001);
    let rps = 0;
    for (const r of RESULTS) {
      const rate = Math.max(stats.totals[r] - previous.stats.totals[r], 0) / seconds;
      rps += rate;
      push(rpsHistory[r], rate);
    }
    text("rps", rps.toFixed(1));
    const before = new Map(previous.stats.endpoints.map(e => [e.endpoint + " · " + e.tenant, e]));
    for (const e of stats.endpoints) {
      const name = e.endpoint + " · " + e.tenant;
      const old = before.get(name) || { hit: 0, stale: 0, miss: 0 };
      const hits = e.hit + e.stale - old.hit - old.stale, cacheable = hits + e.miss - old.miss;
      if (!hitHistory.has(name)) hitHistory.set(name, []);
      push(hitHistory.get(name), cacheable > 0 ? hits / cacheable : e.hit_ratio);
    }
  }
  previous = { at: now, stats };

  const hitLines = [...hitHistory.entries()].slice(0, PALETTE.length)
    .map(([name, points], i) => ({ name, color: PALETTE[i], points }));
  draw(document.getElementById("chart-hit"), hitLines, 1);
  legend("legend-hit", hitLines.map(l => [l.name, l.color]));
  const peak = Math.max(1, ...RESULTS.flatMap(r => rpsHistory[r]));
  draw(document.getElementById("chart-rps"), RESULTS.map(r => ({ color: COLORS[r], points: rpsHistory[r] })), peak * 1.1);
  legend("legend-rps", RESULTS.map(r => [r, COLORS[r]]));

  rows("#endpoints tbody", stats.endpoints
    .map(e => [e.endpoint, e.tenant, e.hit, e.miss, e.stale, e.bypass, e.error, e.refused, pct(e.hit_ratio)]));
  rows("#top tbody", stats.top_paths.map(p => [p.path, p.tenant, p.requests]));
}

// With tokens configured the figures need one: the page asks, keeps it for
// this tab only (sessionStorage) and sends it as a Bearer token.
const TOKEN_KEY = "folio.token";
const tokenBox = document.getElementById("token-box");
const tokenInput = document.getElementById("token");

function askForToken(why) {
  const status = document.getElementById("status");
  status.textContent = why; status.className = "warn";
  tokenBox.hidden = false;
}

function useToken() {
  const value = tokenInput.value.trim();
  tokenInput.value = "";
  if (value) sessionStorage.setItem(TOKEN_KEY, value); else sessionStorage.removeItem(TOKEN_KEY);
  poll();
}
document.getElementById("token-use").addEventListener("click", useToken);
tokenInput.addEventListener("keydown", e => { if (e.key === "Enter") useToken(); });

async function poll() {
  const status = document.getElementById("status");
  const token = sessionStorage.getItem(TOKEN_KEY);
  try {
    const response = await fetch("/_folio/stats", {
      cache: "no-store",
      headers: token ? { Authorization: `Bearer ${token}` } : {},
    });
    if (response.status === 403 && token) {
      sessionStorage.removeItem(TOKEN_KEY);
      return askForToken("token refused");
    }
    if (response.status === 401 || response.status === 421) return askForToken("token needed");
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const stats = await response.json();
    tokenBox.hidden = true;
    render(stats);
    text("view", stats.tenant == null ? "" : `tenant ${stats.tenant}`);
    status.textContent = "live"; status.className = "ok";
  } catch (e) {
    status.textContent = "cannot reach folio"; status.className = "bad";
  }
}
poll();
setInterval(poll, 2000);
