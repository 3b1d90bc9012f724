"use strict";
// Live status page: one EventSource (/api/stream), no polling. History comes
// once from /api/history, then grows from the stream's samples.
const NAMES = {0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"};
const COLORS = ["#1e88e5", "#e53935", "#43a047", "#fb8c00", "#8e24aa", "#00acc1", "#6d4c41", "#3949ab", "#c0ca33"];
const MINUTES = 30;
let history = [];
let cameraVersion = -1, cameraShown = 0;
const $ = (id) => document.getElementById(id);

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function fmt(x, d) { return x === null || x === undefined ? "–" : Number(x).toFixed(d); }

function renderBanner(top) {
  if (!top) return;
  $("banner").className = "l" + top.level;
  $("state").textContent = (document.body.dataset.robot || "Reachy Mini") + ": " + NAMES[top.level] + " — " + top.message;
}

function renderTree(tree) {
  const ul = $("tree");
  ul.replaceChildren();
  for (const s of tree) {
    const parts = s.name.split("/").filter(Boolean);
    const li = el("li", {class: "s" + s.level, "data-name": s.name});
    li.style.paddingLeft = (parts.length - 1) * 1.2 + "em";
    li.append(el("span", {class: "dot l" + s.level}), " ", el("b", {}, parts[parts.length - 1]), " ",
              el("span", {class: "lv"}, NAMES[s.level]), " ", el("span", {}, s.message));
    ul.append(li);
  }
}

function renderMotors(tree, joints) {
  const body = $("motors").tBodies[0];
  body.replaceChildren();
  for (const s of tree) {
    if (!s.name.includes("/Motors/") || !(s.hardware_id || "").split("/").pop().startsWith("dynamixel:")) continue;   // servos only
    const name = s.name.split("/").pop(), v = s.values || {};
    const tr = el("tr", {class: "s" + s.level, "data-motor": name});
    const cells = [null, name, NAMES[s.level], fmt(joints[name], 3), v["temperature (C)"], v["voltage (V)"],
                   v["current (mA)"], v["torque"], v["hardware error"], s.message];
    cells.forEach((c, i) => {
      const td = el("td", i === 2 ? {class: "lv"} : {}, i === 0 ? undefined : (c ?? "–"));
      if (i === 0) td.append(el("span", {class: "dot l" + s.level}));
      tr.append(td);
    });
    body.append(tr);
  }
}

function renderIncidents(rows) {
  const body = $("incidents").tBodies[0];
  body.replaceChildren();
  for (const r of rows.slice(0, 20)) {
    const tr = el("tr", {class: "s" + r.level});
    const change = (r.prev_level_name || "new") + " → " + r.level_name;
    [new Date(r.t * 1000).toLocaleTimeString(), r.kind, change, r.name, r.message]
      .forEach((c) => tr.append(el("td", {}, c)));
    body.append(tr);
  }
}

function svgEl(tag, attrs, text) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function plot(svg, series, w, h, unit) {
  svg.replaceChildren();
  const all = Object.values(series).flat();
  if (!all.length) { svg.append(svgEl("text", {x: 10, y: 20}, "no data yet")); return; }
  let lo = Math.min(...all.map((p) => p[1])), hi = Math.max(...all.map((p) => p[1]));
  if (hi - lo < 2) { lo -= 1; hi += 1; }
  const t1 = Date.now() / 1000, t0 = t1 - MINUTES * 60;
  Object.entries(series).forEach(([name, pts], i) => {
    if (pts.length < 2) return;
    const xs = (t) => ((t - t0) / (t1 - t0)) * w;
    const ys = (v) => h - ((v - lo) / (hi - lo)) * (h - 12) - 6;
    svg.append(svgEl("polyline", {stroke: COLORS[i % COLORS.length],
      points: pts.map(([t, v]) => xs(t).toFixed(1) + "," + ys(v).toFixed(1)).join(" ")}));
  });
  svg.append(svgEl("text", {x: 4, y: 10}, hi.toFixed(0) + " " + unit));
  svg.append(svgEl("text", {x: 4, y: h - 2}, lo.toFixed(0) + " " + unit));
}
function renderHistory() {
  const cut = Date.now() / 1000 - MINUTES * 60;
  history = history.filter((p) => p.t >= cut);
  const temps = {};
  for (const p of history) for (const [m, v] of Object.entries(p.temperature_c || {})) (temps[m] ||= []).push([p.t, v]);
  plot($("temps"), temps, 800, 200, "°C");
  const leg = $("templegend");
  leg.replaceChildren(...Object.keys(temps).map((m, i) => {
    const s = el("span", {}, "■ " + m); s.style.color = COLORS[i % COLORS.length]; return s;
  }));
  plot($("rate"), {loop: history.filter((p) => p.loop_rate_hz !== null).map((p) => [p.t, p.loop_rate_hz])},
       800, 120, "Hz");
}

function renderAudio(db) {
  if (db === null || db === undefined) return;
  const pct = Math.max(0, Math.min(100, (db + 90) / 90 * 100));
  $("audiobar").style.width = pct + "%";
  $("audiotext").textContent = db <= -119 ? "digital silence" : db.toFixed(1) + " dBFS";
}

function renderCamera(version) {
  if (version === cameraVersion || Date.now() - cameraShown < 1000) return;
  cameraVersion = version; cameraShown = Date.now();
  $("camera").src = "/api/camera.jpg?v=" + version;
}

function render(d) {
  renderBanner(d.top);
  renderTree(d.tree || []);
  renderMotors(d.tree || [], d.joints || {});
  renderIncidents(d.incidents || []);
  renderAudio(d.audio_level_dbfs);
  if (d.camera_version > 0) renderCamera(d.camera_version);
  if (d.sample && (!history.length || d.sample.t > history[history.length - 1].t)) {
    history.push(d.sample);
    renderHistory();
  }
}

function connect() {
  const es = new EventSource("/api/stream");
  es.onopen = () => { $("conn").textContent = "live"; $("conn").className = ""; };
  es.onmessage = (e) => render(JSON.parse(e.data));
  es.onerror = () => { $("conn").textContent = "connection lost — reconnecting…"; $("conn").className = "lost"; };
}

fetch("/api/history?minutes=" + MINUTES).then((r) => r.json()).then((h) => { history = h.concat(history); renderHistory(); })
  .catch(() => {});
connect();
