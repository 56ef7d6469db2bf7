// Layers' account pages in a real headless Chromium with JavaScript turned off: the story of
// one person from sign-up to a changed password, the link read from the console mailer, and a
// screenshot of every page at desktop and phone width (docs/screenshots/).
//
// Run by scripts/test (it builds the binary and installs playwright-core under target/):
//   LAYERS_BIN=target/debug/layers node tests/browser/accounts.mjs
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { bin, chromium, chromiumPath, freePort, require, shots, waitFor } from './lib/support.mjs';
import { createHmac } from 'node:crypto';

const { OAuth2Server } = await import(require.resolve('oauth2-mock-server'));


// The local OpenID Connect provider standing in for Google (npm's oauth2-mock-server: RS256,
// PKCE, nonce); who signs in is set per test in `googleUser`.
const idp = new OAuth2Server();
await idp.issuer.keys.generate('RS256');
await idp.start(await freePort(), '127.0.0.1');
let googleUser = { sub: 'google-1', email: 'nobody@gmail.example', email_verified: true };
idp.service.on('beforeTokenSigning', (token) => { Object.assign(token.payload, googleUser); });

const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const dir = mkdtempSync(path.join(os.tmpdir(), 'layers-browser-'));
let log = '';
const server = spawn(bin, ['serve'], {
  env: {
    // The server reads every LAYERS_* variable as a setting: pass none of the caller's.
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('LAYERS_'))),
    LAYERS_LISTEN: `127.0.0.1:${port}`,
    LAYERS_PUBLIC_URL: base,
    LAYERS_DATABASE_URL: `sqlite://${dir}/layers.db`,
    LAYERS_DATA_DIR: dir,
    LAYERS_LOG__LEVEL: 'info',
    LAYERS_OIDC__ISSUER: idp.issuer.url,
    LAYERS_OIDC__CLIENT_ID: 'layers-browser-test',
    LAYERS_OIDC__CLIENT_SECRET: 'layers-browser-test-secret',
    NO_COLOR: '1',
  },
  stdio: ['ignore', 'pipe', 'pipe'],
});
server.stdout.on('data', (d) => { log += d; });
server.stderr.on('data', (d) => { log += d; });

const until = (what, find, ms) => waitFor(what, find, () => log, ms);

/** The nth link (1-based) to `pathPrefix` the console mailer wrote. */
function mailedLink(pathPrefix, n = 1) {
  const re = new RegExp(`${base.replace(/[.]/g, '\\.')}${pathPrefix}\\?token=[A-Za-z0-9_-]+`, 'g');
  const all = log.match(re) ?? [];
  return all.length >= n ? all[n - 1] : null;
}

/** RFC 6238 TOTP (HMAC-SHA-1, 30 s, 6 digits) of a base32 secret, `ahead` steps from now. */
function totp(base32, ahead = 0) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0, value = 0; const bytes = [];
  for (const c of base32) { value = (value << 5) | alphabet.indexOf(c); bits += 5; if (bits >= 8) { bytes.push((value >>> (bits - 8)) & 255); bits -= 8; } }
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 1000 / 30) + ahead));
  const h = createHmac('sha1', Buffer.from(bytes)).update(counter).digest();
  const o = h[19] & 15;
  const bin = ((h[o] & 0x7f) << 24) | (h[o + 1] << 16) | (h[o + 2] << 8) | h[o + 3];
  return String(bin % 1000000).padStart(6, '0');
}

let failed = false;
const browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox'] });
try {
  await until('the server', async () => (await fetch(`${base}/healthz`).catch(() => null))?.ok);
  const desktop = await browser.newContext({ viewport: { width: 1280, height: 860 }, javaScriptEnabled: false });
  const phone = await browser.newContext({
    viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, javaScriptEnabled: false,
  });
  const page = await desktop.newPage();
  const mobile = await phone.newPage();
  /** A screenshot of the page as it is; a desktop page is also shot at phone width. */
  const shot = async (name, p = page) => {
    if (p !== page) {
      await p.screenshot({ path: path.join(shots, `${name}-phone.png`), fullPage: true });
      return;
    }
    await p.screenshot({ path: path.join(shots, `${name}-desktop.png`), fullPage: true });
    await p.setViewportSize({ width: 390, height: 844 });
    await p.screenshot({ path: path.join(shots, `${name}-phone.png`), fullPage: true });
    await p.setViewportSize({ width: 1280, height: 860 });
  };
  /** Screenshots a public page at both widths. */
  const both = async (name, url) => {
    await page.goto(url);
    await shot(name);
    await mobile.goto(url);
    await shot(name, mobile);
  };
  const email = 'ada@example.com';
  const password = 'analytical engine notes';

  // An unauthenticated visit to the settings goes to login, and back after it.
  await page.goto(`${base}/dashboard/settings`);
  assert.equal(new URL(page.url()).pathname, '/login');
  assert.equal(new URL(page.url()).searchParams.get('redirectTo'), '/dashboard/settings');

  // Sign up.
  await both('signup', `${base}/signup`);
  await page.goto(`${base}/signup`);
  await page.fill('#email', email);
  await page.fill('#password', 'password1234');
  await page.click('form[action="/signup"] button');
  assert.match(await page.textContent('.notice.bad'), /too common/);
  await shot('signup-weak-password');
  await page.fill('#password', password);
  await page.click('form[action="/signup"] button');
  assert.match(await page.textContent('h1'), /Check your inbox/);
  await shot('check-email');

  // The link, from the console mailer's message in the server log.
  const confirm = await until('the confirmation e-mail', () => mailedLink('/auth/confirm'));
  assert.match(log, /DEVELOPMENT MAIL/);
  await page.goto(confirm);
  await shot('confirm');
  await page.click('button[type=submit]');
  assert.equal(new URL(page.url()).pathname, '/login');
  assert.match(await page.textContent('.notice.ok'), /confirmed/);
  await shot('login-confirmed');
  await mobile.goto(page.url());
  await shot('login', mobile);
  await page.goto(`${base}/login?redirectTo=/dashboard/settings`);
  await shot('login');

  // A wrong password, then the right one: back to the page first asked for.
  await page.fill('#email', email);
  await page.fill('#password', 'not the password at all');
  await page.click('form[action="/login"] button');
  assert.match(await page.textContent('.notice.bad'), /Incorrect e-mail or password/);
  await shot('login-failed');
  await page.fill('#password', password);
  await page.click('form[action="/login"] button');
  assert.equal(new URL(page.url()).pathname, '/dashboard/settings');
  assert.match(await page.textContent('main'), /ada@example\.com/);
  await shot('settings');

  // The phone logs in too, and sees both sessions.
  await mobile.goto(`${base}/login`);
  await mobile.fill('#email', email);
  await mobile.fill('#password', password);
  await mobile.click('form[action="/login"] button');
  assert.equal(new URL(mobile.url()).pathname, '/dashboard');
  await mobile.goto(`${base}/dashboard/settings`);
  assert.equal(await mobile.locator('#sessions tbody tr').count(), 2);
  await shot('settings', mobile);

  // Log out, and in again.
  await page.click('form[action="/logout"] button');
  assert.match(await page.textContent('.notice.ok'), /logged out/);
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.click('form[action="/login"] button');
  assert.equal(new URL(page.url()).pathname, '/dashboard');
  await page.goto(`${base}/dashboard/settings`);

  // Two-factor login: set up with the key shown as text, the first code, recovery codes once.
  await page.fill('#setup-password', password);
  await page.click('form[action="/dashboard/settings/two-factor/setup"] button');
  assert.equal(new URL(page.url()).pathname, '/dashboard/settings/two-factor');
  assert.equal(await page.locator('.qr svg').count(), 1, 'a QR code drawn as SVG');
  const secret = (await page.textContent('code.secret')).trim();
  await shot('two-factor-setup');
  await page.fill('#code', '000000');
  await page.click('main button[type=submit]');
  assert.match(await page.textContent('.notice.bad'), /not correct/);
  await page.fill('#code', totp(secret));
  await page.click('main button[type=submit]');
  const codes = await page.locator('.codes code').allTextContents();
  assert.equal(codes.length, 10);
  await shot('two-factor-recovery-codes');
  await page.click('text=I have saved my recovery codes');
  assert.match(await page.textContent('#two-factor'), /10 of 10 recovery codes left/);
  // Logging in now asks for a code; then a recovery code works, once.
  await page.click('form[action="/logout"] button');
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.click('form[action="/login"] button');
  assert.match(await page.textContent('h1'), /Two-factor login/);
  await shot('login-two-factor');
  await page.fill('#code', totp(secret, 1));
  await page.click('button[type=submit]');
  assert.equal(new URL(page.url()).pathname, '/dashboard');
  await page.goto(`${base}/dashboard/settings`);
  await page.click('form[action="/logout"] button');
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.click('form[action="/login"] button');
  await page.fill('#code', codes[0]);
  await page.click('button[type=submit]');
  assert.equal(new URL(page.url()).pathname, '/dashboard');
  await page.goto(`${base}/dashboard/settings`);
  assert.match(await page.textContent('#two-factor'), /9 of 10 recovery codes left/);

  // Change the password: the phone's session ends.
  const fresh = 'difference engine plans';
  await page.fill('#current', password);
  await page.fill('#new', fresh);
  await page.click('#change-password button[type=submit]');
  assert.match(await page.textContent('.notice.ok'), /password was changed/);
  await shot('settings-password-changed');
  await mobile.reload();
  assert.equal(new URL(mobile.url()).pathname, '/login');

  // Forgot the password: the link from the log, a new password, every session out.
  await both('forgot-password', `${base}/forgot-password`);
  await mobile.fill('#email', email);
  await mobile.click('button[type=submit]');
  assert.match(await mobile.textContent('h1'), /Check your inbox/);
  const reset = await until('the reset e-mail', () => mailedLink('/reset-password'));
  await mobile.goto(reset);
  await shot('reset-password', mobile);
  await page.goto(reset);
  await shot('reset-password');
  const newest = 'lovelace note g bernoulli';
  await mobile.fill('#password', newest);
  await mobile.click('button[type=submit]');
  assert.match(await mobile.textContent('.notice.ok'), /password was changed/);
  await page.goto(`${base}/dashboard/settings`);
  assert.equal(new URL(page.url()).pathname, '/login', 'the reset ended the desktop session');
  // The same link again: expired.
  await page.goto(reset);
  await page.fill('#password', 'yet another passphrase');
  await page.click('button[type=submit]');
  assert.match(await page.textContent('h1'), /expired/);
  await shot('link-expired');
  await mobile.fill('#email', email);
  await mobile.fill('#password', newest);
  await mobile.click('form[action="/login"] button');
  await shot('login-two-factor', mobile);
  await mobile.fill('#code', codes[1]);
  await mobile.click('button[type=submit]');
  assert.equal(new URL(mobile.url()).pathname, '/dashboard');
  await mobile.goto(`${base}/dashboard/settings`);
  await mobile.goto(`${base}/dashboard/settings/two-factor`);
  await mobile.goto(`${base}/dashboard/settings`);
  await shot('settings-two-factor-on', mobile);

  // Export my data: a JSON download with the account in it.
  const [download] = await Promise.all([
    mobile.waitForEvent('download'),
    mobile.click('form[action="/dashboard/settings/export"] button'),
  ]);
  assert.match(download.suggestedFilename(), /^layers-export-\d{4}-\d{2}-\d{2}\.json$/);
  const exported = JSON.parse(readFileSync(await download.path(), 'utf8'));
  assert.equal(exported.account.email, email);
  assert.ok(exported.audit_log.some((e) => e.event === 'two_factor_enabled'));

  // Delete my account, confirmed with the password: out, and the address is free again.
  await page.goto(`${base}/login`);
  await page.fill('#email', email);
  await page.fill('#password', newest);
  await page.click('form[action="/login"] button');
  await page.fill('#code', codes[2]);
  await page.click('button[type=submit]');
  await page.goto(`${base}/dashboard/settings`);
  await shot('settings-two-factor-on');
  await page.fill('#delete-password', newest);
  await page.click('form[action="/dashboard/settings/delete"] button');
  assert.match(await page.textContent('.notice.ok'), /account was deleted/);
  await shot('account-deleted');
  await mobile.reload();
  assert.equal(new URL(mobile.url()).pathname, '/login', 'every session ended with the account');

  // Google sign-in, for a new person: an account, confirmed, with no password.
  googleUser = { sub: 'google-42', email: 'katherine@gmail.example', email_verified: true };
  const googleContext = await browser.newContext({ viewport: { width: 1280, height: 860 }, javaScriptEnabled: false });
  const g = await googleContext.newPage();
  if (process.env.DEBUG_OIDC) g.on('response', (r) => console.error('DEBUG', r.status(), r.url(), r.headers()['set-cookie'] ?? '', r.headers()['location'] ?? ''));
  await g.goto(`${base}/login?redirectTo=/dashboard/settings`);
  await g.click('form[action="/auth/google"] button');
  assert.equal(new URL(g.url()).pathname, '/dashboard/settings');
  assert.match(await g.textContent('main'), /katherine@gmail\.example/);
  // For an existing account (confirmed, with a password): the verified e-mail links it.
  await g.click('form[action="/logout"] button');
  await g.goto(`${base}/signup`);
  await g.fill('#email', 'grace@example.com');
  await g.fill('#password', 'cobol compiler bugs');
  await g.click('form[action="/signup"] button');
  await g.goto(await until('grace\'s confirmation', () => mailedLink('/auth/confirm', 2)));
  await g.click('main button[type=submit]');
  googleUser = { sub: 'google-77', email: 'grace@example.com', email_verified: true };
  await g.click('form[action="/auth/google"] button');
  assert.equal(new URL(g.url()).pathname, '/dashboard');
  await g.goto(`${base}/dashboard/settings`);
  assert.match(await g.textContent('main'), /grace@example\.com/);
  // The password still works too: one account, two ways in.
  await g.click('form[action="/logout"] button');
  await g.fill('#email', 'grace@example.com');
  await g.fill('#password', 'cobol compiler bugs');
  await g.click('form[action="/login"] button');
  assert.equal(new URL(g.url()).pathname, '/dashboard');
  await g.goto(`${base}/dashboard/settings`);
  await googleContext.close();

  // No script ran anywhere, and no page asked for one.
  assert.doesNotMatch(log, /panicked/);
  console.log(`browser: accounts story passed; screenshots in ${shots}`);
} catch (err) {
  failed = true;
  console.error(err);
  console.error(`--- server log (end) ---\n${log.slice(-3000)}`);
} finally {
  await browser.close();
  server.kill('SIGTERM');
  await idp.stop();
  rmSync(dir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
