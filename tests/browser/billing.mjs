// Payments in a real headless Chromium with JavaScript turned off (issue 15), against the
// testkit's mock Stripe run as a process (its hosted Checkout and portal pages included): a
// person buys a credit pack, comes back to "payment received, credits on the way" before
// Stripe's webhook lands, sees the balance rise when it does and the invoice listed; chooses
// the Pro plan and the next API request carries Pro's rate limit; switches to Team in the
// portal; sets up auto top-up. Screenshots at desktop and phone width go to $SCREENSHOTS_DIR.
//
// Run by scripts/browser-test:  LAYERS_BIN=… MOCK_STRIPE_BIN=… node tests/browser/billing.mjs
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { bin, chromium, chromiumPath, freePort, screenshotter, serverEnv, waitFor } from './lib/support.mjs';

const stripeBin = process.env.MOCK_STRIPE_BIN ?? 'target/debug/mock-stripe';
const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const dir = mkdtempSync(path.join(os.tmpdir(), 'layers-billing-'));

// The mock Stripe delivers each event 2 s after it happens, signed like Stripe.
const stripe = spawn(stripeBin, ['--deliver-to', `${base}/webhooks/stripe`, '--delay-ms', '2000'], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
const stripeUrl = await new Promise((resolve, reject) => {
  let out = '';
  stripe.stdout.on('data', (d) => {
    out += d;
    if (out.includes('\n')) resolve(out.split('\n')[0].trim());
  });
  stripe.once('exit', (code) => reject(new Error(`mock-stripe exited (${code})`)));
});

const env = serverEnv(port, dir, {
  LAYERS_STRIPE__SECRET_KEY: 'sk_test_layers_mock_0123456789',
  LAYERS_STRIPE__WEBHOOK_SECRETS: 'whsec_layers_mock_0123456789abcdef',
  LAYERS_STRIPE__API_BASE: stripeUrl,
  LAYERS_STRIPE__PLANS__STARTER: 'price_starter_mock',
  LAYERS_STRIPE__PLANS__PRO: 'price_pro_mock',
  LAYERS_STRIPE__PLANS__TEAM: 'price_team_mock',
  LAYERS_STRIPE__INCLUDED_CREDITS__PRO: '1000',
});

let log = '';
const server = spawn(bin, ['serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
server.stdout.on('data', (d) => { log += d; });
server.stderr.on('data', (d) => { log += d; });
const until = (what, find, ms) => waitFor(what, find, () => log, ms);
await until('the server', async () => (await fetch(`${base}/healthz`).catch(() => null))?.ok);
function admin(...args) {
  const r = spawnSync(bin, ['admin', ...args], { env, encoding: 'utf8' });
  assert.equal(r.status, 0, `layers admin ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}
function mailedLink(pathPrefix) {
  const re = new RegExp(`${base.replace(/[.]/g, '\\.')}${pathPrefix}\\?token=[A-Za-z0-9_-]+`);
  return (log.match(re) ?? [null])[0];
}
async function rateLimit(key) {
  const r = await fetch(`${base}/api/v1/balance`, { headers: { authorization: `Bearer ${key}` } });
  assert.equal(r.status, 200);
  return r.headers.get('x-ratelimit-limit-requests');
}

let failed = false;
const browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox'] });
try {
  const desktop = await browser.newContext({ viewport: { width: 1280, height: 860 }, javaScriptEnabled: false });
  const page = await desktop.newPage();
  const shot = screenshotter(page, path);
  const text = async (selector) => (await page.textContent(selector).catch(() => null))?.trim();
  const email = 'ada@example.com';
  const password = 'analytical engine notes';

  await page.goto(`${base}/signup`);
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.click('form[action="/signup"] button');
  await page.goto(await until('the confirmation e-mail', () => mailedLink('/auth/confirm')));
  await page.click('main button[type=submit]');
  await page.goto(`${base}/login`);
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.click('form[action="/login"] button');
  assert.equal(new URL(page.url()).pathname, '/dashboard');
  const key = admin('key', 'create', '--email', email, '--env', 'live', '--name', 'billing story');
  assert.equal(await rateLimit(key), '10', 'Free: 10 requests a minute');

  // The billing page: packs, a custom amount, plans, auto top-up, no invoices yet.
  await page.goto(`${base}/dashboard/billing`);
  assert.equal(await text('[data-test=balance]'), '0.00');
  assert.equal(await page.locator('.pack').count(), 4);
  await shot('billing');

  // Buy the 2,500-credit pack: straight to (mock) Stripe Checkout, pay, back.
  await page.click('[data-test=buy-2500]');
  assert.equal(new URL(page.url()).origin, stripeUrl, 'the buy form redirects straight to Checkout');
  assert.match(await text('h1'), /Pay \$25\.00/);
  await page.click('#pay');
  assert.equal(new URL(page.url()).pathname, '/dashboard/billing/checkout/success');
  // The webhook has not landed yet: nothing credited, and the page says so.
  assert.equal(await text('[data-test=checkout-title]'), 'Payment received, credits on the way');
  await shot('billing-credits-on-the-way');
  // The page refreshes itself (a Refresh header, no script) until the credits land.
  await until('the credits', async () => (await text('[data-test=checkout-title]')) === 'Credits added', 20000);
  assert.match(await text('[data-test=checkout-status]'), /2,500\.00 credits were added/);
  await page.goto(`${base}/dashboard/billing`);
  assert.equal(await text('[data-test=balance]'), '2,500.00', 'the balance rose by the purchase');
  assert.match(await text('#invoices tbody'), /MOCK-\d+/);
  assert.match(await text('table.statement tbody tr:first-child'), /Purchase/);

  // Choose Pro: Checkout in subscription mode; once Stripe confirms, the next request has
  // Pro's limit.
  await page.click('[data-test=plan-pro]');
  assert.equal(new URL(page.url()).origin, stripeUrl);
  await page.click('#pay');
  await until('the plan', async () => (await text('[data-test=checkout-title]')) === 'Plan active', 20000);
  assert.equal(await rateLimit(key), '300', 'the next request carries Pro\'s limit');
  await page.goto(`${base}/dashboard/billing`);
  assert.equal(await text('[data-test=plan]'), 'Pro');
  assert.match(await text('[data-test=subscription]'), /active/);
  assert.equal(await text('[data-test=balance]'), '3,500.00', 'Pro includes 1,000 credits a month');
  await shot('billing-pro');

  // Switch to Team in the portal.
  await page.click('#plan .panel-head button');
  assert.equal(new URL(page.url()).origin, stripeUrl, 'Manage billing opens the portal');
  await page.click('#switch-team');
  assert.equal(new URL(page.url()).pathname, '/dashboard/billing');
  await until('the Team plan', async () => {
    await page.reload();
    return (await text('[data-test=plan]')) === 'Team';
  }, 20000);
  assert.equal(await rateLimit(key), '1,000'.replace(',', ''), 'Team: 1,000 requests a minute');

  // Auto top-up, saved with the form.
  await page.check('#auto-topup input[name=enabled]');
  await page.fill('#threshold', '500');
  await page.fill('#topup-amount', '2500');
  await page.click('#auto-topup button[type=submit]');
  assert.match(await text('.notice'), /Auto top-up is saved/);
  assert.equal(await page.isChecked('#auto-topup input[name=enabled]'), true);
  await shot('billing-team');
  console.log('billing story: ok');
} catch (err) {
  failed = true;
  console.error(err);
  console.error(`--- server log ---\n${log.slice(-6000)}`);
} finally {
  await browser.close();
  server.kill('SIGTERM');
  stripe.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
