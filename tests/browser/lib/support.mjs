// What every browser story shares: where the binary, Chromium and the screenshots are, a free
// port, and waiting for something with the server's log in the error.
import { mkdirSync } from 'node:fs';
import net from 'node:net';
import { createRequire } from 'node:module';

export const require = createRequire(process.env.PLAYWRIGHT_FROM ?? import.meta.url);
export const { chromium } = require('playwright-core');
export const bin = process.env.LAYERS_BIN ?? 'target/debug/layers';
export const shots = process.env.SCREENSHOTS_DIR ?? 'docs/screenshots';
export const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';
mkdirSync(shots, { recursive: true });

export const freePort = () => new Promise((resolve) => {
  const s = net.createServer();
  s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
});

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `find` until it returns something truthy; on timeout the error ends with `log()`. */
export async function waitFor(what, find, log, ms = 15000) {
  const end = Date.now() + ms;
  for (;;) {
    const got = await find();
    if (got) return got;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}\n--- server log ---\n${log().slice(-4000)}`);
    await sleep(50);
  }
}

/**
 * The environment of a `layers serve` on 127.0.0.1:`port` with its data in `dir` (SQLite), plus
 * `extra`. The server reads every LAYERS_* variable as a setting: none of the caller's pass.
 */
export function serverEnv(port, dir, extra = {}) {
  return {
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('LAYERS_'))),
    LAYERS_LISTEN: `127.0.0.1:${port}`,
    LAYERS_PUBLIC_URL: `http://127.0.0.1:${port}`,
    LAYERS_DATABASE_URL: `sqlite://${dir}/layers.db`,
    LAYERS_DATA_DIR: dir,
    LAYERS_LOG__LEVEL: 'info',
    NO_COLOR: '1',
    ...extra,
  };
}

/** Screenshots `page` as `<name>-desktop.png` (1280 wide) and `<name>-phone.png` (390 wide). */
export function screenshotter(page, path) {
  return async (name) => {
    await page.screenshot({ path: path.join(shots, `${name}-desktop.png`), fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: path.join(shots, `${name}-phone.png`), fullPage: true });
    await page.setViewportSize({ width: 1280, height: 860 });
  };
}
