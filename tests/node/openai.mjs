// The official openai-node SDK against Layers' sandbox with a test key: chat, stream, tools,
// structured output, embeddings, images and the Responses API. openai-node does not validate
// responses at run time, so each response is checked against the fields its types declare.
import OpenAI from 'openai';
import { zodResponseFormat, zodTextFormat } from 'openai/helpers/zod';
import { z } from 'zod';

import { assert, done, env, shaped } from './check.mjs';

const c = new OpenAI({ baseURL: env('BASE_URL') + '/v1', apiKey: env('API_KEY'), maxRetries: 0 });
const model = 'sandbox/echo';
const ask = [{ role: 'user', content: "What is the weather in 'Paris' for 3 days?" }];

const r = await c.chat.completions.create({ model, messages: [{ role: 'user', content: 'Say hello' }] });
shaped(r, { id: 'string', object: 'string', created: 'number', model: 'string', choices: 'array', usage: 'object' }, 'chat');
shaped(r.choices[0], { index: 'number', message: 'object', finish_reason: 'string', logprobs: 'null|object' }, 'choice');
shaped(r.choices[0].message, { role: 'string', content: 'string', refusal: 'null|string' }, 'message');
shaped(r.usage, { prompt_tokens: 'number', completion_tokens: 'number', total_tokens: 'number' }, 'usage');
assert.match(r.choices[0].message.content, /You said: "Say hello"/);

let text = '';
let usage;
const stream = await c.chat.completions.create({
  model, messages: [{ role: 'user', content: 'Say hello' }], stream: true, stream_options: { include_usage: true },
});
for await (const chunk of stream) {
  shaped(chunk, { id: 'string', object: 'string', created: 'number', model: 'string', choices: 'array' }, 'chunk');
  text += chunk.choices[0]?.delta?.content ?? '';
  if (chunk.usage) usage = chunk.usage;
}
assert.equal(text, r.choices[0].message.content);
assert.ok(usage.completion_tokens > 0);

const weather = {
  type: 'function',
  function: {
    name: 'get_weather', description: 'Weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' } }, required: ['city', 'days'] },
  },
};
const called = await c.chat.completions.create({ model, messages: ask, tools: [weather] });
const call = called.choices[0].message.tool_calls[0];
shaped(call, { id: 'string', type: 'string', function: 'object' }, 'tool_call');
assert.deepEqual(JSON.parse(call.function.arguments), { city: 'Paris', days: 3 });
const runner = c.chat.completions.stream({ model, messages: ask, tools: [weather] });
const final = await runner.finalChatCompletion();
assert.deepEqual(JSON.parse(final.choices[0].message.tool_calls[0].function.arguments), { city: 'Paris', days: 3 });

const Joke = z.object({ setup: z.string(), punchline: z.string(), rating: z.number().int() });
const parsed = await c.chat.completions.parse({
  model, messages: [{ role: 'user', content: 'A joke rated 7' }], response_format: zodResponseFormat(Joke, 'joke'),
});
assert.equal(parsed.choices[0].message.parsed.rating, 7);

const e = await c.embeddings.create({ model: 'sandbox/embed', input: ['a', 'b'], dimensions: 16 });
assert.equal(e.data.length, 2);
assert.equal(e.data[0].embedding.length, 16, 'the SDK decodes its default base64 encoding');
const img = await c.images.generate({ model: 'sandbox/image', prompt: 'a lighthouse', n: 1 });
assert.ok(img.data[0].b64_json);

const resp = await c.responses.create({ model, input: 'Say hello', instructions: 'Be brief' });
shaped(resp, { id: 'string', object: 'string', created_at: 'number', status: 'string', model: 'string', output: 'array',
  usage: 'object', tools: 'array', tool_choice: 'string', parallel_tool_calls: 'boolean' }, 'response');
assert.match(resp.output_text, /You said: "Say hello"/);
const events = [];
const rs = c.responses.stream({ model, input: ask, tools: [{ type: 'function', name: 'get_weather', strict: true,
  parameters: weather.function.parameters }] });
for await (const ev of rs) events.push(ev.type);
const finalResponse = await rs.finalResponse();
assert.ok(events.includes('response.function_call_arguments.delta'), events.join());
assert.deepEqual(JSON.parse(finalResponse.output[0].arguments), { city: 'Paris', days: 3 });
const structured = await c.responses.parse({ model, input: 'A joke rated 7', text: { format: zodTextFormat(Joke, 'joke') } });
assert.equal(structured.output_parsed.rating, 7);

try {
  await c.responses.create({ model, input: 'x', previous_response_id: 'resp_1' });
  assert.fail('previous_response_id accepted');
} catch (err) {
  assert.equal(err.status, 400);
  assert.equal(err.param, 'previous_response_id');
}
done();
