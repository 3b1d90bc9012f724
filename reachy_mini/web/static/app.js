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
    const tr = el("tr", {class: "s" + r.level + (selected && selected.id === r.id ? " sel" : ""), "data-id": r.id});
    const change = (r.prev_level_name || "new") + " → " + r.level_name;
    [new Date(r.t * 1000).toLocaleTimeString(), r.kind, change, r.name, r.message]
      .forEach((c) => tr.append(el("td", {}, c)));
    const rec = el("td", {});
    if (r.snapshot) {   // the flight recorder's file (written 10 s after the incident)
      rec.append(el("a", {href: "/api/snapshots/" + encodeURIComponent(r.snapshot), download: r.snapshot,
                          class: "dl", title: r.snapshot}, "MCAP"));
      const b = el("button", {type: "button", class: "plot"}, "plot");
      b.addEventListener("click", () => { pinned = true; showRecording(r); });
      rec.append(b);
    }
    tr.append(rec);
    body.append(tr);
  }
  // Until the owner picks one, the newest recording is shown, for its deepest
  // item (the motor, not its group or the robot that turned ERROR with it).
  const newest = rows.find((x) => x.snapshot && x.level === 2);
  if (newest && !pinned && (!selected || selected.snapshot !== newest.snapshot)) {
    const depth = (x) => x.name.split("/").length;
    const same = rows.filter((x) => x.snapshot === newest.snapshot && x.level === 2);
    showRecording(same.reduce((a, b) => (depth(b) > depth(a) ? b : a)), true);
  }
}

// ---- the recorded minute around an incident (/api/snapshots/{name}/plot)
let selected = null, pinned = false, plotRetry = null;
const LEVEL_FILL = ["#2e7d32", "#f9a825", "#c62828", "#9e9e9e"];
async function showRecording(r, auto) {
  selected = r;
  clearTimeout(plotRetry);
  document.querySelectorAll("#incidents tr").forEach((tr) => tr.classList.toggle("sel", tr.dataset.id == r.id));
  const q = "?item=" + encodeURIComponent(r.name) + "&message=" + encodeURIComponent(r.message.slice(0, 500));
  let resp;
  try { resp = await fetch("/api/snapshots/" + encodeURIComponent(r.snapshot) + "/plot" + q, {headers: authHeaders()}); }
  catch (e) { resp = null; }
  $("recording").hidden = false;
  $("plottitle").textContent = r.name + " (" + r.level_name + ": " + r.message + ")";
  if (!resp || !resp.ok) {
    const why = resp ? await reason(resp) : "server unreachable";
    drawRecording(null, r, why);
    if (selected === r && (!resp || resp.status === 404)) plotRetry = setTimeout(() => showRecording(r, auto), 3000);
    return;
  }
  drawRecording(await resp.json(), r);
}

function drawRecording(p, inc, why) {
  const svg = $("incplot"), W = 800, H = 260, top = 10, plotH = 170, bandY = 200, bandH = 16;
  svg.replaceChildren();
  if (!p) { svg.append(svgEl("text", {x: 10, y: 20}, "recording not available yet: " + why)); return; }
  const t0 = p.start ?? inc.t - 30, t1 = p.end ?? inc.t + 10;
  const xs = (t) => 40 + ((t - t0) / Math.max(1e-3, t1 - t0)) * (W - 50);
  for (let s = Math.ceil(t0 - inc.t); s <= t1 - inc.t; s += 5) {   // a grid line every 5 s, labelled from the incident
    svg.append(svgEl("line", {class: "grid", x1: xs(inc.t + s), x2: xs(inc.t + s), y1: top, y2: bandY + 2 * bandH + 8}));
    svg.append(svgEl("text", {x: xs(inc.t + s) - 8, y: H - 4}, (s > 0 ? "+" : "") + s + " s"));
  }
  const vals = p.value.map((v) => v[1]);
  if (vals.length) {
    let lo = Math.min(...vals), hi = Math.max(...vals);
    if (hi - lo < 1) { lo -= 0.5; hi += 0.5; }
    const ys = (v) => top + plotH - ((v - lo) / (hi - lo)) * plotH;
    svg.append(svgEl("polyline", {stroke: "#1e88e5", class: "value",
      points: p.value.map(([t, v]) => xs(t).toFixed(1) + "," + ys(v).toFixed(1)).join(" ")}));
    svg.append(svgEl("text", {x: 2, y: top + 8}, hi.toFixed(1)));
    svg.append(svgEl("text", {x: 2, y: top + plotH}, lo.toFixed(1)));
  } else {
    svg.append(svgEl("text", {x: 50, y: 40}, "no numeric value recorded for this item"));
  }
  // level bands: the item's, then the robot's top level
  [[p.level, bandY, "item"], [p.top_level, bandY + bandH + 4, "robot"]].forEach(([pts, y, label]) => {
    pts.forEach(([t, lv], i) => {
      const tn = i + 1 < pts.length ? pts[i + 1][0] : t1;
      svg.append(svgEl("rect", {class: "band", x: xs(t).toFixed(1), y: y, height: bandH,
                                width: Math.max(1, xs(tn) - xs(t)).toFixed(1), fill: LEVEL_FILL[lv] || "#9e9e9e"}));
    });
    svg.append(svgEl("text", {x: 2, y: y + 12}, label));
  });
  svg.append(svgEl("line", {class: "now", x1: xs(inc.t), x2: xs(inc.t), y1: top, y2: bandY + 2 * bandH + 4}));
  const leg = $("plotlegend");
  const a = el("span", {}, "— " + (p.key || "value") + " of " + (p.item || inc.name).split("/").pop()); a.style.color = "#1e88e5";
  const b = el("span", {}, "╎ incident"); b.style.color = "#c62828";
  leg.replaceChildren(a, b, el("span", {}, "bands: item level, robot top level (green OK, yellow WARN, red ERROR, grey STALE)"));
}

$("snapbtn").addEventListener("click", async () => {
  $("snapmsg").textContent = "asking…";
  try {
    const r = await fetch("/api/snapshot", {method: "POST", headers: Object.assign({"Content-Type": "application/json"}, authHeaders()), body: "{}"});
    const body = await r.json();
    $("snapmsg").textContent = r.ok ? "recording: " + body.message : "refused: " + (body.detail || body.message);
  } catch (e) { $("snapmsg").textContent = "failed: " + e; }
});

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

// The robot's pose, drawn from the same transforms as /tf (web_bridge sends
// every frame in base_link, and the URDF's shapes placed by them): a front
// view and a side view, in metres scaled to the picture.
const LINK_COLORS = {base: "#555", body: "#1e88e5", head: "#222", camera_link: "#c62828", mic_array: "#43a047",
                     left_antenna: "#fb8c00", right_antenna: "#fb8c00"};
const SCALE = 720, FLOOR = -0.177, GROUND_Y = 285;
const VIEWS = [{name: "front", cx: 160, x: (p) => p[1]}, {name: "side (from its right)", cx: 480, x: (p) => p[0]}];
function renderRobot(v) {
  const svg = $("robot");
  if (!v || !v.frames || !v.lines) return;
  svg.replaceChildren();
  const sy = (p) => (GROUND_Y - (p[2] - FLOOR) * SCALE).toFixed(1);
  for (const view of VIEWS) {
    const sx = (p) => (view.cx + view.x(p) * SCALE).toFixed(1);
    svg.append(svgEl("line", {class: "ground", x1: view.cx - 130, x2: view.cx + 130, y1: GROUND_Y, y2: GROUND_Y}));
    svg.append(svgEl("text", {x: view.cx - 130, y: 14}, view.name));
    for (const l of v.lines) {
      svg.append(svgEl("polyline", {"data-link": l.link, stroke: LINK_COLORS[l.link] || "#888",
                                    points: l.pts.map((p) => sx(p) + "," + sy(p)).join(" ")}));
    }
    const cam = v.frames.camera_optical_frame;
    if (cam) {   // where the camera looks: the optical frame's z axis
      const r = cam.r, end = [0, 1, 2].map((i) => cam.p[i] + 0.09 * r[i * 3 + 2]);
      svg.append(svgEl("line", {class: "view", x1: sx(cam.p), y1: sy(cam.p), x2: sx(end), y2: sy(end)}));
    }
  }
  const h = v.frames.head;
  if (h) {
    const r = h.r, deg = (a) => (Math.abs(a) < 1e-3 ? 0 : a * 180 / Math.PI).toFixed(1);
    $("robotpose").textContent = "head: roll " + deg(Math.atan2(r[7], r[8])) + "°, pitch " +
      deg(-Math.asin(Math.max(-1, Math.min(1, r[6])))) + "°, yaw " + deg(Math.atan2(r[3], r[0])) + "°, z " +
      (h.p[2] * 1000).toFixed(0) + " mm";
  }
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
  renderRobot(d.frames);
  if (d.camera_version > 0) renderCamera(d.camera_version);
  if (d.sample && (!history.length || d.sample.t > history[history.length - 1].t)) {
    history.push(d.sample);
    renderHistory();
  }
}

// A robot serving the network (host not loopback) asks for its token: the
// page asks once and keeps it for the tab (sessionStorage), sends it as
// `Authorization: Bearer` on fetches, and trades it for an HttpOnly session
// cookie (POST /api/session) that EventSource and <img> send; the token never
// goes into a URL. On loopback the reads are open and nothing is asked.
const KEY = "reachy_mini_token";
let es = null;

function authHeaders() {
  const t = sessionStorage.getItem(KEY);
  return t ? {Authorization: "Bearer " + t} : {};
}
async function reason(r) {
  try { return (await r.json()).detail || r.statusText; } catch (e) { return r.statusText; }
}
function askToken(why) {
  if (es) { es.close(); es = null; }
  $("login").hidden = false;
  $("loginerr").textContent = why || "";
  $("conn").textContent = "token needed"; $("conn").className = "lost";
  $("token").focus();
}

// -> true when the reads are open to us (no token needed, or a session cookie set)
async function authorize() {
  if (sessionStorage.getItem(KEY)) {
    const r = await fetch("/api/session", {method: "POST", headers: authHeaders()});
    if (r.ok || r.status === 403) return true;           // 403: no token configured, reads are open
    if (r.status === 401) sessionStorage.removeItem(KEY);
    askToken(await reason(r));
    return false;
  }
  const r = await fetch("/api/status");
  if (r.status === 401) { askToken(""); return false; }
  return true;
}

async function start() {
  let ok;
  try { ok = await authorize(); } catch (e) { setTimeout(start, 2000); return; }   // server away: retry
  if (!ok) return;
  $("login").hidden = true;
  fetch("/api/history?minutes=" + MINUTES, {headers: authHeaders()}).then((r) => r.ok ? r.json() : [])
    .then((h) => { history = h.concat(history); renderHistory(); }).catch(() => {});
  connect();
}

function connect() {
  es = new EventSource("/api/stream");
  es.onopen = () => { $("conn").textContent = "live"; $("conn").className = ""; };
  es.onmessage = (e) => render(JSON.parse(e.data));
  es.onerror = () => {
    $("conn").textContent = "connection lost — reconnecting…"; $("conn").className = "lost";
    // A network error reconnects by itself; an HTTP error (401: session gone,
    // 429) closes the stream: log in again (or ask) after a pause.
    if (es && es.readyState === EventSource.CLOSED) { es = null; setTimeout(start, 1000); }
  };
}

$("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(KEY, $("token").value.trim());
  $("token").value = "";
  start();
});
start();
