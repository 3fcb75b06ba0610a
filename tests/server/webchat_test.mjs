// The web chat page (web/chat/) in headless chromium, against `orchard serve` on the tiny chat
// model (tests/server/webchat_test.sh starts both): the answer streams into the page, Stop
// cancels the generation on the server (its /metrics), the conversation survives a reload (it
// lives in localStorage), and neither the user's text nor the model's can run a script or add
// markup. A second server, started with --api-key, serves the page without the key and answers
// the calls that carry the key typed in the page.
//   node webchat_test.mjs BASE_URL KEYED_BASE_URL [SCREENSHOT.png]
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const [base, keyedBase, screenshot] = process.argv.slice(2);
const kModel = 'tiny-qwen2-chat-q8_0.gguf';
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function metric(name) {
  const text = await (await fetch(`${base}/metrics`)).text();
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(text);
  assert.ok(m, `${name} in /metrics`);
  return Number(m[1]);
}

async function until(what, condition, ms = 10000) {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

// A stream as the server sends it, for answers the test writes itself.
function sse(pieces) {
  const chunk = (delta, finish = null) => `data: ${JSON.stringify({
    id: 'chatcmpl-test', object: 'chat.completion.chunk', created: 0, model: 'fake',
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
  })}\n\n`;
  return chunk({ role: 'assistant', content: '' }) + pieces.map((p) => chunk({ content: p })).join('') +
    chunk({}, 'stop') + 'data: [DONE]\n\n';
}

const browser = await chromium.launch({ executablePath: process.env.ORCHARD_CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });
try {
  const problems = [];
  async function open() {
    const page = await browser.newPage({ viewport: { width: 960, height: 720 } });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => { if (/Content Security Policy|Refused/i.test(m.text())) problems.push(m.text()); });
    return page;
  }
  let page = await open();
  const idle = () => page.waitForFunction(() => !document.getElementById('send').disabled && document.getElementById('stop').disabled);
  async function setting(selector, value) {
    if (!(await page.isVisible(selector))) await page.click('#settings summary');
    await page.fill(selector, String(value));
    await page.dispatchEvent(selector, 'change');
  }
  async function say(text) {
    await page.fill('#input', text);
    await page.click('#send');
  }
  let assistant = page.locator('.message.assistant');
  const user = page.locator('.message.user');

  // The page and its script load under the Content-Security-Policy (the script fills in the
  // model's name from /v1/models).
  const response = await page.goto(`${base}/`);
  assert.equal(response.status(), 200);
  assert.match(response.headers()['content-security-policy'], /default-src 'self'/);
  assert.equal(response.headers()['x-content-type-options'], 'nosniff');
  await page.waitForFunction((m) => document.getElementById('model').textContent === m, kModel);

  // Streaming, then Stop halfway. The server's first generation: its counters start at 0.
  await setting('#max-tokens', 8000);
  await setting('#temperature', 0);  // greedy: the tiny model's answer to this runs to max tokens (webchat_test.sh)
  const abandoned = await metric('orchard_abandoned_requests_total');
  await say('Tell me a long story.');
  const seen = [];
  await until('the answer to grow twice', async () => {
    const length = ((await assistant.last().textContent()) || '').length;
    if (length > (seen.at(-1) ?? 0)) seen.push(length);
    return seen.length >= 3;
  });
  assert.ok(await page.isEnabled('#stop'), 'Stop is enabled while the answer streams');
  await page.click('#stop');
  await page.waitForSelector('.message.assistant.stopped');
  await idle();
  await until('the server to cancel the generation', async () => (await metric('orchard_abandoned_requests_total')) === abandoned + 1);
  const generated = await metric('orchard_generated_tokens_total');
  assert.ok(generated < 8000, `stopped mid-answer: ${generated} of 8000 tokens generated`);
  const stopped = await assistant.last().textContent();
  assert.ok(stopped.length >= seen[2], 'the text received before Stop stays');
  console.log(`streamed: lengths ${seen.join(' < ')}, stopped at ${stopped.length} characters, ${generated} tokens generated`);

  // The conversation survives a reload: it is in localStorage.
  await page.reload();
  await page.waitForSelector('.message.assistant.stopped');
  assert.deepEqual(await user.allTextContents(), ['Tell me a long story.']);
  assert.equal(await assistant.last().textContent(), stopped);
  assert.equal(await page.inputValue('#max-tokens'), '8000', 'settings are kept too');
  const stored = await page.evaluate(() => JSON.parse(localStorage.getItem('orchard.chat')));
  assert.equal(stored.length, 2);

  // A user message with markup is shown as text and runs nothing.
  await setting('#max-tokens', 12);
  const evil = '<img src=x onerror="window.__pwned=1"> and <script>window.__pwned=2</script>';
  await say(evil);
  await idle();
  assert.equal(await user.last().textContent(), evil);
  assert.equal(await page.locator('#messages img, #messages script').count(), 0);
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  await page.reload();  // and from localStorage too
  await page.waitForFunction((n) => document.querySelectorAll('.message.user').length === n, 2);
  assert.equal(await user.last().textContent(), evil);
  assert.equal(await page.locator('#messages img, #messages script').count(), 0);
  assert.equal(await page.evaluate(() => window.__pwned), undefined);

  // A real answer, for the picture.
  await page.click('#new-chat');
  assert.equal(await page.locator('.message').count(), 0);
  await setting('#system', 'You are a helpful assistant.');
  await setting('#max-tokens', 48);
  await say('Hello! What can you do?');
  await idle();
  assert.equal(await assistant.count(), 1);
  assert.ok(((await assistant.last().textContent()) || '').length > 0, 'the model answered');
  if (await page.isVisible('#system')) await page.click('#settings summary');  // the conversation, not the form
  if (screenshot) await page.screenshot({ path: screenshot });

  // The model's text as Markdown, never as HTML: an answer the test writes (split mid-tag across
  // chunks) with markup, a code block and links.
  const answer = ['Some **bold** text and <img src=x onerror="window.__pwn', 'ed=3"> raw markup.\n\n',
    '```html\n<script>window.__pwned=4</script>\n<b>not bold</b>\n```\n\n',
    '- one with `code`\n- [bad](javascript:window.__pwned=5)\n- [good](https://example.com/a)\n'];
  let authorization;
  await page.route('**/v1/chat/completions', (route) => {
    authorization = route.request().headers().authorization;
    return route.fulfill({ status: 200, headers: { 'content-type': 'text/event-stream' }, body: sse(answer) });
  });
  await say('Show me some markdown.');
  await idle();
  const last = assistant.last();
  assert.equal(await last.locator('img, script, b').count(), 0);
  assert.equal(await last.locator('strong').textContent(), 'bold');
  assert.match(await last.locator('p').first().textContent(), /<img src=x onerror="window.__pwned=3"> raw markup\./);
  assert.equal(await last.locator('pre > code').textContent(), '<script>window.__pwned=4</script>\n<b>not bold</b>');
  assert.equal(await last.locator('li').count(), 3);
  assert.equal(await last.locator('li code').textContent(), 'code');
  assert.equal(await last.locator('a').count(), 1, 'only the https link is a link');
  assert.equal(await last.locator('a').getAttribute('href'), 'https://example.com/a');
  assert.match(await last.locator('a').getAttribute('rel'), /noopener/);
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  assert.equal(authorization, undefined, 'no key, no Authorization header');

  // The API key goes with each API call as a bearer token; an error is shown in the page.
  await page.unroute('**/v1/chat/completions');
  await page.route('**/v1/chat/completions', (route) => {
    authorization = route.request().headers().authorization;
    return route.fulfill({ status: 401, headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ error: { message: 'invalid API key', type: 'invalid_request_error', param: null, code: 'invalid_api_key' } }) });
  });
  await setting('#api-key', 'sk-test-123');
  await say('Anyone there?');
  await idle();
  assert.equal(authorization, 'Bearer sk-test-123');
  assert.ok(await page.isVisible('#error'));
  assert.match(await page.textContent('#error'), /401.*invalid API key/);
  assert.equal(await page.evaluate(() => localStorage.getItem('orchard.apiKey')), 'sk-test-123');

  // With --api-key: the page and its files load without the key (the model list, an API call,
  // is refused and the page says so); with the key typed under Settings the calls go through.
  page = await open();
  assistant = page.locator('.message.assistant');
  const keyedPage = await page.goto(`${keyedBase}/`);
  assert.equal(keyedPage.status(), 200);
  await page.waitForFunction(() => /401/.test(document.getElementById('error').textContent));
  assert.equal(await page.textContent('#model'), '');
  await setting('#api-key', 'sk-webchat-test');
  await page.waitForFunction((m) => document.getElementById('model').textContent === m, kModel);
  assert.ok(await page.isHidden('#error'));
  await setting('#max-tokens', 8);
  await say('Hi');
  await idle();
  assert.ok(await page.isHidden('#error'));
  assert.equal(await assistant.count(), 1);
  assert.ok(((await assistant.last().textContent()) || '').length > 0, 'the model answered with the key');
  await setting('#api-key', 'sk-wrong');
  await say('Hi again');
  await idle();
  assert.match(await page.textContent('#error'), /401/);
  assert.equal(await assistant.count(), 1, 'a refused request leaves no empty answer');

  assert.deepEqual(problems, []);
  console.log('webchat: all checks passed');
} finally {
  await browser.close();
}
