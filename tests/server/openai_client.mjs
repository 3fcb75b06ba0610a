// Drives a running `orchard serve` with the official `openai` npm client. Usage:
//   node openai_client.mjs http://127.0.0.1:PORT            every check below
//   node openai_client.mjs http://127.0.0.1:PORT --api-key KEY
//                                                           a server started with --api-key KEY:
//                                                           401 without it, 200 with it
// Exits non-zero with a message on the first failed check.
import OpenAI from 'openai';
import assert from 'node:assert/strict';
import { check } from './check.mjs';

const base = process.argv[2];
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 120000 });

// A validator for the schema used below, written apart from the server's compiler.
function validatePerson(value) {
  assert.equal(typeof value, 'object');
  assert.ok(value !== null && !Array.isArray(value));
  assert.deepEqual(Object.keys(value).sort(), ['age', 'name', 'tags']);
  assert.ok(Number.isInteger(value.age) && value.age >= 0 && value.age <= 120, `age ${value.age}`);
  assert.equal(typeof value.name, 'string');
  assert.ok([...value.name].length >= 1 && [...value.name].length <= 12, `name ${value.name}`);
  assert.ok(Array.isArray(value.tags) && value.tags.length <= 2);
  for (const t of value.tags) assert.ok(['a', 'b', 'c'].includes(t), `tag ${t}`);
}

const personSchema = {
  type: 'object',
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 12 },
    age: { type: 'integer', minimum: 0, maximum: 120 },
    tags: { type: 'array', items: { enum: ['a', 'b', 'c'] }, maxItems: 2 },
  },
  required: ['name', 'age', 'tags'],
  additionalProperties: false,
};

const weatherTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather in a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string', maxLength: 16 }, days: { type: 'integer', minimum: 1, maximum: 7 } },
      required: ['city', 'days'],
      additionalProperties: false,
    },
  },
};

if (process.argv[3] === '--api-key') {
  const key = process.argv[4];
  const keyed = new OpenAI({ baseURL: `${base}/v1`, apiKey: key, maxRetries: 0, timeout: 120000 });
  const wrong = new OpenAI({ baseURL: `${base}/v1`, apiKey: `${key}-not`, maxRetries: 0, timeout: 120000 });
  // Without /v1: the paths work there too.
  const bare = new OpenAI({ baseURL: base, apiKey: key, maxRetries: 0, timeout: 120000 });
  await check('a wrong key is a 401 (AuthenticationError), the right one a 200', async () => {
    await assert.rejects(wrong.models.list(), (e) => e.status === 401 && e instanceof OpenAI.AuthenticationError &&
      e.code === 'invalid_api_key');
    await assert.rejects(wrong.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 }),
      (e) => e.status === 401);
    const res = await fetch(`${base}/v1/models`);  // no Authorization at all
    assert.equal(res.status, 401);
    assert.equal(res.headers.get('www-authenticate'), 'Bearer');
    assert.equal((await res.json()).error.code, 'invalid_api_key');
    assert.equal((await fetch(`${base}/health`)).status, 200);  // open
    const list = await keyed.models.list();
    assert.ok(list.data.length >= 1);
    const r = await keyed.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3 });
    assert.equal(r.choices[0].message.role, 'assistant');
    const retrieved = await bare.models.retrieve(list.data[0].id);
    assert.equal(retrieved.id, list.data[0].id);
    const c = await bare.completions.create({ model: list.data[0].id, prompt: 'Once', max_tokens: 2 });
    assert.equal(c.object, 'text_completion');
  });
  console.log('all checks passed');
  process.exit(0);
}

let model;
await check('model list', async () => {
  const list = await client.models.list();
  assert.ok(list.data.length >= 1);
  model = list.data[0].id;
  assert.match(model, /tiny-qwen2-chat/);
});

await check('models.retrieve: the base by its id, an unknown id a 404', async () => {
  const m = await client.models.retrieve(model);
  assert.equal(m.id, model);
  assert.equal(m.object, 'model');
  assert.equal(m.owned_by, 'orchard');
  await assert.rejects(client.models.retrieve('no-such-model'), (e) => e.status === 404 && e instanceof OpenAI.NotFoundError);
});

await check('completions: prompts as token ids and as an array (one choice each), system_fingerprint', async () => {
  const one = await client.completions.create({ model, prompt: 'Once upon', max_tokens: 4, temperature: 0 });
  const other = await client.completions.create({ model, prompt: 'The cat', max_tokens: 4, temperature: 0 });
  assert.match(one.system_fingerprint, /^orchard-0\.1\.0-/);
  const both = await client.completions.create({ model, prompt: ['Once upon', 'The cat'], max_tokens: 4, temperature: 0 });
  assert.deepEqual(both.choices.map((c) => c.index), [0, 1]);
  assert.equal(both.choices[0].text, one.choices[0].text);
  assert.equal(both.choices[1].text, other.choices[0].text);
  assert.equal(both.usage.completion_tokens, one.usage.completion_tokens + other.usage.completion_tokens);
  assert.equal(both.usage.prompt_tokens, one.usage.prompt_tokens + other.usage.prompt_tokens);
  // Streamed: each chunk names its choice.
  const stream = await client.completions.create({ model, prompt: ['Once upon', 'The cat'], max_tokens: 4, temperature: 0,
    stream: true });
  const texts = ['', ''];
  for await (const chunk of stream) for (const c of chunk.choices) texts[c.index] += c.text;
  assert.deepEqual(texts, [one.choices[0].text, other.choices[0].text]);
  // Token ids outside the vocabulary: a 400 naming the prompt.
  await assert.rejects(client.completions.create({ model, prompt: [[1, 2], [3, 99999999]], max_tokens: 2 }),
    (e) => e.status === 400 && /prompt\[1\]/.test(e.message));
});

await check('plain chat', async () => {
  const r = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Say hello.' }], max_tokens: 12, seed: 7, temperature: 0.7,
  });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(typeof r.choices[0].message.content, 'string');
  assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
  assert.ok(r.usage.prompt_tokens > 0 && r.usage.completion_tokens > 0 && r.usage.completion_tokens <= 12);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  // Same seed, same text.
  const again = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Say hello.' }], max_tokens: 12, seed: 7, temperature: 0.7,
  });
  assert.equal(again.choices[0].message.content, r.choices[0].message.content);
});

await check('streamed chat', async () => {
  const stream = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Tell me a story.' }], max_tokens: 16, stream: true,
    stream_options: { include_usage: true },
  });
  let text = '', chunks = 0, finish = null, usage = null;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.delta?.content ?? '';
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.ok(chunks >= 3, `only ${chunks} chunks`);
  assert.equal(finish, 'length');
  assert.equal(usage.completion_tokens, 16);
  assert.ok(text.length > 0);
});

await check('forced tool call and the answer after its result', async () => {
  const messages = [{ role: 'user', content: 'What is the weather in Paris?' }];
  const r = await client.chat.completions.create({
    model, messages, tools: [weatherTool], tool_choice: { type: 'function', function: { name: 'get_weather' } },
    max_tokens: 60, seed: 3,
  });
  const choice = r.choices[0];
  assert.equal(choice.finish_reason, 'tool_calls');
  assert.equal(choice.message.tool_calls.length, 1);
  const call = choice.message.tool_calls[0];
  assert.equal(call.type, 'function');
  assert.equal(call.function.name, 'get_weather');
  const args = JSON.parse(call.function.arguments);
  assert.equal(typeof args.city, 'string');
  assert.ok(Number.isInteger(args.days) && args.days >= 1 && args.days <= 7);
  messages.push(choice.message);
  messages.push({ role: 'tool', tool_call_id: call.id, content: JSON.stringify({ temperature_c: 18, sky: 'clear' }) });
  const answer = await client.chat.completions.create({ model, messages, tools: [weatherTool], max_tokens: 12, seed: 4 });
  assert.equal(answer.choices[0].message.role, 'assistant');
  assert.ok(answer.usage.prompt_tokens > r.usage.prompt_tokens, 'the tool result went through the template');
  // "required" with the tool list forces a call too, streamed.
  const stream = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Weather?' }], tools: [weatherTool], tool_choice: 'required',
    max_tokens: 60, stream: true, seed: 5,
  });
  let streamedCall = null, finish = null;
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      if (c.delta?.tool_calls) streamedCall = c.delta.tool_calls[0];
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.equal(finish, 'tool_calls');
  assert.equal(streamedCall.function.name, 'get_weather');
  JSON.parse(streamedCall.function.arguments);
});

await check('json_schema output parses and validates', async () => {
  for (const seed of [1, 2, 3]) {
    const r = await client.chat.completions.create({
      model, messages: [{ role: 'user', content: 'Describe a person as JSON.' }], seed, max_tokens: 80,
      response_format: { type: 'json_schema', json_schema: { name: 'person', schema: personSchema, strict: true } },
    });
    validatePerson(JSON.parse(r.choices[0].message.content));
  }
  const obj = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Any JSON object.' }], max_tokens: 40, seed: 9,
    response_format: { type: 'json_object' },
  });
  const parsed = JSON.parse(obj.choices[0].message.content);
  assert.equal(typeof parsed, 'object');
});

await check('several concurrent streams', async () => {
  const run = async (i) => {
    const stream = await client.chat.completions.create({
      model, messages: [{ role: 'user', content: `Stream number ${i}` }], max_tokens: 20, stream: true, seed: i,
    });
    let text = '', finish = null;
    for await (const chunk of stream)
      for (const c of chunk.choices) {
        text += c.delta?.content ?? '';
        if (c.finish_reason) finish = c.finish_reason;
      }
    assert.equal(finish, 'length');
    return text;
  };
  const texts = await Promise.all([0, 1, 2, 3, 4, 5].map(run));
  assert.equal(texts.length, 6);
  for (const t of texts) assert.ok(t.length > 0);
});

await check('malformed and invalid requests get 4xx error objects', async () => {
  const post = (body) => fetch(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  let res = await post('{"messages": [');
  assert.equal(res.status, 400);
  let body = await res.json();
  assert.equal(typeof body.error.message, 'string');
  assert.equal(body.error.type, 'invalid_request_error');
  res = await post(JSON.stringify({ model, messages: [{ role: 'user', content: 'x' }], n: 2 }));
  assert.equal(res.status, 400);
  assert.equal((await res.json()).error.param, 'n');
  res = await post(JSON.stringify({ model, messages: 'hello' }));
  assert.equal(res.status, 400);
  res = await post(JSON.stringify({ model, messages: [{ role: 'user', content: 'x'.repeat(20000) }] }));
  assert.equal(res.status, 400);
  assert.equal((await res.json()).error.code, 'context_length_exceeded');
  // A schema the constraint cannot follow is refused, naming the field it came from.
  const unsupported = { type: 'object', properties: { s: { type: 'string', pattern: 'a+' } } };
  res = await post(JSON.stringify({ model, messages: [{ role: 'user', content: 'x' }],
    response_format: { type: 'json_schema', json_schema: { name: 'unsupported', schema: unsupported } } }));
  assert.equal(res.status, 400);
  body = await res.json();
  assert.deepEqual([body.error.param, body.error.code], ['response_format', 'invalid_schema']);
  res = await post(JSON.stringify({ model, messages: [{ role: 'user', content: 'x' }], tool_choice: 'required',
    tools: [{ type: 'function', function: { name: 'f', parameters: unsupported } }] }));
  assert.equal(res.status, 400);
  body = await res.json();
  assert.deepEqual([body.error.param, body.error.code], ['tools', 'invalid_schema']);
  // The official client raises a typed error for a 400.
  await assert.rejects(
    client.chat.completions.create({ model, messages: [{ role: 'user', content: 'x' }], temperature: 'hot' }),
    (e) => e.status === 400);
  const health = await fetch(`${base}/health`);
  assert.equal(health.status, 200);
  const still = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'Still there?' }], max_tokens: 4 });
  assert.equal(still.choices[0].message.role, 'assistant');
});

await check('logprobs, streamed and not, one entry per generated token', async () => {
  const request = {
    model, messages: [{ role: 'user', content: 'Count.' }], max_tokens: 12, seed: 5, temperature: 0.7,
    logprobs: true, top_logprobs: 2,
  };
  const checkEntries = (entries) => {
    assert.equal(entries.length, 12);
    for (const e of entries) {
      assert.equal(typeof e.token, 'string');
      assert.ok(e.logprob <= 0, `logprob ${e.logprob}`);
      assert.equal(e.top_logprobs.length, 2);
      assert.ok(e.top_logprobs[0].logprob >= e.top_logprobs[1].logprob);
      assert.ok(e.logprob <= e.top_logprobs[0].logprob + 1e-6);
    }
  };
  const plain = await client.chat.completions.create(request);
  checkEntries(plain.choices[0].logprobs.content);
  const stream = await client.chat.completions.create({ ...request, stream: true });
  const entries = [];
  let text = '';
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      text += c.delta?.content ?? '';
      if (c.logprobs?.content) entries.push(...c.logprobs.content);
    }
  }
  checkEntries(entries);
  // Same seed, same tokens, whether streamed or not.
  assert.deepEqual(entries.map((e) => e.token), plain.choices[0].logprobs.content.map((e) => e.token));
  assert.equal(text, plain.choices[0].message.content);
});

const metric = async (name) => {
  const text = await (await fetch(`${base}/metrics`)).text();
  return Number(text.match(new RegExp(`^${name} (\\d+)`, 'm'))[1]);
};
const settled = async () => {
  let active = 1;
  for (let i = 0; i < 50 && active !== 0; i++) {
    await new Promise((r) => setTimeout(r, 100));
    active = await metric('orchard_requests_active');
  }
  assert.equal(active, 0, 'generation still running after the client left');
  const generated = await metric('orchard_generated_tokens_total');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(await metric('orchard_generated_tokens_total'), generated);
  return generated;
};

await check('a client that disconnects cancels its generation', async () => {
  const before = await metric('orchard_generated_tokens_total');
  // The server runs with a 4096-token context: uncancelled, this would generate ~4000 tokens.
  // The server notices the client's exit at its next write (writes are 10 ms apart), and the
  // tiny model makes ~250 tokens in 10 ms here: a cancelled generation stays far below 2000.
  const stream = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Go on forever.' }], max_tokens: 100000, stream: true, seed: 11,
  });
  let chunks = 0;
  for await (const chunk of stream) {
    if (++chunks === 2) break;  // the role and the first token; leaving the loop aborts the request
  }
  const generated = await settled();
  assert.ok(generated - before < 2000, `${generated - before} tokens generated for a client that read 2 chunks`);
});

await check('a client that leaves a stream whose text is held back as a tool call cancels it', async () => {
  const before = await metric('orchard_generated_tokens_total');
  // Uncancelled, the forced call's unbounded string runs to the context's end (~3800 tokens),
  // and none of it is sent before the call is complete: only the role chunk comes.
  const writeTool = { type: 'function', function: { name: 'write', parameters: {
    type: 'object', properties: { text: { type: 'string' } }, required: ['text'] } } };
  const stream = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Go.' }], tools: [writeTool], tool_choice: 'required',
    max_tokens: 100000, stream: true, seed: 11,
  });
  for await (const chunk of stream) break;
  const generated = await settled();
  assert.ok(generated - before < 2000, `${generated - before} tokens generated for a client that left`);
});

await check('a client that leaves before its answer that is not streamed cancels its generation', async () => {
  const before = await metric('orchard_generated_tokens_total');
  const abort = new AbortController();
  const request = fetch(`${base}/v1/chat/completions`, {
    method: 'POST', signal: abort.signal, headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'Go on forever.' }], max_tokens: 100000, seed: 11 }),
  }).then((res) => res.json());
  // Leave as soon as the server runs the request (uncancelled, it makes ~4000 tokens).
  for (let i = 0; i < 2000 && await metric('orchard_requests_active') === 0; i++) await new Promise((r) => setTimeout(r, 1));
  abort.abort();
  await assert.rejects(request, (e) => e.name === 'AbortError');
  const generated = await settled();
  assert.ok(generated - before < 2000, `${generated - before} tokens generated for a client that left`);
});

await check('metrics', async () => {
  const text = await (await fetch(`${base}/metrics`)).text();
  assert.match(text, /orchard_requests_total\{endpoint="\/v1\/chat\/completions",status="200"\} \d+/);
  assert.match(text, /orchard_requests_total\{endpoint="\/v1\/chat\/completions",status="400"\} \d+/);
  assert.match(text, /orchard_generated_tokens_total \d+/);
  assert.match(text, /orchard_time_to_first_token_seconds_bucket\{le="\+Inf"\} \d+/);
  assert.match(text, /orchard_token_latency_seconds_count \d+/);
  assert.match(text, /orchard_queue_depth \d+/);
  // The three clients above that left.
  assert.ok(Number(text.match(/^orchard_abandoned_requests_total (\d+)/m)[1]) >= 3);
});
console.log('all checks passed');
