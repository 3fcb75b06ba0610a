// Drives POST /v1/embeddings of a running `orchard serve` with the official `openai` npm client.
// Usage:
//   node embeddings_client.mjs http://127.0.0.1:PORT
// Exits non-zero with a message on the first failed check. (The client asks for base64 unless
// told otherwise and decodes it itself: both encodings are exercised.)
import OpenAI from 'openai';
import assert from 'node:assert/strict';
import { check } from './check.mjs';

const base = process.argv[2];
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 120000 });

const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
const model = (await client.models.list()).data[0].id;
let dim;

await check('embeddings: a string, unit norm, usage', async () => {
  const r = await client.embeddings.create({ model, input: 'The quick brown fox' });
  assert.equal(r.object, 'list');
  assert.equal(r.data.length, 1);
  assert.equal(r.data[0].object, 'embedding');
  assert.equal(r.data[0].index, 0);
  dim = r.data[0].embedding.length;
  assert.ok(dim > 0);
  assert.ok(Math.abs(norm(r.data[0].embedding) - 1) < 1e-5, `norm ${norm(r.data[0].embedding)}`);
  assert.ok(r.usage.prompt_tokens > 0);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens);
});

await check('embeddings: the same text twice gives the same vector, float and base64 alike', async () => {
  const a = await client.embeddings.create({ model, input: 'same text' });
  const b = await client.embeddings.create({ model, input: 'same text' });
  const c = await client.embeddings.create({ model, input: 'same text', encoding_format: 'float' });
  assert.deepEqual(a.data[0].embedding, b.data[0].embedding);
  assert.deepEqual(a.data[0].embedding, c.data[0].embedding);
});

await check('embeddings: a batch equals one at a time', async () => {
  const texts = ['first', 'a second, longer input with more tokens', 'third'];
  const batch = await client.embeddings.create({ model, input: texts });
  assert.equal(batch.data.length, texts.length);
  let tokens = 0;
  for (let i = 0; i < texts.length; i++) {
    assert.equal(batch.data[i].index, i);
    const alone = await client.embeddings.create({ model, input: texts[i] });
    assert.deepEqual(batch.data[i].embedding, alone.data[0].embedding, texts[i]);
    tokens += alone.usage.prompt_tokens;
  }
  assert.equal(batch.usage.prompt_tokens, tokens);
  assert.notDeepEqual(batch.data[0].embedding, batch.data[1].embedding);
});

await check('embeddings: token ids, one input and several', async () => {
  const one = await client.embeddings.create({ model, input: [5, 17, 300, 42] });
  assert.equal(one.data.length, 1);
  assert.equal(one.usage.prompt_tokens, 4);
  const several = await client.embeddings.create({ model, input: [[5, 17, 300, 42], [9, 9]], encoding_format: 'float' });
  assert.equal(several.data.length, 2);
  assert.equal(several.usage.prompt_tokens, 6);
  assert.deepEqual(several.data[0].embedding, one.data[0].embedding);
  for (const d of several.data) assert.ok(Math.abs(norm(d.embedding) - 1) < 1e-5);
});

await check('embeddings: dimensions honoured (truncated, unit norm)', async () => {
  const full = await client.embeddings.create({ model, input: 'matryoshka', encoding_format: 'float' });
  const cut = await client.embeddings.create({ model, input: 'matryoshka', dimensions: 16 });
  const v = full.data[0].embedding, w = cut.data[0].embedding;
  assert.equal(w.length, 16);
  assert.ok(Math.abs(norm(w) - 1) < 1e-5);
  const head = norm(v.slice(0, 16));
  for (let i = 0; i < 16; i++) assert.ok(Math.abs(w[i] - v[i] / head) < 1e-5, `component ${i}`);
});

await check('embeddings: malformed requests are 400s naming the field', async () => {
  const cases = [
    [{ model, input: '' }, 'input'],
    [{ model, input: [] }, 'input'],
    [{ model, input: [1e9] }, 'input'],
    [{ model, input: 'x', dimensions: dim + 1 }, 'dimensions'],
    [{ model, input: 'x', encoding_format: 'binary' }, 'encoding_format'],
  ];
  for (const [body, param] of cases) {
    await assert.rejects(client.embeddings.create(body), (e) => {
      assert.equal(e.status, 400, JSON.stringify(body));
      assert.equal(e.param, param, JSON.stringify(body));
      return true;
    });
  }
});
