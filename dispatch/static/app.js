"use strict";
// The operator console: REST for reads and actions, the console stream
// (/v1/console/stream) for live updates, polling when the stream is down.
const $ = (id) => document.getElementById(id);
const OPEN = ["booked", "offered", "accepted", "en_route", "arrived", "in_service", "escalated"];
const state = { orders: new Map(), caregivers: new Map(), services: [], elder: null,
  current: null, seen: new Set(), alerted: new Set(), socket: null, lastSeq: null,
  clockOffsetMs: 0 };

const hashToken = new URLSearchParams(location.hash.slice(1)).get("token");
if (hashToken) { sessionStorage.setItem("token", hashToken); history.replaceState(null, "", location.pathname); }
const token = sessionStorage.getItem("token") || "";

async function api(method, path, body, headers) {
  const response = await fetch(path, {
    method, body: body === undefined ? undefined : JSON.stringify(body),
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json", ...(headers || {}) },
  });
  const data = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) throw new Error((data && data.message) || response.statusText);
  return data;
}

function localInput(date) {
  const d = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
}
function toIso(value) { return new Date(value).toISOString(); }
function fmtTime(iso) { return new Date(iso).toLocaleTimeString(lang === "en" ? "en-GB" : "zh-CN"); }

// Alerts: loud banner and a WebAudio beep (browsers may hold audio until a click).
let audio = null;
function beep() {
  try {
    audio = audio || new AudioContext();
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.frequency.value = 880; osc.type = "square"; gain.gain.value = 0.2;
    osc.connect(gain).connect(audio.destination);
    osc.start(); osc.stop(audio.currentTime + 0.6);
  } catch (err) { /* no audio device: the banner still flashes */ }
}
function raise(kind, key, text, alertId) {
  if (state.alerted.has(key)) return;
  state.alerted.add(key);
  const box = $("alert");
  box.hidden = false;
  box.dataset.alertId = alertId == null ? "" : String(alertId);
  box.className = "loud";
  box.dataset.kind = kind;
  box.textContent = `${t(kind === "escalated" ? "alert_escalated" : "alert_emergency")} · ${text}`;
  beep();
}
// A click silences the banner and acknowledges the alert it shows.
$("alert").addEventListener("click", () => {
  const box = $("alert");
  box.hidden = true;
  if (box.dataset.alertId) api("POST", `/v1/alerts/${box.dataset.alertId}/ack`).catch(() => {});
});

function absorb(order) {
  const known = state.orders.get(order.order_id);
  if (known && known.version > order.version) return;
  state.orders.set(order.order_id, order);
  if (order.priority === "emergency" && !state.seen.has(order.order_id) && OPEN.includes(order.status))
    raise("emergency", `em:${order.order_id}`, `${order.elder_id} ${order.service_code}`);
  if (order.status === "escalated") raise("escalated", `esc:${order.order_id}:${order.version}`, order.elder_id);
  state.seen.add(order.order_id);
  if (state.current === order.order_id) showOrder(order.order_id);
}

function render() {
  const lists = { new: [], offered: [], late: [], escalated: [] };
  const now = Date.now() + state.clockOffsetMs;
  for (const o of state.orders.values()) {
    if (!OPEN.includes(o.status)) continue;
    const late = ["booked", "offered", "accepted", "en_route"].includes(o.status) && Date.parse(o.latest) < now;
    if (o.status === "escalated") lists.escalated.push(o);
    else if (late) lists.late.push(o);
    else if (o.status === "booked") lists.new.push(o);
    else if (o.status === "offered") lists.offered.push(o);
  }
  for (const [name, orders] of Object.entries(lists)) {
    const ul = $(`q-${name}`);
    ul.replaceChildren(...orders.slice(0, 50).map((o) => {
      const li = document.createElement("li");
      li.className = `order ${o.priority}`;
      li.dataset.orderId = o.order_id;
      li.textContent = `${o.service_code} · ${o.elder_id} · ${o.status}`;
      li.onclick = () => showOrder(o.order_id);
      return li;
    }));
  }
  drawMap();
}

function drawMap() {
  const canvas = $("map");
  const ctx = canvas.getContext("2d");
  const points = [];
  for (const c of state.caregivers.values()) if (c.lat != null) points.push([c.lat, c.lon]);
  for (const o of state.orders.values()) if (OPEN.includes(o.status)) points.push([o.lat, o.lon]);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  // what the map shows, for people reading the page and for tests
  canvas.dataset.caregivers = String(points.length - [...state.orders.values()].filter((o) => OPEN.includes(o.status)).length);
  canvas.dataset.orders = String(points.length - Number(canvas.dataset.caregivers));
  if (!points.length) return;
  let [minLat, maxLat, minLon, maxLon] = [90, -90, 180, -180];
  for (const [la, lo] of points) {
    minLat = Math.min(minLat, la); maxLat = Math.max(maxLat, la);
    minLon = Math.min(minLon, lo); maxLon = Math.max(maxLon, lo);
  }
  const pad = 0.002;
  const x = (lon) => 10 + ((lon - minLon + pad) / (maxLon - minLon + 2 * pad)) * (canvas.width - 20);
  const y = (lat) => canvas.height - 10 - ((lat - minLat + pad) / (maxLat - minLat + 2 * pad)) * (canvas.height - 20);
  for (const c of state.caregivers.values()) {
    if (c.lat == null) continue;
    ctx.fillStyle = c.duty === "off_shift" ? "#aaa" : c.open_orders > 0 ? "#2b6cd4" : "#2e9d5b";
    ctx.beginPath(); ctx.arc(x(c.lon), y(c.lat), 5, 0, 2 * Math.PI); ctx.fill();
  }
  const colours = { emergency: "#d22", urgent: "#e80", routine: "#777" };
  for (const o of state.orders.values()) {
    if (!OPEN.includes(o.status)) continue;
    ctx.fillStyle = colours[o.priority] || "#777";
    ctx.fillRect(x(o.lon) - 4, y(o.lat) - 4, 8, 8);
  }
}

async function showOrder(orderId) {
  state.current = orderId;
  const [order, events, why] = await Promise.all([
    api("GET", `/v1/orders/${orderId}`),
    api("GET", `/v1/orders/${orderId}/events`),
    api("GET", `/v1/orders/${orderId}/explanation`),
  ]);
  $("order").hidden = false;
  $("order").dataset.orderId = orderId;
  $("order").dataset.version = order.version;
  $("o-id").textContent = orderId;
  $("o-status").textContent = order.status;
  $("o-priority").textContent = order.priority;
  $("o-provider").textContent = order.provider_id || order.offer_provider_id || t("none");
  $("o-timeline").replaceChildren(...events.map((e) => {
    const li = document.createElement("li");
    li.dataset.trigger = e.trigger;
    li.textContent = `${fmtTime(e.at)} ${e.trigger}: ${e.from_status || "-"} → ${e.to_status} (${e.actor_role}:${e.actor_id})${e.reason ? " · " + e.reason : ""}`;
    return li;
  }));
  $("o-explanation").textContent = why.explanation ? explain(why) : t("none");
}

// The dispatcher's reasons in words; fields it did not record are left out.
function explain(why) {
  const e = why.explanation;
  const lines = [`${why.provider_id} · ${t("offered_by")} ${why.offered_by}`];
  const fields = [
    ["travel_added_min", (v) => `${v} min`], ["skills_matched", (v) => v.join(", ") || "-"],
    ["continuity", (v) => (v ? "✓" : "✗")], ["load", String], ["lateness_min", (v) => `${v} min`],
    ["candidates", String], ["reason", String], ["chosen_by", String],
  ];
  for (const [key, show] of fields) if (e[key] !== undefined) lines.push(`${t("x_" + key)}: ${show(e[key])}`);
  for (const alt of e.alternatives || [])
    lines.push(`  ✗ ${alt.caregiver_id} (+${alt.travel_added_min} min): ${alt.why_lost || ""}`);
  const rejected = Object.entries(e.rejected || {});
  if (rejected.length) lines.push(`${t("x_rejected")}: ${rejected.map(([k, v]) => `${k} ${v}`).join(", ")}`);
  return lines.join("\n");
}

async function orderAction(path, body) {
  const orderId = $("order").dataset.orderId;
  $("order-msg").textContent = "";
  try {
    absorb(await api("POST", `/v1/orders/${orderId}/${path}`, body));
    await showOrder(orderId);
    render();
  } catch (err) { $("order-msg").textContent = err.message; }
}
$("reassign").onsubmit = (ev) => {
  ev.preventDefault();
  const caregiver = $("r-caregiver").value.trim();
  orderAction("reassign", { reason: $("r-reason").value, ...(caregiver ? { caregiver_id: caregiver } : {}) });
};
$("cancel").onsubmit = (ev) => { ev.preventDefault(); orderAction("cancel", { reason: $("c-reason").value }); };
$("close").onsubmit = (ev) => {
  ev.preventDefault();
  orderAction("close", {
    record_ok: $("cl-ok").checked, rating: Number($("cl-rating").value),
    settlement_cents: Number($("cl-settlement").value), follow_up: $("cl-follow").value,
  });
};

// Hotline intake: find the elder by phone, then book.
$("find").onsubmit = async (ev) => {
  ev.preventDefault();
  $("intake-msg").textContent = "";
  try {
    const elders = await api("GET", `/v1/elders?phone=${encodeURIComponent($("phone").value)}`);
    if (!elders.length) $("intake-msg").textContent = t("no_elder");
    $("elders").replaceChildren(...elders.map((e) => {
      const li = document.createElement("li");
      li.dataset.elderId = e.elder_id;
      li.textContent = `${e.name} · ${e.phone} · ${e.address || e.region_id}`;
      li.onclick = () => chooseElder(e);
      return li;
    }));
    if (elders.length === 1) chooseElder(elders[0]);
  } catch (err) { $("intake-msg").textContent = err.message; }
};
function chooseElder(elder) {
  state.elder = elder;
  $("elder-chosen").textContent = `${elder.name} (${elder.elder_id})`;
  $("book").hidden = false;
  const now = new Date();
  $("earliest").value = localInput(now);
  $("latest").value = localInput(new Date(now.getTime() + 2 * 3600e3));
}
$("book").onsubmit = async (ev) => {
  ev.preventDefault();
  try {
    const order = await api("POST", "/v1/orders", {
      elder_id: state.elder.elder_id, service_code: $("service").value,
      earliest: toIso($("earliest").value), latest: toIso($("latest").value),
      priority: $("priority").value, notes: $("notes").value,
    }, { "Idempotency-Key": crypto.randomUUID ? crypto.randomUUID() : String(Math.random()) });
    $("intake-msg").textContent = `${t("booked_ok")} ${order.order_id}`;
    absorb(order);
    refreshKpis();
    render();
    await showOrder(order.order_id);
  } catch (err) { $("intake-msg").textContent = err.message; }
};

async function loadOrders() {
  const page = await api("GET", `/v1/orders?status=${OPEN.join(",")}&limit=500`);
  for (const o of page.orders) absorb(o);
  if (state.current && !page.orders.some((o) => o.order_id === state.current)) {
    const current = await api("GET", `/v1/orders/${state.current}`);
    absorb(current);
  }
}
async function loadCaregivers() {
  for (const c of await api("GET", "/v1/caregivers?limit=500")) state.caregivers.set(c.caregiver_id, c);
}
// KPIs follow changes, at most every two seconds.
let kpiTimer = null;
function refreshKpis() {
  if (kpiTimer) return;
  kpiTimer = setTimeout(() => { kpiTimer = null; loadKpis().catch(() => {}); }, 2000);
}
async function loadKpis() {
  const r = await api("GET", "/v1/reports/summary");
  // lateness is judged on the node's clock (a simulated day runs elsewhere)
  state.clockOffsetMs = Date.parse(r.generated_at) - Date.now();
  const total = Object.values(r.orders_by_status).reduce((a, b) => a + b, 0);
  const items = [
    [t("kpi_today"), `${total} (${Object.entries(r.orders_by_status).map(([k, v]) => `${k} ${v}`).join(", ") || "-"})`],
    [t("kpi_on_time"), r.on_time_rate == null ? "-" : `${Math.round(r.on_time_rate * 100)}%`],
    [t("kpi_em_accept"), r.emergency_accept_s ? `${r.emergency_accept_s.p50} s` : "-"],
  ];
  $("kpis").replaceChildren(...items.map(([k, v]) => {
    const span = document.createElement("span");
    span.className = "kpi";
    span.append(`${k}: `);
    const b = document.createElement("b"); b.textContent = v; span.append(b);
    return span;
  }));
}

// Live: the console stream, or polling twice a second when it is down.
function onMessage(raw) {
  const msg = JSON.parse(raw);
  const body = msg.body || msg;
  if (msg.seq != null) state.lastSeq = msg.seq;
  if (msg.type === "snapshot") {
    for (const o of body.orders || []) absorb(o);
    for (const c of body.caregivers || []) state.caregivers.set(c.caregiver_id, { ...state.caregivers.get(c.caregiver_id), ...c });
    for (const a of body.alerts || []) raise(a.kind, `al:${a.alert_id}`, a.message, a.alert_id);
  } else if (msg.type === "order_event") {
    if (body.order) absorb(body.order);
    refreshKpis();
    if (state.current && body.event && body.event.order_id === state.current) showOrder(state.current);
  } else if (msg.type === "caregivers") {
    for (const c of body.caregivers || []) state.caregivers.set(c.caregiver_id, { ...state.caregivers.get(c.caregiver_id), ...c });
  } else if (msg.type === "alert") {
    raise(body.kind, `al:${body.alert_id}`, body.message || body.order_id || "", body.alert_id);
  }
  render();
}
function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  let socket;
  // The feed takes no messages: a reconnect resumes with ?last_seq=.
  const resume = state.lastSeq == null ? "" : `&last_seq=${state.lastSeq}`;
  try { socket = new WebSocket(`${scheme}://${location.host}/v1/console/stream?access_token=${encodeURIComponent(token)}${resume}`); }
  catch (err) { return; }
  socket.onopen = () => {
    state.socket = socket;
    $("live").textContent = t("live"); $("live").className = "pill on";
  };
  socket.onmessage = (ev) => onMessage(ev.data);
  socket.onclose = (ev) => {
    state.socket = null;
    $("live").className = "pill";
    $("live").dataset.closed = `${ev.code} ${ev.reason}`;
    setTimeout(connect, 3000);
  };
}
async function poll() {
  if (!state.socket) {
    try {
      await loadOrders();
      for (const a of await api("GET", "/v1/alerts")) raise(a.kind, `al:${a.alert_id}`, a.message, a.alert_id);
      if (!state.socket) $("live").textContent = t("polling");
      render();
    } catch (err) { if (!state.socket) $("live").textContent = t("offline"); }
  }
  setTimeout(poll, 500);
}

async function start() {
  applyLang();
  $("lang").onclick = () => { lang = lang === "en" ? "zh" : "en"; sessionStorage.setItem("lang", lang); applyLang(); render(); loadKpis(); };
  state.services = await api("GET", "/v1/services");
  $("service").replaceChildren(...state.services.map((s) => {
    const opt = document.createElement("option");
    opt.value = s.service_code;
    opt.textContent = lang === "en" ? s.name_en : s.name_zh;
    return opt;
  }));
  await Promise.all([loadOrders(), loadCaregivers().catch(() => {}), loadKpis().catch(() => {})]);
  render();
  document.body.dataset.ready = "true";
  connect();
  poll();
  setInterval(() => { loadCaregivers().then(render).catch(() => {}); loadKpis().catch(() => {}); }, 10000);
}
start().catch((err) => { $("intake-msg").textContent = err.message; });
