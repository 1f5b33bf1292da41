// Switchboard live dashboard: reads /v1/dashboard/events (server-sent events over fetch, so the
// bearer token travels in a header) and draws each snapshot. Every text from the server goes in
// through textContent, never as HTML: dead-letter reasons are an attacker's words.
"use strict";

const KEY = "switchboard.dashboard.token";
const COLOURS = ["#0b57d0", "#b3261e", "#146c2e", "#7d5260", "#8a5a00", "#5b3cc4", "#006a6a"];
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const h = Math.floor(m / 60);
  return h < 48 ? `${h}h ${m % 60}m` : `${Math.floor(h / 24)}d ${h % 24}h`;
}

function percent(share) {
  return share === null || share === undefined ? "–" : `${(share * 100).toFixed(share === 1 || share === 0 ? 0 : 1)}%`;
}

// times are shown in the policy's timezone, the one "today" is counted in
let zone = "UTC";

function when(iso) {
  if (!iso) return "never";
  return new Date(iso).toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit", second: "2-digit",
    timeZone: zone });
}

function slaClass(share) {
  if (share === null || share === undefined) return "";
  return share >= 0.95 ? "good" : share >= 0.8 ? "meh" : "bad";
}

// a table: columns are [heading, cell(row) → text or Node, css class]
function table(caption, columns, rows, testid) {
  if (!rows.length) return el("p", { class: "empty" }, `No ${caption.toLowerCase()} yet.`);
  const head = el("tr", {}, ...columns.map(([h, , cls]) => el("th", { scope: "col", class: cls }, h)));
  const body = rows.map((row) => el("tr", {}, ...columns.map(([heading, cell, cls], i) => {
    const value = cell(row);
    return i === 0 ? el("th", { scope: "row", class: "text" }, value)
      : el("td", { class: cls, "data-col": heading }, value);
  })));
  return el("table", { "data-testid": testid }, el("caption", { class: "visually-hidden" }, caption),
    el("thead", {}, head), el("tbody", {}, ...body));
}

function bar(value, max, label) {
  const span = el("span", { class: "bar", role: "img", "aria-label": label });
  span.style.width = `${max ? Math.max(2, Math.round((value / max) * 48)) : 0}px`;
  return span;
}

function withBar(text, value, max, label) {
  const wrap = el("span", {}, text);
  if (value) wrap.append(bar(value, max, label));
  return wrap;
}

function pill(c) {
  const ok = c.connected === null ? "OK" : "connected";
  const words = { ok, errors: "errors", down: c.connected === false ? "disconnected" : "down" };
  return el("span", { class: `pill ${c.status}` }, words[c.status] || c.status);
}

function setKpi(id, text, bad) {
  const node = document.querySelector(`[data-testid="${id}"]`);
  node.textContent = text;
  node.classList.toggle("bad", Boolean(bad));
}

function drawKpis(s) {
  const sum = (k) => s.segments.reduce((n, r) => n + r[k], 0);
  const met = s.segments.reduce((n, r) => n + r.sla.met, 0);
  const missed = s.segments.reduce((n, r) => n + r.sla.missed, 0);
  const oldest = Math.max(-1, ...s.segments.map((r) => r.oldest_wait_seconds ?? -1));
  setKpi("kpi-waiting", sum("waiting"));
  setKpi("kpi-oldest", oldest < 0 ? "–" : duration(oldest));
  setKpi("kpi-sla", met + missed ? percent(met / (met + missed)) : "–", missed && met / (met + missed) < 0.8);
  setKpi("kpi-breaches", `${sum("warnings")} / ${sum("breaches")}`, sum("breaches") > 0);
  setKpi("kpi-routed", sum("routed"));
  setKpi("kpi-replied", sum("replied"));
  setKpi("kpi-dead", s.dead_letters.today, s.dead_letters.today > 0);
}

function drawThroughput(s) {
  const { minutes, series } = s.throughput;
  const channels = Object.keys(series);
  const totals = minutes.map((_, i) => channels.reduce((n, c) => n + series[c][i], 0));
  const max = Math.max(1, ...totals);
  const W = 600, H = 130, pad = 18, bw = (W - pad) / minutes.length;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  const total = totals.reduce((a, b) => a + b, 0);
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `${total} messages routed in the last hour, at most ${max} in one minute` +
    (channels.length ? `, channels: ${channels.join(", ")}` : ""));
  const line = (y, label) => {
    const l = document.createElementNS(ns, "line");
    for (const [k, v] of Object.entries({ x1: pad, x2: W, y1: y, y2: y, stroke: "#d0d7de" })) l.setAttribute(k, v);
    const t = document.createElementNS(ns, "text");
    for (const [k, v] of Object.entries({ x: 0, y: y + 4, "font-size": 10, fill: "#4b5563" })) t.setAttribute(k, v);
    t.textContent = label;
    svg.append(l, t);
  };
  line(4, String(max));
  line(H - 2, "0");
  minutes.forEach((_, i) => {
    let y = H - 2;
    channels.forEach((c, j) => {
      const v = series[c][i];
      if (!v) return;
      const h = (v / max) * (H - 8);
      y -= h;
      const r = document.createElementNS(ns, "rect");
      for (const [k, val] of Object.entries({ x: pad + i * bw + 0.5, y, width: Math.max(1, bw - 1), height: h,
        fill: COLOURS[j % COLOURS.length] })) r.setAttribute(k, val);
      svg.append(r);
    });
  });
  const legend = el("div", { class: "legend", "aria-hidden": "true" }, ...channels.map((c, j) => {
    const sw = el("span", { class: "swatch" });
    sw.style.background = COLOURS[j % COLOURS.length];
    return el("span", {}, sw, c);
  }));
  $("throughput-chart").replaceChildren(svg, legend);
  const rows = minutes.map((m, i) => ({ m, i })).filter(({ i }) => totals[i] > 0);
  $("throughput-table").replaceChildren(table("Messages per minute", [
    ["minute", (r) => when(r.m)],
    ...channels.map((c) => [c, (r) => series[c][r.i]]),
    ["total", (r) => totals[r.i]],
  ], rows, "throughput-table"));
}

function drawSegments(s) {
  $("segments").replaceChildren(table("Tiers and channels", [
    ["tier", (r) => r.tier, "text"],
    ["channel", (r) => r.channel, "text"],
    ["waiting", (r) => r.waiting],
    ["oldest wait", (r) => duration(r.oldest_wait_seconds)],
    ["SLA met", (r) => el("span", { class: slaClass(r.sla.attainment) },
      `${percent(r.sla.attainment)} (${r.sla.met}/${r.sla.met + r.sla.missed})`)],
    ["warnings", (r) => r.warnings],
    ["breaches", (r) => el("span", { class: r.breaches ? "bad" : "" }, r.breaches)],
    ["routed", (r) => r.routed],
    ["replied", (r) => r.replied],
    ["ack p50", (r) => duration(r.acknowledgement.p50_seconds)],
    ["ack p90", (r) => duration(r.acknowledgement.p90_seconds)],
  ], s.segments, "segments"));
}

function drawQueues(s) {
  const max = Math.max(0, ...s.queues.map((q) => q.owed));
  $("queues").replaceChildren(table("Queues", [
    ["queue", (q) => q.queue],
    ["owed", (q) => withBar(q.owed, q.owed, max, `${q.owed} responses owed in ${q.queue}`)],
    ["backlog", (q) => q.backlog],
    ["oldest", (q) => duration(q.oldest_wait_seconds)],
    ["ans./h", (q) => q.answered_last_hour],
    ["ETA", (q) => (q.eta_seconds === null ? "n/a" : duration(q.eta_seconds))],
  ], s.queues, "queues"));
}

function drawConnectors(s) {
  const columns = [
    ["connector", (c) => c.name],
    ["status", (c) => pill(c)],
    ["last", (c) => when(c.last_message_at)],
    ["today", (c) => c.messages_today],
    ["errors", (c) => c.errors_today],
  ];
  // the probe column appears once a probe reports (sb_probe_seconds / sb_probe_failures_total)
  if (s.connectors.some((c) => c.probe)) {
    // a failing probe says how in red words (silent, slow, failed), not colour alone, its reason
    // on hover; a passing one shows its time
    const failing = (p) => el("span", { class: "bad", title: p.reason || "" }, p.verdict || "failing");
    columns.push(["probe", (c) => (!c.probe ? "–" : c.probe.failing ? failing(c.probe)
      : duration(c.probe.seconds))]);
  }
  $("connectors").replaceChildren(table("Connectors", columns, s.connectors, "connectors"));
}

function drawAgents(s) {
  const timing = [
    ["replies", (a) => a.count],
    ["p50", (a) => duration(a.p50_seconds)],
    ["p90", (a) => duration(a.p90_seconds)],
  ];
  const parts = [table("First replies by agent", [["agent", (a) => a.agent], ...timing], s.agents, "agents")];
  // by the account customers wrote to (a mailbox, an X handle), once a channel names one
  if (s.accounts.length) {
    parts.push(table("First replies by account", [["account", (a) => a.name], ...timing], s.accounts,
      "accounts"));
    parts.push(table("First replies by account and agent",
      [["account and agent", (a) => `${a.name} \u00b7 ${a.agent}`], ...timing], s.account_agents,
      "account-agents"));
  }
  $("agents").replaceChildren(...parts);
}

function drawTools(s) {
  $("tools").replaceChildren(table("Deliveries", [
    ["destination", (t) => t.destination],
    ["delivered", (t) => t.delivered],
    ["failed", (t) => el("span", { class: t.failed ? "bad" : "" }, t.failed)],
  ], s.tools, "tools"));
}

function drawDead(s) {
  const stages = Object.entries(s.dead_letters.by_stage).map(([k, v]) => `${k}: ${v}`).join(", ");
  if (!s.dead_letters.latest.length) {
    $("dead").replaceChildren(el("p", { class: "empty" }, "None."));
    return;
  }
  $("dead").replaceChildren(
    el("p", { class: "empty" }, stages ? `Today by stage — ${stages}` : "None today."),
    table("Dead letters", [
      ["at", (d) => when(d.at)],
      ["stage", (d) => d.stage, "text"],
      ["channel", (d) => d.channel || "–", "text"],
      ["reason", (d) => d.reason, "reason"],
    ], s.dead_letters.latest, "dead-letters"));
}

function draw(s) {
  zone = s.timezone;
  drawKpis(s);
  drawThroughput(s);
  drawSegments(s);
  drawQueues(s);
  drawConnectors(s);
  drawAgents(s);
  drawTools(s);
  drawDead(s);
  const problems = $("problems");
  problems.hidden = !s.problems.length;
  problems.textContent = s.problems.join(" · ");
  $("board").setAttribute("aria-busy", "false");
  // the live region changes only with the connection; the time ticks outside it
  status(`Live · ${s.day} (${s.timezone})`);
  $("updated").textContent = `· updated ${when(s.now)}`;
  document.body.dataset.updated = s.now;
}

function status(text) {
  if ($("status").textContent !== text) $("status").textContent = text;
}

async function stream(token, signal) {
  const response = await fetch("/v1/dashboard/events", {
    headers: { Authorization: `Bearer ${token}`, Accept: "text/event-stream" }, signal, cache: "no-store",
  });
  if (response.status === 401 || response.status === 403) {
    const body = await response.json().catch(() => ({}));
    throw Object.assign(new Error(body.error ? body.error.message : "refused"), { refused: true });
  }
  if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
      if (data && /^event: snapshot$/m.test(block)) draw(JSON.parse(data));
    }
  }
}

async function follow(token) {
  let wait = 500;
  for (;;) {
    try {
      await stream(token, undefined);
      wait = 500;  // the server ends each stream before its deadline: reconnect at once
    } catch (e) {
      if (e.refused) {
        sessionStorage.removeItem(KEY);
        status(`Token refused: ${e.message}`);
        showLogin();
        return;
      }
      status(`Reconnecting… (${e.message})`);
      await new Promise((r) => setTimeout(r, wait));
      wait = Math.min(wait * 2, 10000);
    }
  }
}

function showLogin() {
  $("login").hidden = false;
  $("logout").hidden = true;
  $("token").focus();
}

function start(token) {
  $("login").hidden = true;
  $("logout").hidden = false;
  status("Connecting…");
  follow(token);
}

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = $("token").value.trim();
    if (!token) return;
    sessionStorage.setItem(KEY, token);
    $("token").value = "";
    start(token);
  });
  $("logout").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    location.reload();
  });
  const token = sessionStorage.getItem(KEY);
  if (token) start(token); else { status("Enter a token to see the dashboard"); showLogin(); }
});
