// The lmforge web UI: chat (streamed), classification, NER and translation over this
// server's own OpenAI-style API. Plain JavaScript with no build step and no framework.
//
// Safety: whatever a model (or a user) writes reaches the page as text (textContent,
// text nodes), never as markup, so an output holding <script> stays text. The server's
// Content-Security-Policy allows scripts and styles from this origin only on top of that.
"use strict";

const I18N = {
  en: {
    tabChat: "Chat", tabClassify: "Classify", tabNer: "Entities", tabTranslate: "Translate",
    apiKey: "API key", apiKeyHint: "only if the server has keys", language: "Language",
    model: "Model", noModel: "no model of this kind is served",
    system: "System prompt", systemHint: "e.g. You are a helpful assistant.",
    temperature: "Temperature (0 = greedy)", topP: "Top-p", maxTokens: "Max tokens",
    auto: "auto: the rest of the context", clear: "New chat", send: "Send", stop: "Stop",
    chatHint: "Type a message. Enter sends, Shift+Enter starts a new line.",
    you: "You", assistant: "Assistant", stopped: "stopped",
    streamCut: "the stream ended before [DONE]",
    texts: "Texts, one per line", classifyRun: "Classify", nerRun: "Find entities",
    translateRun: "Translate", legend: "Entity types:", noEntities: "no entities",
    needText: "Type at least one text.", modelsFailed: "Could not list the models",
    requestFailed: "Request failed",
  },
  zh: {
    tabChat: "对话", tabClassify: "文本分类", tabNer: "命名实体", tabTranslate: "翻译",
    apiKey: "API 密钥", apiKeyHint: "仅当服务器启用密钥时需要", language: "语言",
    model: "模型", noModel: "服务器没有此类模型",
    system: "系统提示词", systemHint: "例如：你是一个乐于助人的助手。",
    temperature: "温度（0 = 贪心解码）", topP: "Top-p（核采样）", maxTokens: "最多生成词元数",
    auto: "自动：上下文剩余长度", clear: "新对话", send: "发送", stop: "停止",
    chatHint: "输入消息。按 Enter 发送，Shift+Enter 换行。",
    you: "你", assistant: "助手", stopped: "已停止",
    streamCut: "数据流在 [DONE] 之前中断",
    texts: "文本，每行一条", classifyRun: "分类", nerRun: "识别实体",
    translateRun: "翻译", legend: "实体类型：", noEntities: "未找到实体",
    needText: "请至少输入一条文本。", modelsFailed: "无法获取模型列表",
    requestFailed: "请求失败",
  },
};
const STORED_LANG = "lmforge.lang";
const STORED_KEY = "lmforge.apiKey";
const TASKS = ["classify", "ner", "translate"];

const $ = (selector) => document.querySelector(selector);
let lang = "en";

function t(key) {
  return I18N[lang][key] ?? I18N.en[key] ?? key;
}

// An element with the given class and text; the only way model output enters the page.
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// A label that follows the language switch: applyLanguage rewrites every data-i18n.
function label(tag, className, key) {
  const node = el(tag, className, t(key));
  node.dataset.i18n = key;
  return node;
}

// ---------------------------------------------------------------- language

function applyLanguage(next) {
  lang = next;
  localStorage.setItem(STORED_LANG, lang);
  // zh-CN, not zh: it makes the browser pick Simplified Chinese glyphs from CJK fonts
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  $("#lang").value = lang;
  for (const node of document.querySelectorAll("[data-i18n]")) {
    node.textContent = t(node.dataset.i18n);
  }
  for (const node of document.querySelectorAll("[data-i18n-placeholder]")) {
    node.placeholder = t(node.dataset.i18nPlaceholder);
  }
  for (const node of document.querySelectorAll("[data-error]")) renderError(node);
}

function initialLanguage() {
  const stored = localStorage.getItem(STORED_LANG);
  if (stored in I18N) return stored;
  return (navigator.language || "").toLowerCase().startsWith("zh") ? "zh" : "en";
}

// An error: a translated prefix and the server's own message (which is English).
function showError(node, key, detail = "") {
  node.dataset.error = key;
  node.dataset.detail = detail;
  renderError(node);
  node.hidden = false;
}

function renderError(node) {
  const detail = node.dataset.detail;
  node.textContent = detail ? `${t(node.dataset.error)}: ${detail}` : t(node.dataset.error);
}

function hideError(node) {
  delete node.dataset.error;
  node.hidden = true;
}

// ---------------------------------------------------------------- the API

function headers() {
  const out = { "Content-Type": "application/json" };
  const key = localStorage.getItem(STORED_KEY);
  if (key) out.Authorization = `Bearer ${key}`;
  return out;
}

// GET (no body) or POST a JSON body; a non-2xx answer throws with the message of the
// server's error envelope {"error": {"message": ...}}.
async function api(path, body, signal) {
  const response = await fetch(path, {
    method: body === undefined ? "GET" : "POST",
    headers: headers(),
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  if (!response.ok) throw new Error(await errorMessage(response));
  return response;
}

async function errorMessage(response) {
  try {
    const message = (await response.json()).error.message;
    if (message) return `${response.status} ${message}`;
  } catch {
    // not the envelope (a proxy's error page): the status line says enough
  }
  return `${response.status} ${response.statusText}`;
}

// Reads a server-sent-event stream, calling onData with each event's parsed JSON until
// `data: [DONE]`. Events end with a blank line, and a network chunk may end anywhere
// (mid-event, even mid-character: the decoder keeps a partial UTF-8 sequence), so text
// is buffered until an event is complete.
async function readEvents(response, onData) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      buffer += decoder.decode(value, { stream: !done });
      const events = buffer.split(/\r?\n\r?\n/);
      buffer = events.pop();  // the incomplete tail, if any
      for (const event of events) {
        const data = event.split(/\r?\n/).filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).replace(/^ /, "")).join("\n");
        if (data === "[DONE]") return;
        if (data) onData(JSON.parse(data));
      }
      if (done) throw new Error(t("streamCut"));
    }
  } finally {
    reader.cancel().catch(() => {});  // an error event or a throw: close the connection
  }
}

// ---------------------------------------------------------------- models

async function loadModels() {
  hideError($("#status"));
  let models = [];
  try {
    models = (await (await api("v1/models")).json()).data;
  } catch (error) {
    showError($("#status"), "modelsFailed", error.message);
  }
  for (const select of document.querySelectorAll("select[data-kind]")) {
    fillPicker(select, models.filter((m) => m.kind === select.dataset.kind));
  }
}

function fillPicker(select, models) {
  const previous = select.value;
  select.replaceChildren();
  select.disabled = models.length === 0;
  if (select.disabled) {
    const none = label("option", "", "noModel");
    none.value = "";
    select.append(none);
    return;
  }
  for (const model of models) select.append(new Option(model.id, model.id));
  if (models.some((m) => m.id === previous)) select.value = previous;
}

// ---------------------------------------------------------------- chat

const chat = { history: [], controller: null };

function addMessage(role, text) {
  const item = el("li", `message ${role}`);
  item.append(label("span", "role", role === "user" ? "you" : "assistant"));
  item.append(el("div", "content", text));
  $("#chat-messages").append(item);
  return item;
}

// A number control's value; an empty one is left out of the request (the server's default).
function numberOf(selector) {
  const value = $(selector).value;
  return value === "" ? undefined : Number(value);
}

function chatRequest(model, user) {
  const system = $("#chat-system").value.trim();
  return {  // JSON.stringify drops the undefined fields
    model,
    messages: [...(system ? [{ role: "system", content: system }] : []), ...chat.history, user],
    stream: true,
    temperature: numberOf("#chat-temperature"),
    top_p: numberOf("#chat-top-p"),
    max_tokens: numberOf("#chat-max-tokens"),
  };
}

async function sendChat() {
  const input = $("#chat-input");
  const model = $("#chat-model").value;
  if (chat.controller || !model || !input.value.trim()) return;
  const user = { role: "user", content: input.value };
  input.value = "";
  const body = chatRequest(model, user);
  const history = chat.history;  // "New chat" replaces it: this turn stays out of the new one
  addMessage("user", user.content);
  const reply = addMessage("assistant", "");
  const text = reply.querySelector(".content").appendChild(document.createTextNode(""));
  const log = $("#chat-messages");
  reply.dataset.state = "streaming";
  chat.controller = new AbortController();
  setBusy(true);
  try {
    const response = await api("v1/chat/completions", body, chat.controller.signal);
    await readEvents(response, (chunk) => {
      if (chunk.error) throw new Error(chunk.error.message);  // an error mid-stream
      const delta = chunk.choices?.[0]?.delta?.content;
      if (delta) {
        text.appendData(delta);
        log.scrollTop = log.scrollHeight;
      }
    });
    reply.dataset.state = "done";
  } catch (error) {
    if (error.name === "AbortError") {
      reply.dataset.state = "stopped";
      reply.append(label("span", "note", "stopped"));
    } else {
      reply.dataset.state = "error";
      const note = el("p", "error");
      reply.append(note);
      showError(note, "requestFailed", error.message);
    }
  } finally {
    chat.controller = null;
    setBusy(false);
  }
  // a failed turn is left out of the history, so the next request is still valid
  if (reply.dataset.state !== "error") {
    history.push(user, { role: "assistant", content: text.data });
  }
}

function setBusy(busy) {
  $("#chat-send").disabled = busy;
  $("#chat-stop").disabled = !busy;
}

// ---------------------------------------------------------------- tasks

async function runTask(task) {
  const error = $(`#${task}-error`);
  const button = $(`#${task}-run`);
  const model = $(`#${task}-model`).value;
  const texts = $(`#${task}-input`).value.split("\n").filter((line) => line.trim());
  hideError(error);
  if (!model) return showError(error, "noModel");
  if (!texts.length) return showError(error, "needText");
  button.disabled = true;
  try {
    const response = await api($(`#${task}-form`).dataset.route, { model, input: texts });
    RENDER[task]((await response.json()).data, texts);
  } catch (e) {
    showError(error, "requestFailed", e.message);
  } finally {
    button.disabled = false;
  }
}

// Each text with a bar per label, most probable first; data-prob keeps the exact value.
function renderClassify(data, texts) {
  $("#classify-output").replaceChildren(...data.map((result, i) => {
    const card = el("div", "result");
    card.append(el("p", "input-text", texts[i]));
    const bars = el("ul", "probs");
    const ranked = Object.entries(result.probabilities).sort((a, b) => b[1] - a[1]);
    for (const [name, p] of ranked) {
      const row = el("li", name === result.label ? "prob top" : "prob");
      row.dataset.label = name;
      row.dataset.prob = String(p);
      const bar = el("span", "bar");
      const fill = bar.appendChild(el("span", "fill"));
      fill.style.width = `${(100 * p).toFixed(1)}%`;  // CSSOM: allowed by the CSP
      row.append(el("span", "label", name), bar, el("span", "pct", `${(100 * p).toFixed(1)}%`));
      bars.append(row);
    }
    card.append(bars);
    return card;
  }));
}

// Well-known tag sets get fixed colours; any other type a hue from its name.
const HUES = { PER: 210, LOC: 130, ORG: 30, MISC: 280 };

function hue(type) {
  if (type in HUES) return HUES[type];
  let h = 0;
  for (const c of type) h = (h * 31 + c.codePointAt(0)) % 360;
  return h;
}

// The text with each entity in <mark class="ent ent-TYPE" data-type="TYPE">. The server's
// offsets count code points (Python's str); JavaScript strings count UTF-16 units, which
// differ past the BMP (emoji, rare CJK), so the text is cut as an array of code points.
function highlight(text, entities) {
  const chars = Array.from(text);
  const line = el("p", "ner-text");
  const plain = (from, to) => {
    if (to > from) line.append(chars.slice(from, to).join(""));  // a text node
  };
  let at = 0;
  for (const e of [...entities].sort((a, b) => a.start - b.start)) {
    if (e.start < at || e.end > chars.length || e.end <= e.start) continue;  // not a span
    plain(at, e.start);
    const mark = el("mark", `ent ent-${e.type.replace(/[^\w-]/g, "_")}`,
      chars.slice(e.start, e.end).join(""));
    mark.dataset.type = e.type;
    mark.title = e.type;
    mark.style.setProperty("--hue", hue(e.type));
    line.append(mark);
    at = e.end;
  }
  plain(at, chars.length);
  return line;
}

function renderEntities(data) {
  const types = new Set();
  $("#ner-output").replaceChildren(...data.map((result) => {
    const card = el("div", "result");
    card.append(highlight(result.text, result.entities));
    if (!result.entities.length) card.append(label("p", "note", "noEntities"));
    for (const e of result.entities) types.add(e.type);
    return card;
  }));
  $("#ner-types").replaceChildren(...[...types].sort().map((type) => {
    const item = el("li", "", type);
    item.dataset.type = type;
    item.style.setProperty("--hue", hue(type));
    return item;
  }));
  $("#ner-legend").hidden = types.size === 0;
}

function renderTranslations(data, texts) {
  $("#translate-output").replaceChildren(...data.map((result, i) => {
    const item = el("li", "result");
    item.append(el("p", "input-text", texts[i]), el("p", "translation", result.translation));
    return item;
  }));
}

const RENDER = { classify: renderClassify, ner: renderEntities, translate: renderTranslations };

// ---------------------------------------------------------------- wiring

function showTab(name) {
  for (const tab of document.querySelectorAll("[role=tab]")) {
    const selected = tab.dataset.tab === name;
    tab.setAttribute("aria-selected", String(selected));
    $(`#panel-${tab.dataset.tab}`).hidden = !selected;
  }
}

function init() {
  applyLanguage(initialLanguage());
  $("#lang").addEventListener("change", (e) => applyLanguage(e.target.value));
  const key = $("#api-key");
  key.value = localStorage.getItem(STORED_KEY) || "";
  key.addEventListener("change", () => {
    if (key.value.trim()) localStorage.setItem(STORED_KEY, key.value.trim());
    else localStorage.removeItem(STORED_KEY);
    loadModels();
  });
  for (const tab of document.querySelectorAll("[role=tab]")) {
    tab.addEventListener("click", () => showTab(tab.dataset.tab));
  }
  showTab("chat");

  $("#chat-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sendChat();
  });
  $("#chat-input").addEventListener("keydown", (e) => {
    // not while an input method composes: Chinese IMEs confirm a candidate with Enter
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $("#chat-form").requestSubmit();
    }
  });
  $("#chat-stop").addEventListener("click", () => chat.controller?.abort());
  $("#chat-clear").addEventListener("click", () => {
    chat.controller?.abort();
    chat.history = [];
    $("#chat-messages").replaceChildren();
  });
  for (const task of TASKS) {
    $(`#${task}-form`).addEventListener("submit", (e) => {
      e.preventDefault();
      runTask(task);
    });
  }
  loadModels();
}

init();
