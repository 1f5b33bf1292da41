/* Switchboard web chat widget: one tag, no build step.
 *   <script src="https://support.example.com/chat/widget.js" async></script>
 * Optional attributes: data-title, data-user-email + data-user-hash (the site vouches for
 * its logged-in user: hex HMAC-SHA256 of the email under the site secret), data-open.
 * Messages are numbered by the server; the widget shows each number once, in order, and
 * on reconnect asks for everything after the last number it shows. Sends carry the
 * widget's own id, kept in localStorage until the server confirms them, so a resend after
 * a drop or a reload is still one message.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.SwitchboardChat) { return; }
  var base = new URL(script.src, document.baseURI);
  var origin = base.origin;
  var socketUrl = origin.replace(/^http/, "ws") + "/v1/chat/socket";
  var store = "sb-chat:" + origin;
  var data = script.dataset;

  var link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = origin + "/chat/widget.css";
  document.head.appendChild(link);

  function load(name, fallback) {
    try { var v = localStorage.getItem(store + ":" + name); return v === null ? fallback : JSON.parse(v); }
    catch (e) { return fallback; }
  }
  function save(name, value) {
    try { localStorage.setItem(store + ":" + name, JSON.stringify(value)); } catch (e) { /* private mode */ }
  }
  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  var session = load("session", null);
  var outbox = load("outbox", []);   // [{id, text}] not yet confirmed by the server
  var lastSeq = 0;                    // the newest number on screen
  var ws = null, attempt = 0, timer = null, greeted = false;

  var root = el("section", "sb-chat" + (data.open === "false" ? " sb-closed" : ""));
  root.setAttribute("aria-label", "Chat");
  var head = el("header", "sb-head", data.title || "Chat with us");
  var status = el("p", "sb-status", "Connecting…");
  status.setAttribute("role", "status");
  var list = el("ol", "sb-log");
  list.setAttribute("aria-live", "polite");
  var pending = el("ol", "sb-pending");
  var offer = el("form", "sb-email");
  var emailInput = el("input");
  emailInput.type = "email"; emailInput.placeholder = "Your email, to continue by mail";
  emailInput.setAttribute("aria-label", "Your email");
  var emailButton = el("button", null, "Email me");
  emailButton.type = "submit";
  offer.append(emailInput, emailButton);
  var form = el("form", "sb-send");
  var input = el("textarea");
  input.rows = 2; input.placeholder = "Write a message…"; input.setAttribute("aria-label", "Message");
  var sendButton = el("button", null, "Send");
  sendButton.type = "submit";
  form.append(input, sendButton);
  root.append(head, status, list, pending, offer, form);
  head.addEventListener("click", function () { root.classList.toggle("sb-closed"); });

  function say(frame) {
    if (ws && ws.readyState === WebSocket.OPEN && greeted) { ws.send(JSON.stringify(frame)); return true; }
    return false;
  }
  function showPending() {
    pending.replaceChildren();
    outbox.forEach(function (m) {
      var item = el("li", "sb-msg sb-visitor sb-unsent", m.text);
      item.dataset.id = m.id;
      pending.appendChild(item);
    });
  }
  function confirm(id) {
    var before = outbox.length;
    outbox = outbox.filter(function (m) { return m.id !== id; });
    if (outbox.length !== before) { save("outbox", outbox); showPending(); }
  }
  function ack() {
    if (document.visibilityState === "visible" && lastSeq > 0) { say({ type: "ack", seq: lastSeq }); }
  }
  function show(frame) {
    if (frame.seq <= lastSeq) { return; }          // already on screen: a replay's overlap
    if (frame.seq !== lastSeq + 1) { drop(); return; }  // a hole: reconnect, the server fills it
    var item = el("li", "sb-msg sb-" + frame.author);
    item.dataset.seq = String(frame.seq);
    item.dataset.id = frame.id;
    if (frame.author !== "visitor") { item.appendChild(el("span", "sb-who", frame.name || "Support")); }
    if (frame.kind === "transcript") { item.appendChild(el("span", "sb-who", "You, by email")); }
    item.appendChild(el("span", "sb-text", frame.text));
    list.appendChild(item);
    lastSeq = frame.seq;
    if (frame.author === "visitor") { confirm(frame.id); }
    list.scrollTop = list.scrollHeight;
  }
  function onFrame(event) {
    var frame;
    try { frame = JSON.parse(event.data); } catch (e) { return; }
    if (frame.type === "welcome") {
      if (!session || session.id !== frame.session) { list.replaceChildren(); lastSeq = 0; }
      session = { id: frame.session, token: frame.token };
      save("session", session);
      greeted = true; attempt = 0;
      status.textContent = "Connected";
      root.dataset.state = "open";
      if (frame.email) { emailInput.value = frame.email; }
      outbox.forEach(function (m) { say({ type: "message", id: m.id, text: m.text }); });
    } else if (frame.type === "message") {
      show(frame);
      ack();
    } else if (frame.type === "accepted") {
      confirm(frame.id);
    } else if (frame.type === "status") {
      status.textContent = frame.open_now ? ("We're here. Expect an answer by " + frame.expected_text + ".")
        : ("We're away until " + frame.opens_text + ". Expect an answer by " + frame.expected_text +
           "; leave your email and we'll continue by mail.");
      offer.hidden = !frame.offer_email;
      root.dataset.waiting = frame.open_now ? "no" : "yes";
    } else if (frame.type === "email") {
      status.textContent = "We will email " + frame.address + " if you leave before we answer.";
    } else if (frame.type === "error") {
      status.textContent = frame.message;
      root.dataset.error = frame.code;
      if (frame.id && ["empty", "too_long"].indexOf(frame.code) >= 0) { confirm(frame.id); }
      if (frame.id && frame.retry_after) {
        setTimeout(function () {
          outbox.filter(function (m) { return m.id === frame.id; })
            .forEach(function (m) { say({ type: "message", id: m.id, text: m.text }); });
        }, Math.min(frame.retry_after, 60) * 1000);
      }
    }
  }
  function connect() {
    timer = null; greeted = false;
    ws = new WebSocket(socketUrl);
    ws.onopen = function () {
      ws.send(JSON.stringify({
        type: "hello", session: session && session.id, token: session && session.token, last_seq: lastSeq,
        user_email: data.userEmail || null, user_hash: data.userHash || null }));
    };
    ws.onmessage = onFrame;
    ws.onclose = function () {
      ws = null; greeted = false; root.dataset.state = "closed";
      status.textContent = "Reconnecting…";
      // exponential backoff with jitter, capped, and no give-up
      var delay = Math.min(30000, 500 * Math.pow(2, attempt++)) * (0.5 + Math.random() / 2);
      if (!timer) { timer = setTimeout(connect, delay); }
    };
  }
  function drop() { if (ws) { ws.close(); } }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text) { return; }
    var message = { id: "m" + Date.now().toString(36) + Math.random().toString(36).slice(2, 10), text: text };
    outbox.push(message); save("outbox", outbox); showPending();
    input.value = "";
    say({ type: "message", id: message.id, text: message.text });
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); form.requestSubmit(); }
  });
  offer.addEventListener("submit", function (event) {
    event.preventDefault();
    say({ type: "email", address: emailInput.value });
  });
  document.addEventListener("visibilitychange", ack);

  function mount() { document.body.appendChild(root); showPending(); connect(); }
  if (document.body) { mount(); } else { document.addEventListener("DOMContentLoaded", mount); }
  window.SwitchboardChat = { drop: drop };
})();
