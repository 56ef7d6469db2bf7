// The official Anthropic TypeScript SDK against Layers' /v1/messages on the sandbox with a
// test key, once with `x-api-key` (apiKey) and once with `Authorization: Bearer` (authToken).
import Anthropic from '@anthropic-ai/sdk';

import { assert, done, env, shaped } from './check.mjs';

const base = { baseURL: env('BASE_URL'), maxRetries: 0 };
const model = 'sandbox/echo';
const ask = [{ role: 'user', content: "Weather in 'Paris' for 3 days?" }];
const tools = [{ name: 'get_weather', description: 'Weather in a city',
  input_schema: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' } }, required: ['city', 'days'] } }];

for (const c of [new Anthropic({ ...base, apiKey: env('API_KEY') }), new Anthropic({ ...base, apiKey: null, authToken: env('API_KEY') })]) {
  const m = await c.messages.create({ model, max_tokens: 1024, messages: [{ role: 'user', content: 'Say hello' }] });
  shaped(m, { id: 'string', type: 'string', role: 'string', model: 'string', content: 'array', stop_reason: 'string',
    stop_sequence: 'null|string', usage: 'object' }, 'message');
  shaped(m.usage, { input_tokens: 'number', output_tokens: 'number' }, 'usage');
  assert.match(m.content[0].text, /You said: "Say hello"/);

  const s = c.messages.stream({ model, max_tokens: 1024, messages: ask, tools });
  const final = await s.finalMessage();
  const use = final.content.find((b) => b.type === 'tool_use');
  assert.equal(final.stop_reason, 'tool_use');
  assert.deepEqual(use.input, { city: 'Paris', days: 3 });
  const counted = await c.messages.countTokens({ model, messages: ask, tools });
  assert.equal(counted.input_tokens, final.usage.input_tokens);
}

try {
  await new Anthropic({ ...base, apiKey: 'lyr_test_sk_not-a-key' }).messages.create({ model, max_tokens: 5, messages: ask });
  assert.fail('a bad key accepted');
} catch (err) {
  assert.equal(err.status, 401);
  assert.equal(err.error.type, 'error');
  assert.equal(err.error.error.type, 'authentication_error');
}
done();
