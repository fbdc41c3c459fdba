// daq dashboard: vanilla JS, no external assets. State arrives once as a snapshot and then as
// coalesced deltas over Server-Sent Events (/api/events); the page never polls for values.
"use strict";

const S = { channels: new Map(), devices: new Map(), gateways: new Map(), energy: {},
  skewNs: 0, tz: "UTC", history: "", registry: false, tokenRequired: false, readOnly: false };
let cells = new Map();   // channel key -> {row, v, U, q, age, ts} for the view on screen
let view = null;         // {name, refresh(delta)} of the view on screen
let renderQueued = false;
let trend = null;        // live trend of the channel view
const $ = (sel, el = document) => el.querySelector(sel);
const nowNs = () => Date.now() * 1e6 + S.skewNs;
// one URL component, every reserved character encoded (as Python's quote(s, safe=""))
const enc = (s) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

// -- rendering: the one way markup is made ------------------------------------------------
// Everything shown may come from an MQTT message, i.e. from anyone who can publish on the
// broker. Markup is written only as h`…` templates: every ${value} in one is escaped for
// text and for double-quoted attributes (always quote attributes), except the result of
// another h`…` (or an array of them), which is inserted as it is. setHtml() is the only
// place that assigns innerHTML, and it takes nothing but an h`…` result, so a value cannot
// reach the parser unescaped by forgetting a call. URLs are built from fixed prefixes
// ("#/e/", "/chain/") and encodeURIComponent, so a value can never choose the scheme
// (javascript:). The server's Content-Security-Policy forbids inline script besides.
class Html { constructor(text) { this.text = text; } }
const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;", "`": "&#96;" };
const esc = (s) => String(s ?? "").replace(/[&<>"'`]/g, (c) => ESC[c]);
function part(v) {
  if (v instanceof Html) return v.text;
  if (Array.isArray(v)) return v.map(part).join("");
  if (v === null || v === undefined || v === false) return "";
  return esc(v);
}
function h(strings, ...values) {
  let out = strings[0];
  for (let i = 0; i < values.length; i++) out += part(values[i]) + strings[i + 1];
  return new Html(out);
}
function setHtml(el, html) {
  if (!(html instanceof Html)) throw new TypeError("setHtml takes an h`…` template only");
  el.innerHTML = html.text;
}

// -- formatting ---------------------------------------------------------------------------
function fmtValue(v) {
  if (v === null || v === undefined) return "—";
  if (typeof v !== "number") return String(v);
  const a = Math.abs(v);
  if (a >= 1e6) return v.toLocaleString("en", { maximumFractionDigits: 1 });
  if (a >= 1000) return v.toLocaleString("en", { maximumFractionDigits: 2 });
  if (a >= 1) return v.toFixed(3);
  return v.toPrecision(4);
}
function fmtKwh(v) { return v === null || v === undefined ? "—" : v.toLocaleString("en", { minimumFractionDigits: 3, maximumFractionDigits: 3 }); }
function fmtTce(v) { return v === null || v === undefined ? "—" : v.toLocaleString("en", { minimumFractionDigits: 4, maximumFractionDigits: 4 }); }
function fmtAge(ts) {
  const s = (nowNs() - ts) / 1e9;
  if (s < 60) return `${Math.max(0, s).toFixed(1)} s`;
  if (s < 3600) return `${(s / 60).toFixed(0)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}
function fmtTime(ns) {
  return new Date(ns / 1e6).toLocaleString("sv", { timeZone: S.tz }).replace("T", " ");
}
function pct(x) { return `${(100 * x).toFixed(0)} %`; }
const VER_LABEL = { valid: "verification valid", due_soon: "verification due soon", overdue: "verification overdue" };
// data: {name: value} → data-name="value" attributes
function badge(cls, text, data = {}) {
  const attrs = Object.entries(data).map(([k, v]) => h` data-${k}="${v}"`);
  return h`<span class="badge b-${cls}"${attrs}>${text}</span>`;
}

// -- state ---------------------------------------------------------------------------------
function loadSnapshot(doc) {
  S.channels = new Map(doc.channels.map((c) => [c.key, c]));
  S.devices = new Map(doc.devices.map((d) => [d.key, d]));
  S.gateways = new Map(doc.gateways.map((g) => [g.key, g]));
  S.energy = doc.energy || {};
  S.skewNs = doc.now - Date.now() * 1e6;
  S.tz = doc.tz; S.history = doc.history; S.registry = doc.registry;
  S.tokenRequired = doc.token_required; S.readOnly = doc.read_only;
  render();
}

function applyDelta(d) {
  let structural = false;
  for (const g of d.gateways) { S.gateways.set(g.key, g); structural = true; }
  for (const dev of d.devices) { S.devices.set(dev.key, dev); structural = true; }
  for (const c of d.channels) {
    if (!S.channels.has(c.key)) structural = true;
    S.channels.set(c.key, c);
    const cell = cells.get(c.key);
    if (cell) { if (cell.visible) updateCell(cell, c); else cell.dirty = true; }
    if (trend && trend.key === c.key && typeof c.value === "number") trend.add(c.ts, c.value);
  }
  updateAlarmCount();
  if (view && view.refresh) view.refresh(d, structural);
}

function updateCell(cell, c) {
  cell.v.textContent = fmtValue(c.value);
  if (cell.U) cell.U.textContent = c.U == null ? "" : `± ${fmtValue(c.U)}`;
  cell.q.className = `badge b-${c.quality}`;
  cell.q.textContent = c.quality + (c.reason ? ` (${c.reason})` : "");
  cell.ts = c.ts;
  cell.age.textContent = fmtAge(c.ts);
}

function activeAlarms() {
  const out = [];
  for (const d of S.devices.values()) for (const a of d.alarms) out.push({ ...a, device_key: d.key, enterprise: d.enterprise, gateway: d.gateway, device: d.device });
  return out;
}
function updateAlarmCount() {
  const n = activeAlarms().filter((a) => !a.ack).length;
  const el = $("#alarm-count");
  el.hidden = n === 0; el.textContent = n;
}

// -- routing -------------------------------------------------------------------------------
function route() {
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, params: new URLSearchParams(query || "") };
}
function render() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => { renderQueued = false; renderNow(); });
}
function renderNow() {
  const { parts, params } = route();
  cells = new Map(); trend = null; view = null;
  const main = $("#view");
  let name = "overview";
  if (parts[0] === "alarms") { name = "alarms"; viewAlarms(main, params); }
  else if (parts[0] === "energy") { name = "energy"; viewEnergy(main, params); }
  else if (parts[0] === "e" && parts.length >= 2) {
    const [, ent, , gw, , dev, , ch] = parts;
    if (ch) viewChannel(main, ent, gw, dev, ch);
    else if (dev) viewDevice(main, ent, gw, dev);
    else viewEnterprise(main, ent, gw);
  } else viewOverview(main);
  document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("active", a.dataset.nav === name));
  updateAlarmCount();
}
window.addEventListener("hashchange", render);

// -- overview ------------------------------------------------------------------------------
function enterprises() {
  const ents = new Map();
  for (const d of S.devices.values()) {
    if (!ents.has(d.enterprise)) ents.set(d.enterprise, []);
    ents.get(d.enterprise).push(d);
  }
  return [...ents.entries()].sort((a, b) => a[0].localeCompare(b[0]));
}
function viewOverview(main) {
  const ents = enterprises();
  const cards = ents.map(([ent, devs]) => {
    const n = (k, v) => devs.filter((d) => d[k] === v).length;
    const alarms = devs.flatMap((d) => d.alarms);
    const unacked = alarms.filter((a) => !a.ack).length;
    const e = (S.energy.enterprises || {})[ent];
    return h`<section class="card" data-enterprise="${ent}">
      <h3><a href="#/e/${enc(ent)}">${ent}</a></h3>
      <dl class="kv">
        <dt>devices</dt><dd>${badge("online", `${n("status", "online")} online`, { count: "online" })}
          ${badge("faulty", `${n("status", "faulty")} faulty`, { count: "faulty" })}
          ${badge("offline", `${n("status", "offline")} offline`, { count: "offline" })}</dd>
        <dt>alarms</dt><dd><a href="#/alarms?enterprise=${enc(ent)}" data-count="alarms">${alarms.length} active</a>${unacked ? `, ${unacked} not acknowledged` : ""}</dd>
        <dt>verification</dt><dd>${badge("valid", `${n("verification", "valid")} valid`, { count: "valid" })}
          ${badge("due_soon", `${n("verification", "due_soon")} due soon`, { count: "due_soon" })}
          ${badge("overdue", `${n("verification", "overdue")} overdue`, { count: "overdue" })}</dd>
        <dt>energy today</dt><dd data-energy-today>${e ? h`<b>${fmtKwh(e.kwh)}</b> kWh · <b>${fmtTce(e.tce)}</b> tce
          <span class="muted">(${e.meters} meters; 15-min data ${pct(e.completeness)} complete)</span>` : h`<span class="muted">no energy registers seen yet</span>`}</dd>
      </dl></section>`;
  });
  setHtml(main, h`<h1>Enterprises</h1>${ents.length ? h`<div class="cards">${cards}</div>` :
    h`<p class="muted">No enterprise has reported yet: waiting for MQTT messages.</p>`}
    <p class="muted">Energy in tonnes of standard coal equivalent at 0.1229 kgce/kWh (calorific equivalent, GB/T 2589-2020); day in ${S.tz}.</p>`);
  view = { refresh: (d, structural) => { if (structural || d.devices.length) render(); } };
}

// -- enterprise / gateway: devices with their live channels -------------------------------
// the channel's description in its device's meta message, if any
function describe(c) {
  const d = S.devices.get(`${c.enterprise}/${c.gateway}/${c.device}`);
  const m = d && (d.meta_channels || []).find((x) => x.id === c.channel);
  return m ? m.description : "";
}
function channelRow(c, withDevice) {
  const href = `#/e/${enc(c.enterprise)}/g/${enc(c.gateway)}/d/${enc(c.device)}/c/${enc(c.channel)}`;
  return h`<tr data-key="${c.key}">
    ${withDevice ? h`<td>${c.device}</td>` : ""}
    <td><a href="${href}" title="${describe(c)}">${c.channel}</a></td>
    <td class="num" data-f="v">${fmtValue(c.value)}</td><td>${c.unit}</td>
    <td class="num hide-phone" data-f="U">${c.U == null ? "" : `± ${fmtValue(c.U)}`}</td>
    <td><span data-f="q" class="badge b-${c.quality}">${c.quality + (c.reason ? ` (${c.reason})` : "")}</span></td>
    <td class="num age" data-f="age">${fmtAge(c.ts)}</td>
    <td class="hide-narrow">${c.cert ? h`<span data-cert>${c.cert}</span>` : h`<span class="muted">—</span>`}
      ${c.verification !== "valid" ? badge(c.verification, VER_LABEL[c.verification], { verification: c.verification }) : ""}</td></tr>`;
}
// Only rows on screen are written to: with hundreds of live channels, rows scrolled away
// are marked dirty and brought up to date when they scroll into view.
let rowObserver = null;
function bindCells(main) {
  if (rowObserver) rowObserver.disconnect();
  rowObserver = new IntersectionObserver((entries) => {
    for (const e of entries) {
      const cell = cells.get(e.target.dataset.key);
      if (!cell) continue;
      cell.visible = e.isIntersecting;
      if (cell.visible && cell.dirty) { cell.dirty = false; updateCell(cell, S.channels.get(e.target.dataset.key)); }
    }
  });
  for (const row of main.querySelectorAll("tr[data-key]")) {
    const c = S.channels.get(row.dataset.key);
    cells.set(row.dataset.key, { row, v: $('[data-f="v"]', row), U: $('[data-f="U"]', row),
      q: $('[data-f="q"]', row), age: $('[data-f="age"]', row), ts: c ? c.ts : 0, visible: false, dirty: false });
    rowObserver.observe(row);
  }
}
const CH_HEAD = h`<th>channel</th><th class="num">value</th><th>unit</th><th class="num hide-phone">U (k≈2)</th><th>quality</th><th class="num">age</th><th class="hide-narrow">certificate</th>`;

function deviceHeader(d) {
  const al = d.alarms.length ? h`<a href="#/alarms?enterprise=${enc(d.enterprise)}">${badge("warning", `${d.alarms.length} alarm${d.alarms.length > 1 ? "s" : ""}`)}</a>` : "";
  return h`${badge(d.status, d.status, { status: d.status })}
    ${badge(d.verification, VER_LABEL[d.verification], { verification: d.verification })} ${al}`;
}
function viewEnterprise(main, ent, gwOnly) {
  const devs = [...S.devices.values()].filter((d) => d.enterprise === ent && (!gwOnly || d.gateway === gwOnly))
    .sort((a, b) => (a.gateway + a.device).localeCompare(b.gateway + b.device));
  const gws = [...new Set(devs.map((d) => d.gateway))].sort();
  const body = gws.map((gw) => {
    const st = S.gateways.get(`${ent}/${gw}`);
    const groups = devs.filter((d) => d.gateway === gw).map((d) => {
      const chans = [...S.channels.values()].filter((c) => c.enterprise === ent && c.gateway === gw && c.device === d.device)
        .sort((a, b) => a.channel.localeCompare(b.channel));
      return h`<div class="devgroup" data-device="${d.key}"><h3><a href="#/e/${enc(ent)}/g/${enc(gw)}/d/${enc(d.device)}">${d.device}</a>
        <span class="muted" data-maker-model>${[d.maker, d.model].filter(Boolean).join(" ")}</span> ${deviceHeader(d)}</h3>
        ${chans.length ? h`<div class="wrap"><table><thead><tr>${CH_HEAD}</tr></thead><tbody>${chans.map((c) => channelRow(c, false))}</tbody></table></div>` : h`<p class="muted">no readings yet</p>`}</div>`;
    });
    return h`<h2>gateway <a href="#/e/${enc(ent)}/g/${enc(gw)}">${gw}</a> ${st ? badge(st.status === "online" ? "online" : "offline", st.status) : ""}</h2>${groups}`;
  });
  setHtml(main, h`<div class="crumbs"><a href="#/">enterprises</a> › ${gwOnly ? h`<a href="#/e/${enc(ent)}">${ent}</a> › ${gwOnly}` : ent}</div>
    <h1>${gwOnly ? `${ent} / ${gwOnly}` : ent}</h1>${body.length ? body : h`<p class="muted">nothing reported yet</p>`}`);
  bindCells(main);
  view = { refresh: (d, structural) => {
    if (structural && (d.devices.some((x) => x.enterprise === ent) || d.channels.some((c) => c.enterprise === ent && !cells.has(c.key)) || d.gateways.length)) render();
  } };
}

// an alarm's details (drift rate, last error …): scalars only, as text
function details(d) {
  const items = Object.entries(d || {}).filter(([, v]) => v === null || typeof v !== "object");
  return items.length ? h` <span class="muted" data-details>${items.map(([k, v]) => `${k}: ${String(v).slice(0, 120)}`).join("; ")}</span>` : "";
}
function viewDevice(main, ent, gw, dev) {
  const key = `${ent}/${gw}/${dev}`;
  const d = S.devices.get(key);
  if (!d) { setHtml(main, h`<p class="muted">No device ${key} seen yet.</p>`); view = { refresh: (_d, s) => s && render() }; return; }
  const chans = [...S.channels.values()].filter((c) => c.enterprise === ent && c.gateway === gw && c.device === dev)
    .sort((a, b) => a.channel.localeCompare(b.channel));
  const alarms = d.alarms.map((a) => h`<li data-alarm-key="${a.key}">${badge(a.severity, a.kind)} ${a.channel || ""} <span data-reason>${a.reason}</span> <span class="muted">since ${fmtTime(a.since)}</span>${a.ack ? h` ${badge("acked", `acknowledged by ${a.ack.who}`)}` : ""}${details(a.details)}</li>`);
  setHtml(main, h`<div class="crumbs"><a href="#/">enterprises</a> › <a href="#/e/${enc(ent)}">${ent}</a> › <a href="#/e/${enc(ent)}/g/${enc(gw)}">${gw}</a> › ${dev}</div>
    <h1>${dev} <span class="muted" data-maker-model>${[d.maker, d.model].filter(Boolean).join(" ")}</span></h1>
    <p>${deviceHeader(d)} ${d.profile ? h`<span class="muted">poll every ${d.interval_ms} ms · profile ${d.profile}</span>` : h`<span class="muted">no meta message yet</span>`}</p>
    ${alarms.length ? h`<h2>Active alarms</h2><ul>${alarms}</ul>` : ""}
    <div class="wrap"><table><thead><tr>${CH_HEAD}</tr></thead><tbody>${chans.map((c) => channelRow(c, false))}</tbody></table></div>`);
  bindCells(main);
  view = { refresh: (delta, structural) => { if (delta.devices.some((x) => x.key === key) || (structural && delta.channels.some((c) => !cells.has(c.key) && c.device === dev))) render(); } };
}

// -- channel: live value, trend of the last hour, certificate ------------------------------
function viewChannel(main, ent, gw, dev, ch) {
  const key = `${ent}/${gw}/${dev}/${ch}`;
  const c = S.channels.get(key);
  if (!c) { setHtml(main, h`<p class="muted">No readings of ${key} yet.</p>`); view = { refresh: (_d, s) => s && render() }; return; }
  const chain = c.cert ? (S.registry ? h`<a href="/chain/${enc(c.cert)}" data-chain>traceability chain</a>` : h`<span class="muted">(no registry configured: start with --registry for the chain)</span>`) : "";
  const desc = describe(c);
  setHtml(main, h`<div class="crumbs"><a href="#/">enterprises</a> › <a href="#/e/${enc(ent)}">${ent}</a> › <a href="#/e/${enc(ent)}/g/${enc(gw)}">${gw}</a> › <a href="#/e/${enc(ent)}/g/${enc(gw)}/d/${enc(dev)}">${dev}</a> › ${ch}</div>
    <h1>${dev} · ${ch} <span class="muted">${c.quantity}</span></h1>
    ${desc ? h`<p class="muted" data-description>${desc}</p>` : ""}
    <div class="grid2"><div><svg class="trend" id="trend" viewBox="0 0 800 220" preserveAspectRatio="none" role="img" aria-label="last hour"></svg>
      <p class="muted" id="trend-note">last hour, from ${S.history}</p></div>
    <div class="card"><table><tbody><tr data-key="${key}"><td colspan="2"><span class="big" data-f="v">${fmtValue(c.value)}</span> ${c.unit}
      <div class="muted" data-f="U">${c.U == null ? "no calibration uncertainty" : `± ${fmtValue(c.U)} (U, k≈2)`}</div></td></tr>
      <tr data-key2><td>quality</td><td><span data-f="q" class="badge b-${c.quality}">${c.quality}</span></td></tr>
      <tr><td>age</td><td class="age" data-f="age">${fmtAge(c.ts)}</td></tr>
      <tr><td>certificate</td><td>${c.cert ? h`<span data-cert>${c.cert}</span>` : h`<span class="muted">none</span>`} ${chain}</td></tr>
      <tr><td>verification</td><td>${badge(c.verification, VER_LABEL[c.verification], { verification: c.verification })} ${c.verification_mark ? h`<span class="muted">${c.verification_mark}</span>` : ""}</td></tr>
    </tbody></table></div></div>`);
  const root = main;
  if (rowObserver) rowObserver.disconnect();
  cells.set(key, { row: root, v: $('[data-f="v"]', root), U: null, q: $('[data-f="q"]', root), age: $('[data-f="age"]', root), ts: c.ts, visible: true, dirty: false });
  trend = makeTrend($("#trend"), key);
  fetch(`/api/trend?key=${enc(key)}&minutes=60`).then((r) => r.json()).then((doc) => {
    if (!trend || trend.key !== key) return;
    if (doc.error) $("#trend-note").textContent = `no trend: ${doc.error}`;
    trend.load(doc.points || []);
  });
  view = { refresh: () => {} };
}

function makeTrend(svg, key) {
  let pts = [];
  let queued = false;
  const draw = () => {
    queued = false;
    const horizon = nowNs() - 3600e9;
    pts = pts.filter((p) => p[0] >= horizon);
    if (pts.length < 2) { setHtml(svg, h`<text x="20" y="110" fill="#6b7385">waiting for data…</text>`); return; }
    let lo = Infinity, hi = -Infinity;
    for (const [, v] of pts) { if (v < lo) lo = v; if (v > hi) hi = v; }
    if (hi === lo) { hi += 1; lo -= 1; }
    const t0 = horizon, t1 = nowNs();
    const x = (t) => 50 + 740 * (t - t0) / (t1 - t0), y = (v) => 200 - 180 * (v - lo) / (hi - lo);
    const line = pts.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    setHtml(svg, h`<polyline fill="none" stroke="#1f5fbf" stroke-width="1.5" points="${line}"/>
      <text x="4" y="24" font-size="12" fill="#6b7385">${fmtValue(hi)}</text><text x="4" y="200" font-size="12" fill="#6b7385">${fmtValue(lo)}</text>
      <text x="50" y="216" font-size="11" fill="#6b7385">−60 min</text><text x="760" y="216" font-size="11" fill="#6b7385">now</text>`);
  };
  const later = () => { if (!queued) { queued = true; requestAnimationFrame(draw); } };
  return { key, load(p) { const seen = new Set(pts.map((q) => q[0])); pts = [...p.filter((q) => !seen.has(q[0])), ...pts].sort((a, b) => a[0] - b[0]); later(); },
    add(t, v) { pts.push([t, v]); later(); } };
}

// -- alarms --------------------------------------------------------------------------------
const KINDS = ["communication", "calibration_expired", "chain_broken", "verification_overdue", "verification_due_soon", "service_life_ended", "drift", "stuck", "out_of_range", "outbox_unwritable", "outbox_full"];
function viewAlarms(main, params) {
  const kind = params.get("kind") || "", ent = params.get("enterprise") || "";
  const ents = [...new Set([...S.devices.values()].map((d) => d.enterprise))].sort();
  const who = localStorage.getItem("daq.who") || "";
  const option = (v, sel) => (v === sel ? h`<option selected>${v}</option>` : h`<option>${v}</option>`);
  setHtml(main, h`<h1>Alarms</h1>
    <div class="filters">
      <label>kind <select id="f-kind"><option value="">all</option>${KINDS.map((k) => option(k, kind))}</select></label>
      <label>enterprise <select id="f-ent"><option value="">all</option>${ents.map((e) => option(e, ent))}</select></label>
      ${S.readOnly ? h`<span class="muted" data-read-only>read-only dashboard: acknowledging is disabled here</span>` : h`<label>your name <input id="who" value="${who}" placeholder="who acknowledges" size="14"></label>`}
      ${S.tokenRequired && !S.readOnly ? h`<label>token <input id="token" type="password" size="10"></label>` : ""}
    </div>
    <h2>Active</h2><div class="wrap"><table id="active"><thead><tr><th>since</th><th>enterprise / device</th><th>kind</th><th>severity</th><th>reason</th><th>acknowledged</th></tr></thead><tbody></tbody></table></div>
    <p id="ack-error" class="error" hidden></p>
    <h2>Recent</h2><div class="wrap"><table id="recent"><thead><tr><th>time</th><th>event</th><th>enterprise / device</th><th>kind</th><th>reason</th></tr></thead><tbody></tbody></table></div>`);
  const setFilter = () => { location.hash = `#/alarms?kind=${enc($("#f-kind").value)}&enterprise=${enc($("#f-ent").value)}`; };
  $("#f-kind").onchange = setFilter; $("#f-ent").onchange = setFilter;
  if ($("#who")) $("#who").onchange = (e) => localStorage.setItem("daq.who", e.target.value.trim());
  const keep = (a) => (!kind || a.kind === kind) && (!ent || a.enterprise === ent);
  const drawActive = () => {
    const rows = activeAlarms().filter(keep).sort((a, b) => b.since - a.since).map((a) => h`<tr data-alarm="${a.device_key}|${a.key}">
      <td>${fmtTime(a.since)}</td><td>${a.enterprise} / <a href="#/e/${enc(a.enterprise)}/g/${enc(a.gateway)}/d/${enc(a.device)}">${a.device}</a>${a.channel ? ` · ${a.channel}` : ""}</td>
      <td>${a.kind}</td><td>${badge(a.severity, a.severity)}</td><td data-reason>${a.reason}${details(a.details)}</td>
      <td>${a.ack ? h`<span data-ack>${badge("acked", `${a.ack.who}, ${fmtTime(a.ack.at)}`)}</span>` : S.readOnly ? h`<span class="muted">not acknowledged</span>` : h`<button data-ack-btn data-dev="${a.device_key}" data-id="${a.id}">Acknowledge</button>`}</td></tr>`);
    setHtml($("#active tbody"), rows.length ? h`${rows}` : h`<tr><td colspan="6" class="muted">no active alarms</td></tr>`);
    for (const b of main.querySelectorAll("[data-ack-btn]")) b.onclick = () => acknowledge(b);
  };
  const drawRecent = () => fetch(`/api/alarms?kind=${enc(kind)}&enterprise=${enc(ent)}`).then((r) => r.json()).then((doc) => {
    const rows = doc.recent.map((e) => h`<tr><td>${fmtTime(e.ts)}</td><td>${badge(e.action === "raised" ? "warning" : "valid", e.action)}</td>
      <td>${e.enterprise} / ${e.device}${e.channel ? ` · ${e.channel}` : ""}</td><td>${e.kind}</td><td data-reason>${e.reason}</td></tr>`);
    setHtml($("#recent tbody"), rows.length ? h`${rows}` : h`<tr><td colspan="5" class="muted">none recorded</td></tr>`);
  });
  drawActive(); drawRecent();
  view = { refresh: (d) => { if (d.devices.length) drawActive(); if (d.events.length) drawRecent(); } };
}

async function acknowledge(btn) {
  const who = $("#who").value.trim();
  const err = $("#ack-error");
  if (!who) { err.hidden = false; err.textContent = "Enter your name to acknowledge."; $("#who").focus(); return; }
  localStorage.setItem("daq.who", who);
  const headers = { "Content-Type": "application/json" };
  const tok = $("#token"); if (tok && tok.value) headers["X-Daq-Token"] = tok.value;
  const resp = await fetch("/api/alarms/ack", { method: "POST", headers,
    body: JSON.stringify({ id: btn.dataset.id, who }) });
  if (!resp.ok) { err.hidden = false; err.textContent = `not acknowledged: ${await resp.text()}`; return; }
  err.hidden = true;
}

// -- energy --------------------------------------------------------------------------------
function viewEnergy(main, params) {
  const step = params.get("step") || "15min";
  const date = params.get("date") || "";
  const range = params.get("from") && params.get("to") ? `&from=${enc(params.get("from"))}&to=${enc(params.get("to"))}` : "";
  const steps = ["15min", "hour", "day"];
  setHtml(main, h`<h1>Energy accounting</h1>
    <div class="filters"><label>interval <select id="e-step">${steps.map((s) => (s === step ? h`<option selected>${s}</option>` : h`<option>${s}</option>`))}${steps.includes(step) ? "" : h`<option selected>${step}</option>`}</select></label>
      <label>day <input id="e-date" type="date" value="${date}"></label> <button class="secondary" id="e-reload">Recompute</button>
      <span class="legend">${badge("measured", "measured")} ${badge("interpolated", "interpolated")} ${badge("missing", "missing")}</span></div>
    <div id="energy"><p class="muted">computing…</p></div>`);
  const go = () => { location.hash = `#/energy?step=${enc($("#e-step").value)}${$("#e-date").value ? `&date=${enc($("#e-date").value)}` : ""}`; };
  $("#e-step").onchange = go; $("#e-date").onchange = go; $("#e-reload").onclick = () => load();
  const load = () => fetch(`/api/energy?step=${enc(step)}${date ? `&date=${enc(date)}` : ""}${range}`).then(async (r) => {
    if (!r.ok) throw new Error(await r.text());
    return r.json();
  }).then(drawEnergy).catch((e) => { setHtml($("#energy"), h`<p class="error">${e.message}</p>`); });
  load();
  view = { refresh: () => {} };
}

function bars(intervals) {
  const n = intervals.length;
  if (!n) return "";
  const max = Math.max(1e-9, ...intervals.map((i) => i.kwh || 0));
  const w = 1000 / n;
  const rects = intervals.map((iv, i) => {
    const ht = iv.kwh == null ? 60 : Math.max(1, 60 * (iv.kwh / max));
    const color = iv.status === "measured" ? "#1f5fbf" : iv.status === "interpolated" ? "#e0a030" : "#d6d9df";
    return h`<rect x="${(i * w).toFixed(2)}" y="${(60 - ht).toFixed(2)}" width="${Math.max(0.5, w - 1).toFixed(2)}" height="${ht.toFixed(2)}" fill="${color}"><title>${fmtTime(iv.start)} ${iv.status} ${iv.kwh == null ? "" : `${fmtKwh(iv.kwh)} kWh`}</title></rect>`;
  });
  return h`<svg class="bars" viewBox="0 0 1000 60" preserveAspectRatio="none">${rects}</svg>`;
}

function drawEnergy(doc) {
  const el = $("#energy");
  const c = doc.coefficient;
  const ents = Object.entries(doc.enterprises).sort();
  const head = h`<p class="muted">${fmtTime(doc.from)} – ${fmtTime(doc.to)} (${doc.tz}), intervals of ${doc.step_s} s.
    Electricity ${c.kgce_per_unit} kgce/kWh, ${c.basis} — ${c.source}. <a href="/api/coefficients">all coefficients</a></p>
    ${doc.error ? h`<p class="error">${doc.error}</p>` : ""}`;
  const entCards = ents.map(([ent, e]) => h`<section class="card" data-energy-enterprise="${ent}"><h3>${ent}</h3><dl class="kv">
      <dt>register total</dt><dd><b data-kwh="${e.register_kwh}">${fmtKwh(e.register_kwh)}</b> kWh · ${fmtTce(e.register_tce)} tce</dd>
      <dt>in intervals</dt><dd>${fmtKwh(e.allocated_kwh)} kWh · ${fmtTce(e.allocated_tce)} tce</dd>
      <dt>completeness</dt><dd>${pct(e.completeness)} of ${e.expected} meter-intervals (${e.meters} meters)</dd>
      <dt>summed</dt><dd data-basis="${e.basis}">${e.basis} (${e.meters} of ${e.meters_all})</dd></dl>
      ${bars(e.intervals.map((k, i) => ({ kwh: k, start: doc.edges[i], status: k == null ? "missing" : e.missing_intervals[i] ? "interpolated" : "measured" })))}</section>`);
  const meters = doc.meters.map((m) => h`<section class="card" data-meter="${m.key}">
      <h3><a href="#/e/${enc(m.enterprise)}/g/${enc(m.gateway)}/d/${enc(m.device)}">${m.enterprise} / ${m.device}</a> <span class="muted">${m.channel}</span></h3>
      <p class="muted" data-in-total="${m.in_total}">${m.measurement_level ? `${m.measurement_level.replaceAll("_", " ")} · ` : ""}${m.in_total ? "in the enterprise total" : "not in the enterprise total (behind a boundary meter)"}</p>
      <dl class="kv"><dt>register total</dt><dd><b data-register-kwh="${m.register_kwh ?? ""}">${fmtKwh(m.register_kwh)}</b> kWh · ${fmtTce(m.register_tce)} tce
        ${m.first ? h`<span class="muted">(${fmtTime(m.first)} – ${fmtTime(m.last)})</span>` : ""}</dd>
      <dt>completeness</dt><dd data-completeness="${m.completeness}">${pct(m.completeness)} (${m.received} of ${m.expected} intervals; ${m.interpolated} interpolated, ${m.missing} missing)</dd>
      ${m.rollovers || m.replacements ? h`<dt>register</dt><dd class="warn">${m.rollovers} rollover(s), ${m.replacements} replacement(s): ${m.events.join("; ")}</dd>` : ""}</dl>
      ${bars(m.intervals)}
      <details><summary>${m.intervals.length} intervals</summary><div class="wrap"><table><thead><tr><th>start</th><th class="num">kWh</th><th class="num">tce</th><th>status</th><th class="hide-phone">note</th></tr></thead><tbody>
      ${m.intervals.map((iv) => h`<tr data-interval-start="${iv.start}" data-kwh="${iv.kwh ?? ""}" data-status="${iv.status}"><td>${fmtTime(iv.start)}</td><td class="num">${fmtKwh(iv.kwh)}</td>
        <td class="num">${iv.kwh == null ? "—" : fmtTce(iv.kwh * c.kgce_per_unit / 1000)}</td><td>${badge(iv.status, iv.status)}</td><td class="hide-phone muted">${iv.note}</td></tr>`)}
      </tbody></table></div></details></section>`);
  setHtml(el, h`${head}<h2>Enterprises</h2><div class="cards">${entCards.length ? entCards : h`<p class="muted">no energy meters</p>`}</div>
    <h2>Meters</h2><div class="cards">${meters}</div>`);
}

// -- live feed -----------------------------------------------------------------------------
function connect() {
  const es = new EventSource("/api/events");
  const conn = $("#conn");
  es.addEventListener("open", () => { conn.textContent = "live"; conn.className = "conn live"; });
  es.addEventListener("error", () => { conn.textContent = "reconnecting…"; conn.className = "conn"; });
  es.addEventListener("snapshot", (e) => loadSnapshot(JSON.parse(e.data)));
  es.addEventListener("delta", (e) => applyDelta(JSON.parse(e.data)));
  es.addEventListener("energy", (e) => {
    S.energy = JSON.parse(e.data);
    if (view && route().parts.length === 0) render();
  });
}
setInterval(() => {  // ages on screen
  const now = nowNs();
  for (const cell of cells.values()) {
    if (!cell.visible) continue;
    cell.age.textContent = fmtAge(cell.ts);
    const stale = now - cell.ts > 10e9;
    if (stale !== cell.row.classList.contains("stale")) cell.row.classList.toggle("stale", stale);
  }
}, 1000);
connect();
