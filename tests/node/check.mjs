// Shared by the client scripts: assertions on the shape a client's types promise.
import assert from 'node:assert/strict';

export { assert };

/** Asserts `value` has each of `fields`, of the given JSON type ("string", "number", "object"…, or "null|string"). */
export function shaped(value, fields, where) {
  for (const [name, kinds] of Object.entries(fields)) {
    const v = value?.[name];
    const kind = v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v;
    assert.ok(kinds.split('|').includes(kind), `${where}.${name} is ${kind}, expected ${kinds}: ${JSON.stringify(value)}`);
  }
}

export const env = (name) => {
  const v = process.env[name];
  assert.ok(v, `${name} is not set`);
  return v;
};

export function done() {
  console.log('all checks passed');
}
