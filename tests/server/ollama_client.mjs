// Drives a running `orchard serve` through its Ollama API with the official `ollama` npm client
// (pinned in package.json), its host pointed at Orchard. Usage:
//   node ollama_client.mjs http://127.0.0.1:PORT
// Exits non-zero with a message on the first failed check.
import { Ollama } from 'ollama';
import assert from 'node:assert/strict';
import { check } from './check.mjs';

const host = process.argv[2];
const ollama = new Ollama({ host });

function expectStats(r, maxTokens) {
  assert.equal(r.done, true);
  assert.ok(['stop', 'length'].includes(r.done_reason), r.done_reason);
  assert.ok(r.prompt_eval_count > 0);
  assert.ok(r.eval_count > 0 && r.eval_count <= maxTokens, `eval_count ${r.eval_count}`);
  for (const d of ['total_duration', 'load_duration', 'prompt_eval_duration', 'eval_duration'])
    assert.ok(Number.isInteger(r[d]) && r[d] >= 0, `${d} ${r[d]}`);
  assert.equal(r.total_duration, r.load_duration + r.prompt_eval_duration + r.eval_duration);
}

let model;
await check('list (/api/tags)', async () => {
  const list = await ollama.list();
  assert.equal(list.models.length, 1);
  model = list.models[0].name;
  assert.match(model, /tiny-qwen2-chat/);
  assert.equal(list.models[0].details.format, 'gguf');
  assert.equal(list.models[0].details.family, 'qwen2');
  assert.ok(list.models[0].size > 0);
  assert.match(list.models[0].digest, /^[0-9a-f]{64}$/);
});

await check('show and version', async () => {
  const s = await ollama.show({ model });
  assert.equal(s.model_info['general.architecture'], 'qwen2');
  assert.ok(s.template.length > 0);
  const v = await ollama.version();
  assert.match(v.version, /^\d+\.\d+\.\d+$/);
});

const messages = [{ role: 'user', content: 'Tell me a story.' }];
const options = { temperature: 0, num_predict: 12 };
let chatText;
await check('chat not streamed', async () => {
  const r = await ollama.chat({ model, messages, options });
  assert.equal(r.message.role, 'assistant');
  assert.equal(typeof r.message.content, 'string');
  assert.ok(r.message.content.length > 0);
  chatText = r.message.content;
  expectStats(r, 12);
});

await check('chat streamed', async () => {
  const stream = await ollama.chat({ model, messages, options, stream: true });
  const parts = [];
  let last;
  for await (const part of stream) {
    parts.push(part);
    last = part;
  }
  assert.ok(parts.length >= 2);
  for (const p of parts.slice(0, -1)) assert.equal(p.done, false);
  const text = parts.map((p) => p.message.content).join('');
  assert.equal(text, chatText);  // greedy: the answer not streamed
  expectStats(last, 12);
});

let generated;
await check('generate not streamed', async () => {
  const r = await ollama.generate({ model, prompt: 'Hello', system: 'Be kind.', options });
  assert.equal(typeof r.response, 'string');
  assert.ok(r.response.length > 0);
  generated = r.response;
  expectStats(r, 12);
});

await check('generate streamed', async () => {
  const stream = await ollama.generate({ model, prompt: 'Hello', system: 'Be kind.', options, stream: true });
  let text = '';
  let last;
  for await (const part of stream) {
    text += part.response;
    last = part;
  }
  assert.equal(text, generated);
  expectStats(last, 12);
});

await check('an error is a ResponseError with the message', async () => {
  await assert.rejects(ollama.chat({ model, messages, options: { temperature: 'hot' } }),
    (e) => e.status_code === 400 && /options\.temperature/.test(e.error));
});
