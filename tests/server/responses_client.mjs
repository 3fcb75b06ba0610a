// Drives a running `orchard serve` through the Responses API with the official `openai` npm
// client (pinned in package.json). Usage:
//   node responses_client.mjs http://127.0.0.1:PORT
// Exits non-zero with a message on the first failed check.
import OpenAI from 'openai';
import assert from 'node:assert/strict';
import { check } from './check.mjs';

const base = process.argv[2];
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: process.env.ORCHARD_API_KEY || 'unused', maxRetries: 0, timeout: 120000 });

function messageText(response) {
  let text = '';
  for (const item of response.output) {
    if (item.type !== 'message') continue;
    for (const part of item.content) {
      assert.equal(part.type, 'output_text');
      text += part.text;
    }
  }
  return text;
}

const weatherTool = {
  type: 'function',
  name: 'get_weather',
  description: 'Current weather in a city',
  strict: true,
  parameters: {
    type: 'object',
    properties: { city: { type: 'string', maxLength: 16 }, days: { type: 'integer', minimum: 1, maximum: 7 } },
    required: ['city', 'days'],
    additionalProperties: false,
  },
};

const models = await client.models.list();
const model = models.data[0].id;

let plainText;
await check('responses.create plain', async () => {
  const r = await client.responses.create({
    model, instructions: 'You are terse.', input: 'Say hello.', max_output_tokens: 16, temperature: 0,
  });
  assert.equal(r.object, 'response');
  assert.match(r.id, /^resp_/);
  assert.ok(['completed', 'incomplete'].includes(r.status));
  if (r.status === 'incomplete') assert.equal(r.incomplete_details.reason, 'max_output_tokens');
  assert.equal(r.model, model);
  assert.equal(r.output.length, 1);
  assert.equal(r.output[0].type, 'message');
  assert.equal(r.output[0].role, 'assistant');
  plainText = messageText(r);
  assert.equal(r.output_text, plainText);  // the SDK's own join of the output
  assert.ok(r.usage.input_tokens > 0 && r.usage.output_tokens > 0 && r.usage.output_tokens <= 16);
  assert.equal(r.usage.total_tokens, r.usage.input_tokens + r.usage.output_tokens);
});

await check('responses.create streamed', async () => {
  const stream = await client.responses.create({
    model, instructions: 'You are terse.', input: 'Say hello.', max_output_tokens: 16, temperature: 0, stream: true,
  });
  const events = [];
  for await (const event of stream) events.push(event);
  const types = events.map((e) => e.type);
  assert.deepEqual(types.slice(0, 4), ['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added']);
  const last = events[events.length - 1];
  assert.ok(['response.completed', 'response.incomplete'].includes(last.type), last.type);
  assert.deepEqual(types.slice(-4, -1), ['response.output_text.done', 'response.content_part.done', 'response.output_item.done']);
  events.forEach((e, i) => assert.equal(e.sequence_number, i));
  const deltas = events.filter((e) => e.type === 'response.output_text.delta');
  assert.ok(deltas.length >= 1);
  const text = deltas.map((e) => e.delta).join('');
  const done = events.find((e) => e.type === 'response.output_text.done');
  assert.equal(done.text, text);
  assert.equal(messageText(last.response), text);
  assert.equal(text, plainText);  // greedy: the answer not streamed
  assert.equal(last.response.id, events[0].response.id);
});

await check('responses.create function tool call round trip', async () => {
  const input = [{ role: 'user', content: 'What is the weather in Paris for 2 days?' }];
  const r = await client.responses.create({
    model, input, tools: [weatherTool], tool_choice: { type: 'function', name: 'get_weather' }, max_output_tokens: 60,
  });
  assert.equal(r.status, 'completed');
  const calls = r.output.filter((item) => item.type === 'function_call');
  assert.equal(calls.length, 1);
  const call = calls[0];
  assert.equal(call.name, 'get_weather');
  assert.match(call.call_id, /^call_/);
  const args = JSON.parse(call.arguments);
  assert.deepEqual(Object.keys(args).sort(), ['city', 'days']);
  assert.equal(typeof args.city, 'string');
  assert.ok([...args.city].length <= 16);
  assert.ok(Number.isInteger(args.days) && args.days >= 1 && args.days <= 7, `days ${args.days}`);
  // The call and its result go back; the answer is a message.
  const back = await client.responses.create({
    model,
    input: [...input, ...r.output, { type: 'function_call_output', call_id: call.call_id, output: JSON.stringify({ sky: 'clear', c: 21 }) }],
    tools: [weatherTool], tool_choice: 'none', max_output_tokens: 24,
  });
  assert.ok(['completed', 'incomplete'].includes(back.status));
  assert.equal(back.output.length, 1);
  assert.equal(back.output[0].type, 'message');
  assert.equal(typeof back.output_text, 'string');
  // The call and its result are in the prompt: more of it than the question alone.
  const alone = await client.responses.create({ model, input, tools: [weatherTool], tool_choice: 'none', max_output_tokens: 1 });
  assert.ok(back.usage.input_tokens > alone.usage.input_tokens + 10, `${back.usage.input_tokens} vs ${alone.usage.input_tokens}`);
});

await check('responses.create text.format json_schema', async () => {
  const schema = {
    type: 'object',
    properties: {
      name: { type: 'string', minLength: 1, maxLength: 12 },
      age: { type: 'integer', minimum: 0, maximum: 120 },
      tags: { type: 'array', items: { enum: ['a', 'b', 'c'] }, maxItems: 2 },
    },
    required: ['name', 'age', 'tags'],
    additionalProperties: false,
  };
  const r = await client.responses.create({
    model, input: 'Describe a person as JSON.', max_output_tokens: 120,
    text: { format: { type: 'json_schema', name: 'person', schema, strict: true } },
  });
  assert.equal(r.status, 'completed');
  const value = JSON.parse(r.output_text);
  // Validated here, apart from the server's schema compiler.
  assert.deepEqual(Object.keys(value).sort(), ['age', 'name', 'tags']);
  assert.equal(typeof value.name, 'string');
  assert.ok([...value.name].length >= 1 && [...value.name].length <= 12, `name ${value.name}`);
  assert.ok(Number.isInteger(value.age) && value.age >= 0 && value.age <= 120, `age ${value.age}`);
  assert.ok(Array.isArray(value.tags) && value.tags.length <= 2);
  for (const t of value.tags) assert.ok(['a', 'b', 'c'].includes(t), `tag ${t}`);
});

await check('responses.create previous_response_id is a 400', async () => {
  await assert.rejects(
    client.responses.create({ model, input: 'Hi', previous_response_id: 'resp_123' }),
    (e) => e.status === 400 && e.param === 'previous_response_id' && /stores no responses/.test(e.message),
  );
});
