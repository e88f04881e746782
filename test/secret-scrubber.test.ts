import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { createSecretScrubber, scrubSecrets, secretSet } from '../src/proxy/secret-scrubber.js';
import { dropHeadersWithSecrets } from '../src/proxy/token-headers.js';

const ACCESS = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl-_x';
const REFRESH = 'r/EFRESH+token=opaque/value';
const set = secretSet([ACCESS, REFRESH]);

/** Every way this module promises to see through, undone, so a test can look for what is left. */
function decodeAll(text: string): string {
  let prev = '';
  let out = text;
  while (out !== prev) {
    prev = out;
    out = out
      .replace(/\\+u([0-9a-fA-F]{4})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)))
      .replace(/\\+\//g, '/')
      .replace(/%([0-9a-fA-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)))
      .replace(/&#x([0-9a-fA-F]+);/gi, (_, h: string) => String.fromCharCode(parseInt(h, 16)))
      .replace(/&#([0-9]+);/g, (_, d: string) => String.fromCharCode(Number(d)));
  }
  return out;
}

type Enc = 'plain' | 'u' | 'U' | 'uu' | 'pct' | 'dec' | 'hex';
function encodeChar(ch: string, how: Enc): string {
  const code = ch.charCodeAt(0);
  const h4 = code.toString(16).padStart(4, '0');
  switch (how) {
    case 'plain':
      return ch === '/' ? '\\/' : ch;
    case 'u':
      return `\\u${h4}`;
    case 'U':
      return `\\u${h4.toUpperCase()}`;
    case 'uu':
      return `\\\\u${h4}`;
    case 'pct':
      return `%${code.toString(16).padStart(2, '0').toUpperCase()}`;
    case 'dec':
      return `&#${code};`;
    case 'hex':
      return `&#x${code.toString(16)};`;
  }
}

const run = (chunks: Buffer[]) => {
  const s = createSecretScrubber(set);
  const out: Buffer[] = [];
  for (const c of chunks) out.push(...s.push(c));
  out.push(...s.end());
  return Buffer.concat(out);
};

describe('secret scrubber', () => {
  const table: [string, string][] = [
    ['plain in JSON', `{"echo":"Bearer ${ACCESS}"}`],
    ['plain in XML', `<User><AccessToken>${ACCESS}</AccessToken></User>`],
    ['plain in HTML', `<p>${REFRESH}</p>`],
    ['every character \\u-escaped', `{"t":"${[...ACCESS].map((c) => encodeChar(c, 'u')).join('')}"}`],
    ['some characters escaped, upper-case hex', `"${[...ACCESS].map((c, i) => (i % 3 ? c : encodeChar(c, 'U'))).join('')}"`],
    ['slashes escaped as \\/', `{"r":"${REFRESH.replace(/\//g, '\\/')}"}`],
    ['JSON inside JSON', `{"inner":"{\\"t\\":\\"${[...ACCESS].map((c) => encodeChar(c, 'uu')).join('')}\\"}"}`],
    ['percent-encoded in a URL', `https://x/cb?t=${[...REFRESH].map((c) => encodeChar(c, 'pct')).join('')}`],
    ['HTML entities', `<b>${[...ACCESS].map((c, i) => encodeChar(c, i % 2 ? 'dec' : 'hex')).join('')}</b>`],
    ['twice, back to back', `${ACCESS}${ACCESS}`],
  ];

  it.each(table)('%s: redacted, same length', (_name, text) => {
    const out = scrubSecrets(Buffer.from(text), set).toString();
    expect(decodeAll(out)).not.toContain(ACCESS);
    expect(decodeAll(out)).not.toContain(REFRESH);
    expect(out).toContain('[redacted]');
    expect(out.length).toBe(text.length);
  });

  it('text_without_a_secret_comes_back_as_the_same_buffer', () => {
    const b = Buffer.from('{"a":"\\u00e9 \\/ 100% &#65; eyJhbGciOiJSUzI1NiJ9 almost"}');
    expect(scrubSecrets(b, set)).toBe(b);
  });

  it('short_values_are_not_treated_as_secrets', () => {
    expect(secretSet(['abc', '', null]).secrets.length).toBe(0);
  });

  it('any_encoding_mix_split_anywhere_never_lets_a_secret_through', () => {
    const enc = fc.constantFrom<Enc>('plain', 'plain', 'plain', 'u', 'U', 'uu', 'pct', 'dec', 'hex');
    fc.assert(
      fc.property(
        fc.constantFrom(ACCESS, REFRESH),
        fc.array(enc, { minLength: 64, maxLength: 64 }),
        fc.string({ maxLength: 40 }),
        fc.string({ maxLength: 40 }),
        fc.array(fc.nat(), { maxLength: 5 }),
        (secret, hows, before, after, cuts) => {
          const text = Buffer.from(before + [...secret].map((c, i) => encodeChar(c, hows[i % 64] as Enc)).join('') + after);
          const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b);
          const chunks: Buffer[] = [];
          let at = 0;
          for (const p of points) {
            chunks.push(text.subarray(at, p));
            at = p;
          }
          chunks.push(text.subarray(at));
          const out = run(chunks);
          expect(decodeAll(out.toString())).not.toContain(secret);
          expect(out.length).toBe(text.length);
        },
      ),
      { numRuns: 400 },
    );
  });

  it('a_secret_split_at_every_boundary_is_redacted', () => {
    const text = Buffer.from(`xx ${[...ACCESS].map((c, i) => (i % 5 === 0 ? encodeChar(c, 'u') : c)).join('')} yy`);
    for (let i = 0; i <= text.length; i++) {
      const out = run([text.subarray(0, i), text.subarray(i)]).toString();
      expect(decodeAll(out)).not.toContain(ACCESS);
    }
  });

  it('a_20_MB_stream_holds_back_only_a_secret_s_worth', () => {
    const s = createSecretScrubber(set);
    const chunk = Buffer.from(`${'lorem ipsum \\n dolor 50% &amp; '.repeat(2000)} ${ACCESS} `);
    let max = 0;
    let total = 0;
    let leaked = false;
    for (let n = 0; total < 20 << 20; n++) {
      for (const o of s.push(chunk)) if (o.includes(ACCESS)) leaked = true;
      total += chunk.length;
      max = Math.max(max, s.buffered);
    }
    s.end();
    expect(leaked).toBe(false);
    expect(max).toBeLessThanOrEqual(set.holdBack);
    expect(set.holdBack).toBeLessThan(1024);
  });
});

describe('token headers', () => {
  const cases: [string, Record<string, string | string[]>, string[]][] = [
    ['Location with the bearer', { location: `https://spa/cb#access_token=${ACCESS}`, 'content-type': 'text/html' }, ['location']],
    ['Location percent-encoded', { location: `/cb?rt=${encodeURIComponent(REFRESH)}` }, ['location']],
    ['Location fully percent-encoded, lower-case hex', { location: `/cb?rt=${[...REFRESH].map((c) => '%' + c.charCodeAt(0).toString(16)).join('')}` }, ['location']],
    ['any header, in a list', { link: ['</a>; rel=x', `</b?t=${ACCESS}>; rel=y`], 'x-debug-auth': `Bearer ${ACCESS}` }, ['link', 'x-debug-auth']],
    ['JSON-escaped, one character as \\u', { 'x-debug': `{"t":"${ACCESS.slice(0, 5)}\\u00${ACCESS.charCodeAt(5).toString(16)}${ACCESS.slice(6)}"}`, etag: '"abc"' }, ['x-debug']],
    ['an HTML entity in a plain value', { 'x-note': `${ACCESS.slice(0, 3)}&#${ACCESS.charCodeAt(3)};${ACCESS.slice(4)}`, 'cache-control': 'no-store' }, ['x-note']],
    ['escape bytes without a secret stay', { 'content-disposition': "attachment; filename*=UTF-8''a%20b.pdf", link: '</p?a=1&b=2>; rel=next', 'x-path': 'C:\\temp' }, []],
    ['harmless headers stay', { location: '/next', etag: '"abc"', 'x-request-id': 'eyJhbGciOiJSUzI1NiJ9' }, []],
  ];
  it.each(cases)('%s', (_name, headers, dropped) => {
    const copy = { ...headers };
    expect(dropHeadersWithSecrets(copy, set).sort()).toEqual(dropped.sort());
    for (const d of dropped) expect(copy[d]).toBeUndefined();
    expect(Object.keys(copy).length).toBe(Object.keys(headers).length - dropped.length);
  });
});
