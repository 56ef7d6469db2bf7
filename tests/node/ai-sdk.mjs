// The Vercel AI SDK against Layers' sandbox with a test key, through each provider a user may
// pick: @ai-sdk/openai (its default, the Responses API, and .chat), @ai-sdk/openai-compatible
// (with and without includeUsage) and @ai-sdk/anthropic. Text, streaming, a tool loop and usage.
import { createAnthropic } from '@ai-sdk/anthropic';
import { createOpenAI } from '@ai-sdk/openai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { generateText, jsonSchema, stepCountIs, streamText, tool } from 'ai';

import { assert, done, env } from './check.mjs';

const baseURL = env('BASE_URL') + '/v1';
const apiKey = env('API_KEY');
const openai = createOpenAI({ baseURL, apiKey });
const compatible = (includeUsage) => createOpenAICompatible({ name: 'layers', baseURL, apiKey, includeUsage });
const anthropic = createAnthropic({ baseURL, apiKey });

const models = {
  'openai (responses)': openai('sandbox/echo'),
  'openai.chat': openai.chat('sandbox/echo'),
  'openai-compatible': compatible(false)('sandbox/echo'),
  'openai-compatible includeUsage': compatible(true)('sandbox/echo'),
  anthropic: anthropic('sandbox/echo'),
};

const weather = tool({
  description: 'Weather in a city',
  inputSchema: jsonSchema({ type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }),
  execute: async ({ city }) => `sunny in ${city}`,
});

for (const [name, model] of Object.entries(models)) {
  const g = await generateText({ model, prompt: 'Say hello' });
  assert.match(g.text, /You said: "Say hello"/, name);
  assert.ok(g.usage.inputTokens > 0 && g.usage.outputTokens > 0, `${name}: ${JSON.stringify(g.usage)}`);

  const s = streamText({ model, prompt: 'Say hello' });
  let streamed = '';
  for await (const piece of s.textStream) streamed += piece;
  assert.equal(streamed, g.text, name);
  const usage = await s.usage;
  if (name === 'openai-compatible') {
    // Without includeUsage the stream carries none: the SDK reports it unknown.
    assert.equal(usage.outputTokens, undefined, `${name}: ${JSON.stringify(usage)}`);
  } else {
    assert.ok(usage.outputTokens > 0, `${name}: ${JSON.stringify(usage)}`);
  }

  const loop = await generateText({
    model, tools: { weather }, stopWhen: stepCountIs(3), prompt: "What is the weather in 'Paris'?",
  });
  const calls = loop.steps.flatMap((step) => step.toolCalls);
  assert.equal(calls[0]?.toolName, 'weather', name);
  assert.deepEqual(calls[0].input, { city: 'Paris' }, name);
  assert.match(loop.text, /sunny in Paris/, `${name}: ${loop.text}`);
}
done();
