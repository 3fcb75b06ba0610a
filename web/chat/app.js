// Orchard's web chat: one conversation, streamed from /v1/chat/completions, kept in this
// browser's localStorage only. Text from the user or the model reaches the page as text nodes
// (textContent, createElement): never as HTML, so nothing in it can run (the server's
// Content-Security-Policy allows no inline script besides).
'use strict';

const STORE = { chat: 'orchard.chat', settings: 'orchard.settings', key: 'orchard.apiKey' };
const $ = (id) => document.getElementById(id);
const ui = {
  messages: $('messages'), input: $('input'), send: $('send'), stop: $('stop'), error: $('error'),
  system: $('system'), temperature: $('temperature'), maxTokens: $('max-tokens'), apiKey: $('api-key'),
  model: $('model'), newChat: $('new-chat'), form: $('composer'),
};

// ---- storage ----------------------------------------------------------------------------------

function load(key, fallback) {
  try {
    const value = JSON.parse(localStorage.getItem(key));
    return value ?? fallback;
  } catch {
    return fallback;
  }
}

// [{role: 'user' | 'assistant', content: string, stopped?: true}]
let chat = load(STORE.chat, []);
if (!Array.isArray(chat)) chat = [];
chat = chat.filter((m) => m && (m.role === 'user' || m.role === 'assistant') && typeof m.content === 'string');

function saveChat() {
  localStorage.setItem(STORE.chat, JSON.stringify(chat));
}

function loadSettings() {
  const s = load(STORE.settings, {});
  if (typeof s.system === 'string') ui.system.value = s.system;
  if (Number.isFinite(s.temperature)) ui.temperature.value = s.temperature;
  if (Number.isInteger(s.maxTokens)) ui.maxTokens.value = s.maxTokens;
  ui.apiKey.value = localStorage.getItem(STORE.key) || '';
}

function settings() {
  const temperature = Number.parseFloat(ui.temperature.value);
  const maxTokens = Number.parseInt(ui.maxTokens.value, 10);
  return {
    system: ui.system.value,
    temperature: Number.isFinite(temperature) ? temperature : undefined,
    maxTokens: Number.isInteger(maxTokens) && maxTokens > 0 ? maxTokens : undefined,
  };
}

function saveSettings() {
  localStorage.setItem(STORE.settings, JSON.stringify(settings()));
  const key = ui.apiKey.value.trim();
  if (key) localStorage.setItem(STORE.key, key);
  else localStorage.removeItem(STORE.key);
}

// ---- Markdown, as DOM nodes -------------------------------------------------------------------
// A small subset: paragraphs, headings, lists, fenced code blocks, **bold**, *italic*, `code`
// and [links](https://...). Every piece of text becomes a text node.

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// Only absolute http(s) links; anything else (javascript:, data:, relative) stays text.
function safeUrl(href) {
  try {
    const url = new URL(href);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
  } catch {
    return null;
  }
}

const INLINE = /`([^`\n]+)`|\*\*([^*\n]+?)\*\*|\*([^*\s][^*\n]*?)\*|\[([^\]\n]+)\]\(([^)\s]+)\)/;

function appendInline(parent, text) {
  while (text) {
    const m = INLINE.exec(text);
    if (!m) {
      parent.append(document.createTextNode(text));
      return;
    }
    if (m.index > 0) parent.append(document.createTextNode(text.slice(0, m.index)));
    if (m[1] !== undefined) parent.append(el('code', '', m[1]));
    else if (m[2] !== undefined) appendInline(parent.appendChild(el('strong')), m[2]);
    else if (m[3] !== undefined) appendInline(parent.appendChild(el('em')), m[3]);
    else {
      const href = safeUrl(m[5]);
      if (href) {
        const a = el('a', '', m[4]);
        a.href = href;
        a.rel = 'noopener noreferrer';
        a.target = '_blank';
        parent.append(a);
      } else {
        parent.append(document.createTextNode(m[0]));
      }
    }
    text = text.slice(m.index + m[0].length);
  }
}

function renderMarkdown(source) {
  const out = document.createDocumentFragment();
  const lines = source.replace(/\r\n?/g, '\n').split('\n');
  let paragraph = null;
  let list = null;
  const endBlocks = () => { paragraph = null; list = null; };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const fence = /^\s*```\s*([\w+.-]*)/.exec(line);
    if (fence) {
      endBlocks();
      const body = [];
      for (i++; i < lines.length && !/^\s*```\s*$/.test(lines[i]); i++) body.push(lines[i]);
      const code = el('code', '', body.join('\n'));
      if (fence[1]) code.dataset.lang = fence[1];
      out.appendChild(el('pre')).append(code);
      continue;
    }
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    if (heading) {
      endBlocks();
      appendInline(out.appendChild(el(`h${Math.min(heading[1].length + 2, 6)}`)), heading[2]);
      continue;
    }
    const item = /^\s*([-*+]|\d+[.)])\s+(.*)$/.exec(line);
    if (item) {
      const tag = /\d/.test(item[1]) ? 'ol' : 'ul';
      if (!list || list.tagName.toLowerCase() !== tag) {
        paragraph = null;
        list = out.appendChild(el(tag));
      }
      appendInline(list.appendChild(el('li')), item[2]);
      continue;
    }
    if (!line.trim()) {
      endBlocks();
      continue;
    }
    list = null;
    if (paragraph) paragraph.append(el('br'));
    else paragraph = out.appendChild(el('p'));
    appendInline(paragraph, line);
  }
  return out;
}

// ---- the conversation on the page ---------------------------------------------------------------

function fillBubble(bubble, message) {
  bubble.className = `message ${message.role}${message.stopped ? ' stopped' : ''}`;
  if (message.role === 'user') bubble.textContent = message.content;
  else bubble.replaceChildren(renderMarkdown(message.content));
}

function renderAll() {
  ui.messages.replaceChildren(...chat.map((m) => {
    const bubble = el('div');
    fillBubble(bubble, m);
    return bubble;
  }));
}

function showError(text) {
  ui.error.textContent = text;
  ui.error.hidden = !text;
}

function headers() {
  const h = { 'Content-Type': 'application/json' };
  const key = ui.apiKey.value.trim();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

// An error answer's message: the OpenAI error object's, or the status line.
async function errorText(response) {
  let message = response.statusText;
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) message = body.error.message;
  } catch { /* not JSON */ }
  const hint = response.status === 401 ? ' (set the API key under Settings)' : '';
  return `Error ${response.status}: ${message}${hint}`;
}

// ---- streaming ----------------------------------------------------------------------------------

let controller = null;

function setBusy(busy) {
  ui.send.disabled = busy;
  ui.stop.disabled = !busy;
}

// Reads a server-sent event stream, calling onData with each event's data.
async function readEvents(body, onData) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, '\n');
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, ''));
      if (data.length && onData(data.join('\n')) === false) return;
    }
  }
}

async function send(text) {
  showError('');
  saveSettings();
  const s = settings();
  chat.push({ role: 'user', content: text });
  const answer = { role: 'assistant', content: '' };
  chat.push(answer);
  saveChat();
  renderAll();
  const bubble = ui.messages.lastElementChild;
  bubble.classList.add('streaming');
  bubble.scrollIntoView({ block: 'end' });

  const messages = chat.slice(0, -1).map(({ role, content }) => ({ role, content }));
  if (s.system.trim()) messages.unshift({ role: 'system', content: s.system });
  const request = { messages, stream: true };
  if (s.temperature !== undefined) request.temperature = s.temperature;
  if (s.maxTokens !== undefined) request.max_tokens = s.maxTokens;

  controller = new AbortController();
  setBusy(true);
  try {
    const response = await fetch('/v1/chat/completions', {
      method: 'POST', headers: headers(), body: JSON.stringify(request), signal: controller.signal,
    });
    if (!response.ok) throw new Error(await errorText(response));
    await readEvents(response.body, (data) => {
      if (data === '[DONE]') return false;
      const event = JSON.parse(data);
      if (event.error) throw new Error(`Error: ${event.error.message}`);
      const delta = event.choices && event.choices[0] && event.choices[0].delta;
      if (delta && typeof delta.content === 'string' && delta.content) {
        answer.content += delta.content;
        fillBubble(bubble, answer);
        bubble.classList.add('streaming');
        saveChat();
      }
      return true;
    });
  } catch (e) {
    if (e.name === 'AbortError') answer.stopped = true;
    else showError(e.message || String(e));
  } finally {
    controller = null;
    setBusy(false);
    // A request that failed before any text leaves no empty answer behind.
    if (!answer.content && !answer.stopped) chat.pop();
    saveChat();
    renderAll();
  }
}

// ---- wiring -----------------------------------------------------------------------------------

ui.form.addEventListener('submit', (event) => {
  event.preventDefault();
  const text = ui.input.value;
  if (!text.trim() || controller) return;
  ui.input.value = '';
  send(text);
});
ui.input.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    ui.form.requestSubmit();
  }
});
ui.stop.addEventListener('click', () => controller && controller.abort());
ui.newChat.addEventListener('click', () => {
  if (controller) controller.abort();
  chat = [];
  saveChat();
  renderAll();
  showError('');
});
for (const input of [ui.system, ui.temperature, ui.maxTokens, ui.apiKey]) input.addEventListener('change', saveSettings);

// The model's name in the header; also tells at once whether an API key is needed.
async function showModel() {
  try {
    const response = await fetch('/v1/models', { headers: headers() });
    if (!response.ok) {
      showError(await errorText(response));
      return;
    }
    const body = await response.json();
    showError('');
    ui.model.textContent = (body.data && body.data[0] && body.data[0].id) || '';
  } catch (e) {
    showError(`Cannot reach the server: ${e.message}`);
  }
}

loadSettings();
renderAll();
showModel();
ui.apiKey.addEventListener('change', showModel);
