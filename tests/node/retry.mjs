// The retry contract, measured for one JavaScript client (argv[2]: openai, anthropic or ai-sdk),
// on a key limited to one request per window: a request the server refuses for good (400, with
// `x-should-retry: false`) is sent once however many retries are allowed; a 429 is retried after
// the `retry-after-ms` the server announced, and then succeeds. Every attempt goes through a
// fetch wrapper that records what the server said and when; the Rust test counts the server side.
import Anthropic from '@anthropic-ai/sdk';
import { createOpenAI } from '@ai-sdk/openai';
import { generateText } from 'ai';
import OpenAI from 'openai';

import { assert, done, env } from './check.mjs';

const sdk = process.argv[2];
const attempts = [];
const recording = async (url, init) => {
  const started = performance.now();
  const res = await fetch(url, init);
  attempts.push({ status: res.status, at: started, retryAfterMs: Number(res.headers.get('retry-after-ms') ?? NaN) });
  return res;
};
const opts = { baseURL: env('BASE_URL') + '/v1', apiKey: env('API_KEY'), fetch: recording };
const model = 'sandbox/echo';

let refused, answered;
if (sdk === 'openai') {
  const c = new OpenAI({ ...opts, maxRetries: 3 });
  refused = () => c.chat.completions.create({ model, max_tokens: 0, messages: [{ role: 'user', content: 'x' }] });
  answered = () => c.chat.completions.create({ model, messages: [{ role: 'user', content: 'x' }] });
} else if (sdk === 'anthropic') {
  const c = new Anthropic({ ...opts, baseURL: env('BASE_URL'), maxRetries: 3 });
  refused = () => c.messages.create({ model, max_tokens: 0, messages: [{ role: 'user', content: 'x' }] });
  answered = () => c.messages.create({ model, max_tokens: 64, messages: [{ role: 'user', content: 'x' }] });
} else if (sdk === 'ai-sdk') {
  const m = createOpenAI(opts).chat(model);
  refused = () => generateText({ model: m, prompt: 'x', maxRetries: 3, providerOptions: { openai: { maxCompletionTokens: 0 } } });
  answered = () => generateText({ model: m, prompt: 'x', maxRetries: 3 });
} else {
  throw new Error(`unknown client ${sdk}`);
}

// Refused for good: one attempt, whatever maxRetries says.
await assert.rejects(refused(), (err) => {
  const status = err.status ?? err.statusCode ?? err.lastError?.statusCode;
  assert.equal(status, 400, String(err));
  return true;
});
assert.deepEqual(attempts.map((a) => a.status), [400], 'a 400 is sent once');

// The window's one request went to the 400: this one meets a 429, waits what it says, succeeds.
attempts.length = 0;
await answered();
const statuses = attempts.map((a) => a.status);
assert.deepEqual(statuses, [429, 200], `attempts: ${statuses}`);
const [limited, retried] = attempts;
const waited = retried.at - limited.at;
assert.ok(limited.retryAfterMs > 0, 'the 429 says when');
assert.ok(waited >= limited.retryAfterMs - 50, `retried after ${waited.toFixed(0)} ms, told ${limited.retryAfterMs} ms`);
console.log(`${sdk}: 400 sent once; 429 retried after ${waited.toFixed(0)} ms (retry-after-ms ${limited.retryAfterMs})`);
done();
