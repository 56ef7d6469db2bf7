// openai-node running inside headless Chromium, on a page of another origin, calling Layers
// through CORS (issue 17): a browser app's code as its users write it (`dangerouslyAllowBrowser`,
// a test key). From an origin the operator allowed, a completion, a stream and a Responses call
// succeed; from one it did not allow, the browser refuses the answer (no CORS grant) and the SDK
// reports a connection error. A screenshot of the page goes to $SCREENSHOTS_DIR.
//
// Run by scripts/browser-test:  LAYERS_BIN=… OPENAI_BROWSER_BUNDLE=… node tests/browser/clients.mjs
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { bin, chromium, chromiumPath, freePort, serverEnv, shots, waitFor } from './lib/support.mjs';

const bundle = readFileSync(process.env.OPENAI_BROWSER_BUNDLE);
const [port, allowedPort, otherPort] = [await freePort(), await freePort(), await freePort()];
const base = `http://127.0.0.1:${port}`;
const allowed = `http://127.0.0.1:${allowedPort}`;
const dir = mkdtempSync(path.join(os.tmpdir(), 'layers-clients-'));
const env = serverEnv(port, dir, { LAYERS_ALLOWED_ORIGINS: allowed });

let log = '';
const server = spawn(bin, ['serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
server.stdout.on('data', (d) => { log += d; });
server.stderr.on('data', (d) => { log += d; });
await waitFor('the server', async () => (await fetch(`${base}/healthz`).catch(() => null))?.ok, () => log);
function admin(...args) {
  const r = spawnSync(bin, ['admin', ...args], { env, encoding: 'utf8' });
  assert.equal(r.status, 0, `layers admin ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}
admin('user', 'create', '--email', 'browser-app@example.com');
const key = admin('key', 'create', '--email', 'browser-app@example.com', '--env', 'test');

// The app's page: plain HTML and a module script, as a bundler would emit.
const page = `<!doctype html><meta charset="utf-8"><title>A browser app on Layers</title>
<style>body{font:15px/1.5 system-ui,sans-serif;margin:2rem;max-width:46rem;color:#1b1f24}
h1{font-size:1.3rem}dt{font-weight:600;margin-top:.8rem}dd{margin:0;font-family:ui-monospace,monospace;
white-space:pre-wrap;background:#f4f6f8;padding:.4rem .6rem;border-radius:6px}</style>
<h1>openai-node in the browser, calling Layers</h1>
<dl><dt>Origin</dt><dd id="origin"></dd><dt>Chat completion</dt><dd id="chat">…</dd>
<dt>Streamed</dt><dd id="stream">…</dd><dt>Responses API</dt><dd id="responses">…</dd></dl>
<p id="status">running</p>
<script type="module">
import OpenAI from '/openai.mjs';
const show = (id, text) => { document.getElementById(id).textContent = text; };
show('origin', location.origin);
const client = new OpenAI({ baseURL: ${JSON.stringify(base + '/v1')}, apiKey: ${JSON.stringify(key)},
  dangerouslyAllowBrowser: true, maxRetries: 0 });
try {
  const r = await client.chat.completions.create({ model: 'sandbox/echo', messages: [{ role: 'user', content: 'Hello from a page' }] });
  show('chat', r.choices[0].message.content);
  let text = '';
  const stream = await client.chat.completions.create({ model: 'sandbox/echo', stream: true,
    messages: [{ role: 'user', content: 'Hello from a page' }] });
  for await (const chunk of stream) { text += chunk.choices[0]?.delta?.content ?? ''; show('stream', text); }
  const resp = await client.responses.create({ model: 'sandbox/echo', input: 'Hello from a page' });
  show('responses', resp.output_text);
  show('status', 'done');
} catch (err) {
  show('status', 'error: ' + err.constructor.name + ': ' + err.message);
}
</script>`;
const serve = (listenPort) => new Promise((resolve) => {
  const s = http.createServer((req, res) => {
    if (req.url === '/openai.mjs') {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      res.end(bundle);
    } else {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(page);
    }
  });
  s.listen(listenPort, '127.0.0.1', () => resolve(s));
});
const sites = [await serve(allowedPort), await serve(otherPort)];

const browser = await chromium.launch({
  executablePath: chromiumPath,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
try {
  const tab = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  await tab.goto(allowed);
  const status = await waitFor('the allowed page to finish', async () => {
    const s = await tab.textContent('#status');
    return s !== 'running' && s;
  }, () => log);
  assert.equal(status, 'done', status);
  const chat = await tab.textContent('#chat');
  assert.match(chat, /You said: "Hello from a page"/);
  assert.equal(await tab.textContent('#stream'), chat, 'the stream says what the completion said');
  assert.equal(await tab.textContent('#responses'), chat);
  await tab.screenshot({ path: path.join(shots, 'browser-app-desktop.png') });

  // From an origin the operator did not allow, the browser withholds the answer.
  await tab.goto(`http://127.0.0.1:${otherPort}`);
  const refused = await waitFor('the other page to finish', async () => {
    const s = await tab.textContent('#status');
    return s !== 'running' && s;
  }, () => log);
  assert.match(refused, /^error: APIConnectionError/, refused);
  console.log('openai-node in Chromium: allowed origin answered; another origin refused by CORS');
} finally {
  await browser.close();
  for (const s of sites) s.close();
  server.kill();
  rmSync(dir, { recursive: true, force: true });
}
