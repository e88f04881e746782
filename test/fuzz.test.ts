import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { Pool, errors as undiciErrors } from 'undici';
import { DEMO, startHarness, type Harness, type Instance, closeExpectingNoLeaks } from './support/harness.js';

/**
 * Hostile input at one instance with real Redis and the fake upstream: a seeded generator
 * (fast-check, seed 42) builds malformed requests: odd methods, encoded and overlong paths,
 * forged and valid session cookies, anti-forgery and content-type mix-ups, broken bodies.
 * Whatever arrives, the answer is never a 500, never a stack trace, never a file path.
 */

const SEED = 42;
const REQUESTS = 11_000;
const CONCURRENCY = 20;

let h: Harness;
let app: Instance;
/** `bff.sid=...` pairs of live sessions, so the authenticated code paths get fuzzed too. */
const validCookies: string[] = [];

beforeAll(async () => {
  h = await startHarness();
  // The throttle is not under test here; with its default every garbage login would soon be a 429.
  app = await h.start({ LOGIN_MAX_FAILURES: '100000' });
  for (let i = 0; i < 4; i += 1) {
    const res = await fetch(`${app.url}/auth/login`, { method: 'POST', headers: { 'x-csrf': '1', 'content-type': 'application/json' }, body: JSON.stringify(DEMO) });
    await res.arrayBuffer();
    const pair = (res.headers.getSetCookie().find((c) => c.startsWith('bff.sid=')) ?? '').split(';')[0];
    if (res.status !== 200 || !pair) throw new Error(`sign-in failed: ${res.status}`);
    validCookies.push(pair);
  }
});
afterAll(() => closeExpectingNoLeaks(h));

interface FuzzRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: string | Buffer | null;
  /** Sent with Transfer-Encoding: chunked (no length known up front) instead of Content-Length. */
  chunked: boolean;
  /** Index into validCookies, or null when the cookie is forged or absent. */
  session: number | null;
}

// ---- generators ---------------------------------------------------------------

/** Characters undici would refuse in a path are percent-encoded; everything in 0x21-0xff goes raw. */
const rawPathText = (s: string): string =>
  Array.from(s)
    .map((ch) => {
      const code = ch.codePointAt(0) ?? 0;
      return code >= 0x21 && code <= 0xff ? ch : encodeURIComponent(ch);
    })
    .join('');

/**
 * Header values as any client can put on the wire (Node and undici refuse control characters;
 * undici 7.30's Pool also stalls for good after refusing one, so they are never offered to it).
 */
const headerText = (s: string): string => s.replace(/[^\t\x20-\x7e\x80-\xff]/g, '');

const method = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS') },
  { weight: 1, arbitrary: fc.constantFrom('PROPFIND', 'MKCOL', 'PURGE', 'LOCK', 'SEARCH', 'QUERY', 'FOO', 'M-SEARCH', 'TRACE', 'get', 'Post', 'X'.repeat(40)) },
);

const prefix = fc.constantFrom(
  '/api/', '/api/echo/', '/api/auth/me', '/api', '/API/echo/', '//api/', '/api//echo/',
  '/auth/', '/auth/login', '/auth/session', '/auth/logout', '/auth/exchange', '/auth/callback', '/Auth/Session', '/auth/session/',
  '/links/', '/links/download', '/links/portal', '/links//download',
  '/', '/healthz', '/readyz', '/metrics', '/static/../api/', '/%61pi/echo/',
);

const segment = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.constantFrom(
      '%', '%zz', '%2', '%00', '%0d%0a', '%2e%2e', '..', '.', '%2e', '.%2e', '%252e%252e', '\\', '%5c', '..\\', '%5c..%5c',
      '%c0%ae%c0%ae', '%ff%fe', '%e2%80%ae', '%ef%bf%bf', '%f0%9f%92%a9', ';jsessionid=1', '%3b', '%2f', '//', '/./',
      'token', 'Token', 'sys/users/token/refresh', 'sys%2fusers%2ftoken%2frefresh', 'auth/media/customer', 'sys/users/exchange',
      '%74oken', 'token;x', 'token/', 'TOKEN', '~', '$', '*', '@', ':', '!', '#frag', '?', '??', '&', '=', 'echo', 'public/files/a.pdf',
    ),
  },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 10 }).map(rawPathText) },
  { weight: 1, arbitrary: fc.string({ unit: fc.integer({ min: 0x80, max: 0xff }).map((c) => String.fromCharCode(c)), minLength: 1, maxLength: 6 }) },
  { weight: 1, arbitrary: fc.integer({ min: 200, max: 6000 }).map((n) => 'a'.repeat(n)) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 6 }).map((s) => encodeURIComponent(s)) },
);

const queryValue = fc.oneof(
  fc.constantFrom(
    '/', '/ok', '//evil.example', '/\\evil.example', '\\\\evil', 'https://evil.example', '%2f%2fevil.example', '%252f%252fevil',
    'javascript:alert(1)', '/%0d%0aSet-Cookie:x=1', '/api/public/files/a.pdf', '/api/public/billing/invoices/7/pdf',
    '/api/public/files/../../token', '/api/public/files/a.pdf?t=x', '%', '%zz', '', 'a'.repeat(3000), 'eyJhbGciOiJub25lIn0.e30.',
  ),
  fc.string({ unit: 'binary', maxLength: 20 }).map(rawPathText),
);
const query = fc.option(
  fc
    .array(fc.tuple(fc.constantFrom('returnTo', 'redirectUrl', 'path', 't', 'x', 'returnTo[]', 'path[0]', '__proto__', ''), queryValue), { minLength: 1, maxLength: 4 })
    .map((pairs) => `?${pairs.map(([k, v]) => `${k}=${v}`).join('&')}`),
  { nil: '' },
);

const path = fc
  .tuple(prefix, fc.array(segment, { maxLength: 4 }), fc.constantFrom('', '/'), query)
  .map(([p, segs, tail, q]) => `${p}${segs.join('/')}${tail}${q}`);

const forgedCookie = fc.oneof(
  fc.constantFrom(
    'bff.sid=', 'bff.sid=garbage', 'bff.sid=s:', 'bff.sid=s%3A', 'bff.sid=s:abc.def', 'bff.sid=%zz', 'bff.sid="s:x.y"',
    'bff.sid=s%3A%7BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%7D.forged', 'bff.sid=s%3A%7BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%7D.',
    '__Host-bff.sid=s%3Ax.y', 'bff.sid=1; bff.sid=2', ';;;', '=', 'bff.sid',
  ),
  fc.string({ unit: 'binary-ascii', maxLength: 60 }).map((s) => `bff.sid=s:${headerText(s)}`),
  fc.string({ unit: fc.integer({ min: 0x20, max: 0xff }).map((c) => String.fromCharCode(c)), maxLength: 80 }).map(headerText),
);

// Mostly what the SPA sends, so that many requests get past the front door into the session code.
const csrf = fc.oneof(
  { weight: 6, arbitrary: fc.constant<string | undefined>('1') },
  { weight: 3, arbitrary: fc.constantFrom<string | undefined>('0', '', ' 1', '1 ', '1,1', 'true', '01', 'x') },
  { weight: 1, arbitrary: fc.constant(undefined) },
);
const origin = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom<string | undefined>(undefined, 'OWN') },
  { weight: 2, arbitrary: fc.constantFrom<string | undefined>('https://evil.example', 'null', 'http://127.0.0.1', 'OWN/', 'garbage', '') },
);
const contentType = fc.option(
  fc.constantFrom(
    'application/json', 'application/x-www-form-urlencoded', 'text/plain', 'multipart/form-data; boundary=x', 'application/json; charset=utf-16',
    'application/json; charset=bogus', 'application/vnd.api+json', 'garbage', 'application/x-www-form-urlencoded; charset=latin1', 'application/json;;;',
  ),
  { nil: undefined },
);
const extraHeaders = fc.record(
  {
    'content-encoding': fc.constantFrom('gzip', 'deflate', 'br', 'identity', 'bogus'),
    accept: fc.constantFrom('text/html', '*/*', 'application/json', 'garbage'),
    'x-forwarded-for': fc.constantFrom('203.0.113.1', 'garbage', '::1, 10.0.0.1'),
    'x-forwarded-host': fc.constantFrom('evil.example', ''),
    'x-forwarded-proto': fc.constantFrom('https', 'gopher'),
    host: fc.constantFrom('evil.example', '127.0.0.1:1', 'a'.repeat(300)),
    authorization: fc.constantFrom('Bearer forged', 'Basic Zm9vOmJhcg=='),
    connection: fc.constantFrom('x-csrf', 'cookie, close'),
    range: fc.constantFrom('bytes=0-1', 'bytes=garbage'),
    'if-none-match': fc.constantFrom('*', 'W/"x"'),
  },
  { requiredKeys: [] },
);

const deep = (n: number, open: string, close: string, inner = '1') => open.repeat(n) + inner + close.repeat(n);
const body = fc.oneof(
  { weight: 3, arbitrary: fc.constant(null) },
  {
    weight: 4,
    arbitrary: fc.constantFrom(
      '{', '{"email":', '[', 'nul', '\u0000', '{"a":1,}', '{"email":"a@b.c","password":"x"', '"just a string"', '42', 'null', 'true', '[]', '{}',
      '{"email":1e999999,"password":123456789012345678901234567890}', '{"email":"a@b.c","password":"x","remember":1e400}',
      '{"email":["a@b.c"],"password":{"$ne":null}}', '{"email":"a@b.c","password":"x","remember":"yes"}',
      '{"__proto__":{"admin":true},"email":"a@b.c","password":"x"}', '{"constructor":{"prototype":{"x":1}}}',
      '{"email":"a@b.c","password":"x","totp":123456}', '{"email":"a@b.c","password":"x","email":"b@c.d"}',
      'email=a&email=b&password=x', 'email[]=a&password[]=b', 'email[0]=a&password=x', '%zz=1', '&&&=&=', 'email=%zz&password=%',
      `email=demo%40example.com&password=wrong&${'a=1&'.repeat(40)}`, '--x\r\nContent-Disposition: form-data; name="email"\r\n\r\na\r\n--x--',
      JSON.stringify({ ...DEMO, password: 'wrong-password' }), JSON.stringify(DEMO), JSON.stringify({ email: 'x'.repeat(400), password: 'y' }),
    ),
  },
  { weight: 1, arbitrary: fc.integer({ min: 100, max: 20_000 }).map((n) => deep(n, '[', ']')) },
  { weight: 1, arbitrary: fc.integer({ min: 100, max: 5_000 }).map((n) => deep(n, '{"a":', '}')) },
  { weight: 1, arbitrary: fc.integer({ min: 15_000, max: 40_000 }).map((n) => JSON.stringify({ email: 'a@b.c', password: 'p'.repeat(n) })) },
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 40 }) },
);

const hostileRequest = fc
  .record({
    method,
    path,
    cookieKind: fc.constantFrom('none', 'forged', 'valid', 'valid', 'valid+forged', 'tampered'),
    sessionIndex: fc.nat({ max: 3 }),
    forged: forgedCookie,
    csrf,
    origin,
    contentType,
    extra: extraHeaders,
    body,
    chunked: fc.boolean(),
  })
  .map((r): FuzzRequest => {
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(r.extra)) if (v !== undefined) headers[k] = v;
    let session: number | null = null;
    const valid = validCookies[r.sessionIndex] ?? '';
    // A valid session must survive the run, so it is never sent to sign-in or sign-out routes.
    const endsSessions = /^\/+auth\/+(login|logout|exchange)/i.test(safeDecode(r.path));
    const kind = endsSessions && r.cookieKind.startsWith('valid') ? 'forged' : r.cookieKind;
    if (kind === 'forged') headers.cookie = r.forged;
    else if (kind === 'valid') {
      headers.cookie = valid;
      session = r.sessionIndex;
    } else if (kind === 'valid+forged') {
      headers.cookie = `${r.forged}; ${valid}`;
      session = r.sessionIndex;
    } else if (kind === 'tampered') headers.cookie = `${valid.slice(0, -3)}AAA`;
    if (r.csrf !== undefined) headers['x-csrf'] = r.csrf;
    if (r.origin !== undefined) headers.origin = r.origin.replace('OWN', app.url);
    if (r.contentType !== undefined) headers['content-type'] = r.contentType;
    return { method: r.method, path: r.path, headers, body: r.body, chunked: r.chunked, session };
  });

/**
 * A signed-in SPA gone wrong: valid cookie, the anti-forgery header, its own origin, but
 * hostile paths, queries, methods, content types and bodies, straight into the session code.
 */
const authenticatedRequest = fc
  .record({
    method,
    prefix: fc.constantFrom('/api/echo/', '/api/auth/me', '/api/', '/api/public/files/', '/links/download', '/links/portal', '/auth/session', '/auth/'),
    segments: fc.array(segment, { maxLength: 2 }),
    query,
    sessionIndex: fc.nat({ max: 3 }),
    ownOrigin: fc.boolean(),
    contentType,
    extra: extraHeaders,
    body,
    chunked: fc.boolean(),
  })
  .map((r): FuzzRequest => {
    const headers: Record<string, string> = { cookie: validCookies[r.sessionIndex] ?? '', 'x-csrf': '1' };
    for (const [k, v] of Object.entries(r.extra)) if (v !== undefined && k !== 'host' && k !== 'x-forwarded-host') headers[k] = v;
    if (r.ownOrigin) headers.origin = app.url;
    if (r.contentType !== undefined) headers['content-type'] = r.contentType;
    return { method: r.method, path: `${r.prefix}${r.segments.join('/')}${r.query}`, headers, body: r.body, chunked: r.chunked, session: r.sessionIndex };
  });

const fuzzRequest = fc.oneof({ weight: 7, arbitrary: hostileRequest }, { weight: 3, arbitrary: authenticatedRequest });

/** The body in a few pieces of a stream, so undici sends it chunked. */
function chunksOf(body: string | Buffer): Readable {
  const buf = Buffer.from(body);
  const pieces: Buffer[] = [];
  for (let i = 0; i < buf.length; i += 1024) pieces.push(buf.subarray(i, i + 1024));
  return Readable.from(pieces);
}

function safeDecode(p: string): string {
  try {
    return decodeURIComponent(p);
  } catch {
    return p;
  }
}

// ---- checks -------------------------------------------------------------------

const STACK = /\bat .*\(.*:\d+:\d+\)/;
const INTERNALS = /\bError:|\b(TypeError|RangeError|SyntaxError|ReferenceError)\b|\bECONNREFUSED\b|\bioredis\b|\bundici\b/;
const FILE_PATH = /\/work\/|node_modules|\/src\/[\w-]+\.(t|j)s|file:\/\/|\.ts:\d+/;

interface Outcome {
  status: number;
  contentType: string;
  cacheControl: string;
  text: string;
}

function violations(req: FuzzRequest, res: Outcome): string[] {
  const found: string[] = [];
  const where = `${req.method} ${req.path.slice(0, 120)}`;
  if (res.status === 500 || (res.status >= 500 && ![502, 503, 504].includes(res.status))) found.push(`${where}: status ${res.status}`);
  if (STACK.test(res.text)) found.push(`${where}: stack trace in body`);
  if (FILE_PATH.test(res.text)) found.push(`${where}: file path in body`);
  if (res.status >= 400 && res.text.length > 0) {
    if (!/^application\/json/.test(res.contentType)) found.push(`${where}: ${res.status} with content-type ${res.contentType}`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(res.text);
    } catch {
      found.push(`${where}: ${res.status} body is not JSON: ${res.text.slice(0, 80)}`);
      return found;
    }
    // Our own answers are no-store; upstream's answers pass through as they are (still JSON here).
    if (res.cacheControl.includes('no-store')) {
      const { error, message } = (parsed ?? {}) as { error?: unknown; message?: unknown };
      if (typeof error !== 'string' || typeof message !== 'string') found.push(`${where}: ${res.status} without error/message: ${res.text.slice(0, 80)}`);
      if (INTERNALS.test(res.text)) found.push(`${where}: internals in ${res.text.slice(0, 120)}`);
    }
  }
  return found;
}

// ---- the run ------------------------------------------------------------------

describe('hostile input', () => {
  it('ten_thousand_seeded_malformed_requests_never_get_a_500_or_internals_and_the_process_keeps_serving', async () => {
    const requests = fc.sample(fuzzRequest, { seed: SEED, numRuns: REQUESTS });
    const pool = new Pool(app.url, { connections: CONCURRENCY, pipelining: 1, headersTimeout: 10_000, bodyTimeout: 10_000 });
    const statuses = new Map<number, number>();
    const transportErrors = new Map<string, number>();
    const found: string[] = [];
    let answered = 0;
    let notSendable = 0;
    let authenticatedAnswers = 0;
    const chunkedBodies = requests.filter((r) => r.chunked && r.body !== null).length;
    const upstreamCallsBefore = h.upstream.stats.apiCalls;
    const started = Date.now();

    let next = 0;
    const worker = async () => {
      while (next < requests.length) {
        const req = requests[next++];
        if (!req) break;
        try {
          // A bound per request: a request the server never answers fails the run instead of stalling it.
          const payload = req.chunked && req.body !== null ? chunksOf(req.body) : req.body;
          const res = await pool.request({ method: req.method, path: req.path, headers: req.headers, body: payload, signal: AbortSignal.timeout(15_000) });
          const text = await res.body.text();
          answered += 1;
          statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
          if (req.session !== null && res.statusCode < 400) authenticatedAnswers += 1;
          const header = (name: string) => String(res.headers[name] ?? '');
          found.push(...violations(req, { status: res.statusCode, contentType: header('content-type'), cacheControl: header('cache-control'), text }));
        } catch (err) {
          // undici refusing to build the request (bad method/header for it) is not a server answer.
          if (err instanceof undiciErrors.InvalidArgumentError || err instanceof undiciErrors.NotSupportedError) {
            notSendable += 1;
            continue;
          }
          const code = String((err as { code?: unknown }).code ?? (err as Error).name);
          transportErrors.set(code, (transportErrors.get(code) ?? 0) + 1);
          found.push(`${req.method} ${req.path.slice(0, 120)}: transport error ${code}`);
        }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    await pool.close();
    const elapsed = Date.now() - started;

    process.stdout.write(
      `fuzz figures: seed ${SEED}; ${answered} requests answered (${notSendable} not sendable by the client) in ${elapsed} ms ` +
        `(${Math.round((answered * 1000) / elapsed)}/s, concurrency ${CONCURRENCY}, ${chunkedBodies} bodies chunked); ${authenticatedAnswers} carrying a valid session were answered below 400; ` +
        `${h.upstream.stats.apiCalls - upstreamCallsBefore} reached upstream; statuses ${JSON.stringify(Object.fromEntries([...statuses].sort((a, b) => a[0] - b[0])))}; ` +
        `transport errors ${JSON.stringify(Object.fromEntries(transportErrors))}\n`,
    );
    expect(found.slice(0, 20)).toEqual([]);
    expect(notSendable).toBe(0);
    expect(answered).toBeGreaterThanOrEqual(10_000);
    // The authenticated code paths were exercised, not just the front door.
    expect(authenticatedAnswers).toBeGreaterThanOrEqual(500);
    expect(h.upstream.stats.apiCalls - upstreamCallsBefore).toBeGreaterThanOrEqual(500);
  }, 60_000);

  it('after_the_run_the_process_is_up_ready_and_a_normal_sign_in_and_api_call_work', async () => {
    expect((await fetch(`${app.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${app.url}/readyz`)).status).toBe(200);
    const agent = await h.signIn(app);
    const res = await agent.get('/api/echo/after-fuzz').set('X-CSRF', '1');
    expect(res.status).toBe(200);
    // The sessions the fuzzer carried are still alive: no garbage logged anyone out.
    for (const cookie of validCookies) {
      const session = await fetch(`${app.url}/auth/session`, { headers: { cookie } });
      expect(((await session.json()) as { authenticated: boolean }).authenticated).toBe(true);
    }
  });
});
