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
