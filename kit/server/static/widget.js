/* kit's website chat widget. One tag adds it to a page:
 *   <script src="https://assistant.example.com/widget.js" data-key="PUBLISHABLE_KEY" defer></script>
 * Optional: data-position="left", data-title="…" (else domain.yaml's ui.title).
 * kit serve fills in CONFIG (domain.yaml's ui and persona). Plain JavaScript, no build step; everything lives in a
 * shadow root, so the page's styles and the widget's never mix. Text from the server is set as text, never as HTML.
 */
(function () {
  "use strict";
  var CONFIG = /*KIT_CONFIG*/null;
  var tag = document.currentScript;
  if (!CONFIG || !tag || document.getElementById("kit-widget")) return;
  var base = tag.src.replace(/\/widget\.js(\?.*)?$/, "");
  var key = tag.getAttribute("data-key") || "";
  var left = tag.getAttribute("data-position") === "left";
  var title = tag.getAttribute("data-title") || CONFIG.title;
  var history = [];
  var conversation = null;
  var lastQuestion = "";

  var css = [
    ":host{all:initial;--p:" + CONFIG.primary + ";--s:" + CONFIG.secondary + ";font:15px/1.45 system-ui,sans-serif;color:#1f2937}",
    ".bubble{position:fixed;bottom:20px;" + (left ? "left" : "right") + ":20px;width:56px;height:56px;border-radius:50%;border:0;display:grid;place-items:center;",
    "background:var(--p);color:#fff;font-size:26px;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25);z-index:2147483646}",
    ".panel{position:fixed;bottom:88px;" + (left ? "left" : "right") + ":20px;width:min(370px,calc(100vw - 40px));height:min(540px,calc(100vh - 110px));",
    "display:flex;flex-direction:column;background:#fff;border-radius:12px;box-shadow:0 8px 30px rgba(0,0,0,.3);overflow:hidden;z-index:2147483647}",
    ".panel[hidden]{display:none}",
    "header{display:flex;align-items:center;justify-content:space-between;background:var(--p);color:#fff;padding:10px 14px;font-weight:600}",
    "header button{background:transparent;border:0;color:#fff;font-size:22px;cursor:pointer;line-height:1}",
    ".log{flex:1;overflow-y:auto;padding:12px;background:var(--s)}",
    ".msg{margin:6px 0;padding:8px 11px;border-radius:10px;max-width:85%;white-space:pre-wrap;word-wrap:break-word}",
    ".user{background:var(--p);color:#fff;margin-left:auto}",
    ".bot{background:#fff;border:1px solid #e5e7eb}",
    ".error{border-color:#dc2626}",
    ".src-label{margin:8px 0 0;padding-top:6px;border-top:1px solid #e5e7eb;font-size:12px;font-weight:600;color:#4b5563}",
    ".sources{margin:2px 0 0;padding:0 0 0 18px;font-size:12.5px;color:#4b5563}",
    ".sources .cited{font-weight:600;color:#111827}",
    "form.ask{display:flex;gap:6px;padding:10px;border-top:1px solid #e5e7eb}",
    "input,textarea{flex:1;font:inherit;padding:7px 9px;border:1px solid #9ca3af;border-radius:8px;box-sizing:border-box;width:100%}",
    "button.send,form.lead button{background:var(--p);color:#fff;border:0;border-radius:8px;padding:7px 12px;font:inherit;cursor:pointer}",
    "button:disabled{opacity:.6;cursor:wait}",
    "form.lead{background:#fff;border:1px solid #e5e7eb;border-radius:10px;padding:10px;margin:6px 0;display:grid;gap:6px}",
    "form.lead label{font-size:13px;display:grid;gap:2px}",
    ".status{font-size:13px;margin:0}",
    ".status.bad{color:#b91c1c}",
    ":focus-visible{outline:3px solid #f59e0b;outline-offset:2px}",
    ".sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}"
  ].join("\n");

  function el(name, attrs, text) {
    var node = document.createElement(name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text) node.textContent = text;
    return node;
  }

  function icon() {  // a speech bubble, drawn: no emoji font needed
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", "28");
    svg.setAttribute("height", "28");
    svg.setAttribute("aria-hidden", "true");
    var path = document.createElementNS(ns, "path");
    path.setAttribute("fill", "currentColor");
    path.setAttribute("d", "M4 3h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2z");
    svg.appendChild(path);
    return svg;
  }

  var host = el("div", { id: "kit-widget" });
  var root = host.attachShadow({ mode: "open" });
  var style = el("style");
  style.textContent = css;
  var bubble = el("button", { "class": "bubble", type: "button", "aria-label": "Open chat with " + CONFIG.assistant,
                              "aria-expanded": "false", "aria-controls": "kit-panel" });
  bubble.appendChild(icon());
  var panel = el("section", { "class": "panel", id: "kit-panel", role: "dialog", "aria-label": title, hidden: "" });
  var header = el("header");
  var close = el("button", { type: "button", "aria-label": "Close chat" }, "\u00D7");
  header.appendChild(el("span", { id: "kit-title" }, title));
  header.appendChild(close);
  var log = el("div", { "class": "log", role: "log", "aria-live": "polite", "aria-label": "Conversation" });
  var ask = el("form", { "class": "ask" });
  var input = el("input", { id: "kit-question", type: "text", autocomplete: "off", maxlength: "4000",
                            placeholder: "Ask a question\u2026" });
  var send = el("button", { "class": "send", type: "submit" }, "Send");
  ask.appendChild(el("label", { "class": "sr", "for": "kit-question" }, "Your question"));
  ask.appendChild(input);
  ask.appendChild(send);
  panel.appendChild(header);
  panel.appendChild(log);
  panel.appendChild(ask);
  root.appendChild(style);
  root.appendChild(bubble);
  root.appendChild(panel);
  document.body.appendChild(host);

  function say(kind, text) {
    var node = el("div", { "class": "msg " + kind });
    var body = el("div", {}, text);
    node.appendChild(body);
    log.appendChild(node);
    log.scrollTop = log.scrollHeight;
    return { node: node, body: body };
  }
  say("bot", CONFIG.greeting);

  function open() {
    panel.hidden = false;
    bubble.setAttribute("aria-expanded", "true");
    input.focus();
  }
  function shut() {
    panel.hidden = true;
    bubble.setAttribute("aria-expanded", "false");
    bubble.focus();
  }
  bubble.addEventListener("click", function () { if (panel.hidden) open(); else shut(); });
  close.addEventListener("click", shut);
  root.addEventListener("keydown", function (e) { if (e.key === "Escape" && !panel.hidden) { e.preventDefault(); shut(); } });

  function post(path, body) {
    return fetch(base + path, {
      method: "POST", mode: "cors", credentials: "omit",
      headers: { "Content-Type": "application/json", "Authorization": "Bearer " + key },
      body: JSON.stringify(body)
    }).then(function (resp) {
      if (resp.ok) return resp;
      return resp.json().catch(function () { return {}; }).then(function (b) {
        throw new Error((b.error && b.error.message) || "the assistant answered " + resp.status);
      });
    });
  }

  function showSources(node, sources, cited) {
    if (!sources || !sources.length) return;
    node.appendChild(el("p", { "class": "src-label" }, "Sources"));
    var list = el("ol", { "class": "sources", "aria-label": "Sources" });
    sources.forEach(function (s) {
      var where = s.location ? ", " + s.location : "";
      var item = el("li", { value: String(s.n) }, s.source + where + (s.title ? " \u2014 " + s.title : ""));
      if (cited.indexOf(s.n) >= 0) item.className = "cited";
      list.appendChild(item);
    });
    node.appendChild(list);
    log.scrollTop = log.scrollHeight;
  }

  function read(resp, out) {
    var reader = resp.body.getReader(), decoder = new TextDecoder(), buffer = "", text = "", last = null, failed = "";
    function handle(block) {
      block.split("\n").forEach(function (line) {
        if (line.indexOf("data: ") !== 0 || line === "data: [DONE]") return;
        var event = JSON.parse(line.slice(6));
        if (event.error) { failed = event.error.message; return; }
        var delta = event.choices && event.choices[0] && event.choices[0].delta;
        if (delta && delta.content) { text += delta.content; out.body.textContent = text; log.scrollTop = log.scrollHeight; }
        if (event.kit) last = event;
      });
    }
    function pump() {
      return reader.read().then(function (r) {
        if (r.done) return { text: text, last: last, failed: failed };
        buffer += decoder.decode(r.value, { stream: true });
        var blocks = buffer.split("\n\n");
        buffer = blocks.pop();
        blocks.forEach(handle);
        return pump();
      });
    }
    return pump();
  }

  function leadForm(question) {
    var form = el("form", { "class": "lead", "aria-label": "Leave your details for the team" });
    var fields = [["name", "Your name", "input", "name"], ["contact", "E-mail or phone", "input", "email"],
                  ["question", "Your question", "textarea", "off"]];
    var inputs = {};
    fields.forEach(function (f) {
      var label = el("label", {}, f[1]);
      var box = el(f[2], { name: f[0], autocomplete: f[3] });
      if (f[0] === "question") box.value = question;
      label.appendChild(box);
      form.appendChild(label);
      inputs[f[0]] = box;
    });
    var submit = el("button", { type: "submit" }, "Send to the team");
    var status = el("p", { "class": "status", role: "status" });
    form.appendChild(submit);
    form.appendChild(status);
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      submit.disabled = true;
      status.className = "status";
      status.textContent = "Sending\u2026";
      post("/widget/lead", { name: inputs.name.value, contact: inputs.contact.value, question: inputs.question.value,
                             conversation: conversation || "" })
        .then(function (resp) { return resp.json(); })
        .then(function (b) {
          var done = say("bot", b.message);
          form.replaceWith(done.node);
          input.focus();
        })
        .catch(function (err) { status.className = "status bad"; status.textContent = err.message; submit.disabled = false; });
    });
    log.appendChild(form);
    log.scrollTop = log.scrollHeight;
    inputs.name.focus();
  }

  ask.addEventListener("submit", function (e) {
    e.preventDefault();
    var question = input.value.trim();
    if (!question || send.disabled) return;
    input.value = "";
    lastQuestion = question;
    say("user", question);
    var out = say("bot", "\u2026");
    send.disabled = true;
    var messages = history.concat([{ role: "user", content: question }]).slice(-20);
    var body = { messages: messages, stream: true, kit: conversation ? { conversation: conversation } : {} };
    post("/widget/chat", body)
      .then(function (resp) { return read(resp, out); })
      .then(function (r) {
        if (r.failed) { out.body.textContent = (r.text ? r.text + "\n\n" : "") + "\u26A0\uFE0F " + r.failed; out.node.classList.add("error"); return; }
        history = messages.concat([{ role: "assistant", content: r.text }]);
        if (!r.last) return;
        conversation = r.last.kit.conversation;
        showSources(out.node, r.last.sources, r.last.kit.cited || []);
        if (r.last.kit.lead_form) leadForm(lastQuestion);
      })
      .catch(function (err) {
        out.body.textContent = "\u26A0\uFE0F " + err.message;
        out.node.classList.add("error");
      })
      .then(function () { send.disabled = false; if (!root.querySelector("form.lead")) input.focus(); });
  });
})();
