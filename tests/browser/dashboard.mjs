// The dashboard in a real headless Chromium with JavaScript turned off (issue 14): a person
// with a month of usage (seeded by `layers admin demo seed`) creates a key, calls the API with
// it through a mock OpenAI upstream, finds each request in usage with its hold and charge,
// filters, exports the CSV, caps the key per day (402), rotates it, comes back the next day
// (the server restarted with its clock a day ahead), and locks the account down. Screenshots of
// every page at desktop and phone width go to $SCREENSHOTS_DIR.
//
// Run by scripts/browser-test:  LAYERS_BIN=target/debug/layers node tests/browser/dashboard.mjs
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { bin, chromium, chromiumPath, freePort, screenshotter, serverEnv, shots, waitFor } from './lib/support.mjs';



// A mock OpenAI upstream speaking the Chat Completions wire format (non-streamed).
let upstreamCalls = 0;
const upstream = http.createServer((req, res) => {
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => {
    upstreamCalls += 1;
    const asked = JSON.parse(body || '{}');
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({
      id: `chatcmpl-mock-${upstreamCalls}`, object: 'chat.completion', created: Math.floor(Date.now() / 1000),
      model: asked.model ?? 'gpt-4o-mini', system_fingerprint: 'fp_mock',
      choices: [{ index: 0, message: { role: 'assistant', content: 'Hello from the mock upstream.' }, logprobs: null, finish_reason: 'stop' }],
      usage: { prompt_tokens: 12, completion_tokens: 9, total_tokens: 21 },
    }));
  });
});
const upstreamPort = await freePort();
await new Promise((r) => upstream.listen(upstreamPort, '127.0.0.1', r));

const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const dir = mkdtempSync(path.join(os.tmpdir(), 'layers-dashboard-'));
const config = path.join(dir, 'layers.toml');
writeFileSync(config, `
[[providers]]
name = "mock"
kind = "openai"
base_url = "http://127.0.0.1:${upstreamPort}/v1"
api_key_env = "MOCK_OPENAI_KEY"

[[models]]
name = "mock/gpt-4o-mini"
routes = [{ provider = "mock", model = "gpt-4o-mini" }]
input_per_mtok = 0.15
output_per_mtok = 0.60
context_window = 128000
max_output_tokens = 16384
`);
const env = serverEnv(port, dir, { LAYERS_CONFIG: config, MOCK_OPENAI_KEY: 'sk-mock-upstream' });

let log = '';
let server = null;
async function start(extra = {}) {
  server = spawn(bin, ['serve'], { env: { ...env, ...extra }, stdio: ['ignore', 'pipe', 'pipe'] });
  server.stdout.on('data', (d) => { log += d; });
  server.stderr.on('data', (d) => { log += d; });
  await until('the server', async () => (await fetch(`${base}/healthz`).catch(() => null))?.ok);
}
async function stop() {
  const exited = new Promise((r) => server.once('exit', r));
  server.kill('SIGTERM');
  await exited;
}
function admin(...args) {
  const r = spawnSync(bin, ['admin', ...args], { env, encoding: 'utf8' });
  assert.equal(r.status, 0, `layers admin ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}
const until = (what, find, ms) => waitFor(what, find, () => log, ms);
function mailedLink(pathPrefix) {
  const re = new RegExp(`${base.replace(/[.]/g, '\\.')}${pathPrefix}\\?token=[A-Za-z0-9_-]+`);
  return (log.match(re) ?? [null])[0];
}
async function chat(key, model = 'mock/gpt-4o-mini') {
  const r = await fetch(`${base}/v1/chat/completions`, {
    method: 'POST',
    // The app names itself, as OpenRouter's attribution headers do (the referrer's path stays out).
    headers: {
      authorization: `Bearer ${key}`, 'content-type': 'application/json',
      'x-title': 'Browser story app', 'http-referer': 'https://story.example/chat?session=private',
    },
    body: JSON.stringify({ model, max_tokens: 40, messages: [{ role: 'user', content: 'Say hello' }] }),
  });
  return { status: r.status, requestId: r.headers.get('x-request-id'), body: await r.json() };
}

/** Micro-credits as the pages write credits: exact, at least two decimals, thousands grouped. */
function creditsDisplay(micros) {
  const whole = Math.floor(micros / 1e6).toLocaleString('en-US');
  let frac = String(micros % 1e6).padStart(6, '0').replace(/0+$/, '');
  return `${whole}.${frac.padEnd(2, '0')}`;
}

let failed = false;
await start();
const browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox'] });
try {
  const desktop = await browser.newContext({ viewport: { width: 1280, height: 860 }, javaScriptEnabled: false });
  const page = await desktop.newPage();
  const shot = screenshotter(page, path);
  const email = 'grace@example.com';
  const password = 'compiler nanoseconds';
  const logIn = async () => {
    await page.goto(`${base}/login`);
    await page.fill('#email', email);
    await page.fill('#password', password);
    await page.click('form[action="/login"] button');
    assert.equal(new URL(page.url()).pathname, '/dashboard');
  };

  // Sign up and confirm, then a month of history for the account.
  await page.goto(`${base}/signup`);
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.click('form[action="/signup"] button');
  await page.goto(await until('the confirmation e-mail', () => mailedLink('/auth/confirm')));
  await page.click('main button[type=submit]');
  admin('user', 'set-tier', '--email', email, '--tier', 'pro');
  admin('demo', 'seed', '--email', email, '--days', '30');
  await logIn();

  // The overview: the balance equals the ledger's sum, 30 days drawn, a runway forecast.
  assert.match(await page.textContent('[data-test=ledger-check]'), /equals the sum of your ledger/);
  assert.equal(await page.locator('.chart rect.bar').count(), 30);
  assert.match(await page.textContent('.runway'), /your balance lasts about \d+ days/);
  await shot('dashboard-overview');
  await page.goto(`${base}/dashboard/billing`);
  assert.ok(await page.locator('table.statement tbody tr').count() > 25, 'a month of statement lines');
  assert.equal(
    await page.textContent('table.statement tbody tr:first-child [data-test=balance-after]'),
    await page.textContent('[data-test=balance]'),
    'the newest line ends at the balance',
  );
  await shot('dashboard-billing');
  await page.goto(`${base}/dashboard/usage`);
  await shot('dashboard-usage');

  // Create a key: the full key once, in a field to select (no script needed).
  await page.goto(`${base}/dashboard/keys`);
  await shot('dashboard-keys');
  await page.fill('#key-name', 'Browser story');
  await page.check('input[name=env][value=live]');
  await page.click('#create button[type=submit]');
  const key = await page.inputValue('#new-key');
  assert.match(key, /^lyr_live_sk_/);
  assert.equal(await page.isVisible('button[data-copy]'), false, 'without JavaScript, no dead copy button');
  await shot('dashboard-new-key');
  const keyPath = await page.getAttribute('a:has-text("Set its limits")', 'href');
  const keyId = keyPath.split('/').pop();

  // Call the API with it: each request appears in usage with its hold and charge.
  const calls = [await chat(key), await chat(key)];
  for (const c of calls) assert.equal(c.status, 200, JSON.stringify(c.body));
  await until('the two requests in usage', async () => {
    await page.goto(`${base}/dashboard/usage?key=${keyId}`);
    return (await page.locator('tr[data-request-id]').count()) === 2;
  });
  for (const c of calls) assert.equal(await page.locator(`tr[data-request-id="${c.requestId}"]`).count(), 1);
  assert.equal(await page.textContent('[data-test=total-requests]'), '2');
  const filteredBars = await page.locator('.chart rect.bar title').allTextContents();
  await page.click(`tr[data-request-id="${calls[0].requestId}"] a`);
  assert.equal(await page.textContent('[data-test=request-id]'), calls[0].requestId);
  const held = await page.textContent('[data-test=held]');
  const charged = await page.textContent('[data-test=charged]');
  assert.match(held, /^\d[\d,]*\.\d{2,6} credits$/);
  assert.equal(charged, `${creditsDisplay(calls[0].body.layers.credits_used_micros)} credits`, 'the charge the client was told');
  assert.notEqual(held, '0.00 credits');
  assert.equal(await page.textContent('[data-test=app]'), 'Browser story app · https://story.example');
  await shot('dashboard-request');

  // The filters change the table and the chart; the CSV holds exactly the filtered rows.
  await page.goto(`${base}/dashboard/usage`);
  const allRequests = Number((await page.textContent('[data-test=total-requests]')).replace(/,/g, ''));
  assert.ok(allRequests > 1000, `a month of requests: ${allRequests}`);
  const allBars = await page.locator('.chart rect.bar title').allTextContents();
  assert.notDeepEqual(allBars, filteredBars, 'the chart follows the filter');
  await page.selectOption('#f-key', keyId);
  await page.click('.filters button[type=submit]');
  assert.equal(await page.locator('tr[data-request-id]').count(), 2);
  const csv = await desktop.request.get(`${base}/dashboard/usage.csv?key=${keyId}`);
  assert.equal(csv.status(), 200);
  const lines = (await csv.text()).trim().split('\r\n');
  assert.equal(lines.length, 3, 'the header and the two filtered rows');
  for (const c of calls) assert.ok(lines.some((l) => l.split(',')[1] === c.requestId));
  assert.ok(lines.slice(1).every((l) => l.split(',')[2] === 'Browser story'), 'the key name column');

  // A daily limit: calls past it get 402.
  await page.goto(`${base}${keyPath}`);
  await page.fill('#limit', '0.01');
  await page.selectOption('select[name=period]', 'day');
  await page.click('#limits button[type=submit]');
  assert.match(await page.textContent('.notice.ok'), /limits are saved/);
  assert.match(await page.textContent('[data-test=next-reset]'), /00:00:00 UTC/);
  await shot('dashboard-key');
  let limited = null;
  let passed = 0;
  for (let i = 0; i < 60 && !limited; i++) {
    const r = await chat(key);
    if (r.status !== 200) limited = r; else passed += 1;
  }
  assert.ok(limited, 'the limit applied');
  assert.ok(passed >= 1, 'calls under the limit passed');
  assert.equal(limited.status, 402);
  assert.equal(limited.body.error.code, 'key_spend_limit_reached');

  // Rotate with a one-hour overlap: both secrets work (the old one past its limit still 402).
  await page.goto(`${base}${keyPath}`);
  await page.selectOption('#overlap', '3600');
  await page.click('#rotate button[type=submit]');
  const rotated = await page.inputValue('#new-key');
  assert.notEqual(rotated, key);
  assert.match(await page.textContent('main'), /The old secret keeps working until/);
  await shot('dashboard-rotated');
  const testKeyPage = await (async () => {
    await page.goto(`${base}/dashboard/keys`);
    await page.fill('#key-name', 'Sandbox key');
    await page.check('input[name=env][value=test]');
    await page.click('#create button[type=submit]');
    return page.inputValue('#new-key');
  })();
  assert.equal((await chat(testKeyPage, 'sandbox/echo')).status, 200);
  assert.equal((await chat(rotated)).status, 402, 'the new secret shares the limit');
  assert.equal((await chat(key)).status, 402, 'the old secret works (and shares the limit)');

  // The next day (the server restarted with its clock 25 hours ahead): the limit has reset,
  // the overlap is over.
  await stop();
  await start({ LAYERS_TESTING__CLOCK_AHEAD_SECS: String(25 * 3600) });
  assert.equal((await chat(rotated)).status, 200, 'a new day under the daily limit');
  assert.equal((await chat(key)).status, 401, 'the old secret after its overlap');

  // With JavaScript, the copy button appears next to the field.
  const scripted = await browser.newContext({ viewport: { width: 1280, height: 860 }, javaScriptEnabled: true });
  const js = await scripted.newPage();
  await js.goto(`${base}/login`);
  await js.fill('#email', email);
  await js.fill('#password', password);
  await js.click('form[action="/login"] button');
  await js.goto(`${base}/dashboard/keys`);
  await js.fill('#key-name', 'Scripted');
  await js.click('#create button[type=submit]');
  assert.equal(await js.isVisible('button[data-copy]'), true);
  const lastKey = await js.inputValue('#new-key');
  await scripted.close();

  // The incident panel: every live key off, every session ended.
  await logIn();
  await page.goto(`${base}/dashboard/security`);
  await shot('dashboard-security');
  await page.fill('#lock-password', password);
  await page.check('input[name=confirm]');
  await page.click('#lock-down button[type=submit]');
  assert.match(await page.textContent('[data-test=lock-down-result]'), /keys were deactivated and \d+ sessions? (was|were) ended/);
  await shot('dashboard-locked-down');
  const started = Date.now();
  for (const k of [rotated, lastKey]) assert.equal((await chat(k)).status, 401);
  assert.equal((await chat(testKeyPage, 'sandbox/echo')).status, 401);
  assert.ok(Date.now() - started < 1000, 'refused within a second');
  await page.goto(`${base}/dashboard`);
  assert.equal(new URL(page.url()).pathname, '/login', 'the session ended');

  // After logging in again the security events tell the story.
  await logIn();
  await page.goto(`${base}/dashboard/security`);
  assert.equal(await page.locator('tr[data-event=incident_lockdown]').count(), 1);
  assert.ok(await page.locator('tr[data-event=key_rotated]').count() >= 1);
  await page.goto(`${base}/dashboard/keys`);
  await shot('dashboard-keys-after-lock-down');

  for (const secret of [key, rotated, lastKey, password]) assert.ok(!log.includes(secret), 'no secret in the server log');
  assert.doesNotMatch(log, /panicked/);
  console.log(`browser: dashboard story passed; screenshots in ${shots}`);
} catch (err) {
  failed = true;
  console.error(err);
  console.error(`--- server log (end) ---\n${log.slice(-3000)}`);
} finally {
  await browser.close();
  await stop().catch(() => {});
  upstream.close();
  rmSync(dir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
