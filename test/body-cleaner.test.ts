import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { cleanJson, createJsonCleaner, TOKEN_FIELD } from '../src/proxy/json-cleaner.js';
import type { BodyStage } from '../src/proxy/secret-scrubber.js';

/** Reference: what the browser must see, by parsing the whole document. */
function strip(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(strip);
  if (typeof value === 'object' && value !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (!TOKEN_FIELD.test(k)) out[k] = strip(v);
    return out;
  }
  return value;
}

function run(stage: BodyStage, chunks: Buffer[]): Buffer {
  const out: Buffer[] = [];
  for (const c of chunks) out.push(...stage.push(c));
  out.push(...stage.end());
  return Buffer.concat(out);
}

function splitAt(buf: Buffer, points: number[]): Buffer[] {
  const sorted = [...new Set(points.map((p) => Math.max(0, Math.min(buf.length, p))))].sort((a, b) => a - b);
  const parts: Buffer[] = [];
  let at = 0;
  for (const p of sorted) {
    parts.push(buf.subarray(at, p));
    at = p;
  }
  parts.push(buf.subarray(at));
  return parts;
}

const cases: [string, string, unknown][] = [
  ['first member', '{"AccessToken":"abc","a":1}', { a: 1 }],
  ['last member', '{"a":1,"access_token":"x"}', { a: 1 }],
  ['only member', '{"refreshToken":"x"}', {}],
  ['two in a row, first', '{"AccessToken":"x","RefreshToken":"y","b":2}', { b: 2 }],
  ['two in a row, last', '{"a":1,"AccessToken":"x","RefreshToken":"y"}', { a: 1 }],
  ['nested at any depth', '{"a":{"refreshToken":"x","b":[{"id_token":{"deep":[1,2,"}]"]}}]}}', { a: { b: [{}] } }],
  ['escaped first letter', '{"\\u0041ccessToken":"x","b":2}', { b: 2 }],
  ['escaped underscore, lower-case hex', '{"c":3,"access\\u005ftoken":1}', { c: 3 }],
  ['every letter escaped', '{"\\u0061\\u0063\\u0063\\u0065\\u0073\\u0073\\u0054\\u006f\\u006b\\u0065\\u006e":"x","z":0}', { z: 0 }],
  ['number value', '{"idToken":123.5e3,"x":true}', { x: true }],
  ['null value last', '{"x":1,"refresh_token":null}', { x: 1 }],
  ['boolean, blanks, upper case', '{ "IDTOKEN" : false , "y": [] }', { y: [] }],
  ['value with escapes', '{"AccessToken":"a\\"b\\\\","c":"d"}', { c: 'd' }],
  ['array value', '{"id_token":[{"a":"]"},[[]]],"k":"v"}', { k: 'v' }],
  ['pretty printed', '{\n  "a": 1,\n  "AccessToken": "x",\n  "b": {\n    "id_token": {\n      "q": 1\n    }\n  }\n}', { a: 1, b: {} }],
  ['in an array of objects', '[{"AccessToken":"x"},{"a":1,"refreshtoken":"y"}]', [{}, { a: 1 }]],
  ['decoy: name inside a string', '{"text":"\\"access_token\\": 1"}', { text: '"access_token": 1' }],
  ['decoy: longer names', '{"myaccess_token":1,"access_token_x":2,"token":3}', { myaccess_token: 1, access_token_x: 2, token: 3 }],
  ['decoy: a value, not a key', '{"a":"access_token","b":["id_token"]}', { a: 'access_token', b: ['id_token'] }],
  ['decoy: escaped backslash before u', '{"a\\\\u0041ccessToken":1}', { 'a\\u0041ccessToken': 1 }],
];

describe('json cleaner', () => {
  it.each(cases)('%s: token fields removed, valid JSON, same length', (_name, input, expected) => {
    const out = cleanJson(Buffer.from(input));
    expect(JSON.parse(out.toString())).toEqual(expected);
    expect(out.length).toBe(input.length);
  });

  it('ndjson_and_jsonp_lines_lose_their_token_fields', () => {
    const nd = '{"AccessToken":"x","a":1}\n{"b":2,"id_token":"y"}\n';
    const lines = cleanJson(Buffer.from(nd)).toString().split('\n').filter(Boolean);
    expect(lines.map((l) => JSON.parse(l))).toEqual([{ a: 1 }, { b: 2 }]);
    const jsonp = cleanJson(Buffer.from('cb({"a":1,"AccessToken":"x"});')).toString();
    expect(jsonp).not.toContain('AccessToken');
    expect(JSON.parse(jsonp.slice(3, -2))).toEqual({ a: 1 });
  });

  it('clean_chunks_pass_unchanged_as_views_of_the_input', () => {
    const c = createJsonCleaner();
    const chunk = Buffer.from(JSON.stringify({ items: Array.from({ length: 200 }, (_, i) => ({ id: i, name: `n${i}` })) }));
    const out = c.push(chunk);
    // The bulk is the very same memory: no copy.
    expect(out[out.length - 1]?.buffer).toBe(chunk.buffer);
    expect(Buffer.concat([...out, ...c.end()]).equals(chunk)).toBe(true);
  });

  it('every_case_split_at_every_pair_of_boundaries_gives_the_same_answer', () => {
    for (const [, input, expected] of cases) {
      const buf = Buffer.from(input);
      for (let i = 0; i <= buf.length; i++) {
        for (let j = i; j <= buf.length; j += 3) {
          const out = run(createJsonCleaner(), splitAt(buf, [i, j]));
          expect(JSON.parse(out.toString())).toEqual(expected);
        }
      }
    }
  });

  // Any document, names sometimes \u-escaped, pretty or not, cut anywhere.
  const key = fc.oneof(fc.constantFrom('AccessToken', 'access_token', 'refreshToken', 'REFRESH_TOKEN', 'id_token', 'IdToken', 'token', 'name', 'tokens', 'x'), fc.string({ maxLength: 6 }));
  const { node } = fc.letrec((tie) => ({
    node: fc.oneof(
      { depthSize: 'small' },
      fc.string({ maxLength: 8 }),
      fc.integer(),
      fc.boolean(),
      fc.constant(null),
      fc.array(tie('node'), { maxLength: 4 }),
      fc.array(fc.tuple(key, tie('node')), { maxLength: 5 }).map((entries) => Object.fromEntries(entries)),
    ),
  }));

  function serialise(v: unknown, escapeKeys: boolean, pretty: boolean, depth = 0): string {
    const nl = pretty ? '\n' + '  '.repeat(depth + 1) : '';
    const end = pretty ? '\n' + '  '.repeat(depth) : '';
    if (Array.isArray(v)) return v.length === 0 ? '[]' : `[${nl}${v.map((x) => serialise(x, escapeKeys, pretty, depth + 1)).join(`,${nl}`)}${end}]`;
    if (typeof v === 'object' && v !== null) {
      const entries = Object.entries(v);
      if (entries.length === 0) return '{}';
      const name = (k: string) =>
        escapeKeys ? `"${[...k].map((ch, i) => (i % 2 === 0 ? `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}` : JSON.stringify(ch).slice(1, -1))).join('')}"` : JSON.stringify(k);
      return `{${nl}${entries.map(([k, x]) => `${name(k)}:${pretty ? ' ' : ''}${serialise(x, escapeKeys, pretty, depth + 1)}`).join(`,${nl}`)}${end}}`;
    }
    return JSON.stringify(v);
  }

  it('any_document_cut_anywhere_loses_exactly_its_token_fields', () => {
    fc.assert(
      fc.property(node, fc.boolean(), fc.boolean(), fc.array(fc.nat(), { maxLength: 6 }), (doc, escapeKeys, pretty, cuts) => {
        const text = Buffer.from(serialise(doc, escapeKeys, pretty));
        const out = run(createJsonCleaner(), splitAt(text, cuts.map((c) => c % (text.length + 1))));
        expect(JSON.parse(out.toString())).toEqual(strip(JSON.parse(text.toString())));
        expect(out.length).toBe(text.length);
      }),
      { numRuns: 600 },
    );
  });

  it('a_20_MB_answer_is_cleaned_holding_only_a_small_tail', () => {
    // One item in 50 carries token fields; the others take the fast path.
    const plain = JSON.stringify({ id: 1, name: 'a name that is long enough', tags: ['x', 'y'], nested: { ok: true } });
    const item = JSON.stringify({ id: 1, name: 'a name that is long enough', tags: ['x', 'y'], AccessToken: 'tok', nested: { id_token: 'z', ok: true } });
    const body = Buffer.from(`[${Array.from({ length: Math.ceil((20 << 20) / item.length) }, (_, i) => (i % 50 === 0 ? item : plain)).join(',')}]`);
    const c = createJsonCleaner();
    let maxHeld = 0;
    const out: Buffer[] = [];
    for (let at = 0; at < body.length; at += 65536) {
      out.push(...c.push(body.subarray(at, at + 65536)));
      maxHeld = Math.max(maxHeld, c.buffered);
    }
    out.push(...c.end());
    expect(maxHeld).toBeLessThanOrEqual(512);
    const parsed = JSON.parse(Buffer.concat(out).toString()) as unknown[];
    const expected = JSON.stringify({ id: 1, name: 'a name that is long enough', tags: ['x', 'y'], nested: { ok: true } });
    expect(parsed.length).toBe(Math.ceil((20 << 20) / item.length));
    expect(parsed.filter((p) => JSON.stringify(p) !== expected).length).toBe(0);
  });

  it('a_20_MB_token_value_is_skipped_without_being_held', () => {
    const body = Buffer.from(`{"a":1,"AccessToken":"${'x'.repeat(20 << 20)}","b":[{"refresh_token":{"v":"${'y'.repeat(1 << 20)}"}}]}`);
    const c = createJsonCleaner();
    let maxHeld = 0;
    const out: Buffer[] = [];
    for (let at = 0; at < body.length; at += 65536) {
      out.push(...c.push(body.subarray(at, at + 65536)));
      maxHeld = Math.max(maxHeld, c.buffered);
    }
    out.push(...c.end());
    expect(maxHeld).toBeLessThanOrEqual(512);
    // Compared as text: a failing diff of 20 MB would drown the report.
    expect(JSON.stringify(JSON.parse(Buffer.concat(out).toString()))).toBe('{"a":1,"b":[{}]}');
  });
});
