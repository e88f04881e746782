/**
 * Answer bodies end to end, browser -> cloakroom -> fake upstream: the session's tokens in
 * every shape a pentest found them leaking (content types, codings, sizes, escapes, headers,
 * partial answers), the codings toward the browser, and streaming (chunk by chunk, SSE).
 */
import { request as httpRequest, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import { brotliDecompressSync, constants, gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { startHarness, closeExpectingNoLeaks, type Harness, type Instance } from './support/harness.js';

let h: Harness;
let app: Instance;
/** UPSTREAM_TIMEOUT=1: event streams must outlive it, other silent bodies must not. */
let quick: Instance;
let cookie: string;
let quickCookie: string;

async function signInCookie(instance: Instance): Promise<string> {
  const res = await request(instance.url).post('/auth/login').set('X-CSRF', '1').send({ email: 'demo@example.com', password: 'demo-password' });
  expect(res.status).toBe(200);
  const set = (res.headers['set-cookie'] as unknown as string[] | undefined) ?? [];
  const c = set.find((x) => x.startsWith(`${instance.config.cookie.name}=`));
  if (!c) throw new Error('no session cookie');
  return c.split(';')[0] ?? '';
}

beforeAll(async () => {
  h = await startHarness();
  app = await h.start();
  quick = await h.start({ UPSTREAM_TIMEOUT: '1' });
  cookie = await signInCookie(app);
  quickCookie = await signInCookie(quick);
});
afterAll(() => closeExpectingNoLeaks(h));

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  /** The bytes on the wire. */
  wire: Buffer;
  /** Decoded as its Content-Encoding says. */
  body: Buffer;
  text: string;
  complete: boolean;
  /** [ms since the request, bytes] for each chunk the browser received. */
  chunks: [number, Buffer][];
}

function get(instance: Instance, path: string, headers: OutgoingHttpHeaders = {}, who = instance === quick ? quickCookie : cookie): Promise<Answer> {
  const { hostname, port } = new URL(instance.url);
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: hostname, port, path, headers: { cookie: who, 'x-csrf': '1', ...headers }, agent: false }, (res) => {
      const chunks: [number, Buffer][] = [];
      let complete = false;
      res.on('data', (c: Buffer) => chunks.push([Date.now() - started, c]));
      res.on('end', () => {
        complete = true;
      });
      res.on('error', () => undefined);
      res.on('close', () => {
        const wire = Buffer.concat(chunks.map((c) => c[1]));
        const coding = res.headers['content-encoding'];
        let body = wire;
        if (complete && coding === 'br') body = brotliDecompressSync(wire);
        else if (complete && coding === 'gzip') body = gunzipSync(wire);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, wire, body, text: body.toString('utf8'), complete: complete && res.complete, chunks });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/** The bearer cloakroom sent upstream for the latest call to `path`. */
function bearerFor(path: string): string {
  const call = [...h.upstream.requests].reverse().find((r) => r.url.startsWith(path));
  const auth = call?.headers.authorization;
  if (typeof auth !== 'string') throw new Error(`no upstream call to ${path}`);
  return auth.replace(/^Bearer /, '');
}

/** Every way the bearer could be written: plain, URL-encoded, each character \u-escaped, or halves of it (a join). */
function expectNoBearer(text: string, bearer: string): void {
  expect(bearer.length).toBeGreaterThan(16);
  expect(text.includes(bearer)).toBe(false);
  expect(text.includes(encodeURIComponent(bearer))).toBe(false);
  const unescaped = text.replace(/\\u([0-9a-fA-F]{4})/g, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16)));
  expect(unescaped.includes(bearer)).toBe(false);
}

describe('partial answers cannot piece the bearer together', () => {
  it('range_pieces_55_70_and_67_300_of_a_json_answer_come_back_whole_and_cleaned_so_joining_them_yields_nothing', async () => {
    const a = await get(app, '/api/shape/range?pad=300', { range: 'bytes=55-70' });
    const b = await get(app, '/api/shape/range?pad=300', { range: 'bytes=67-300' });
    const bearer = bearerFor('/api/shape/range');
    for (const r of [a, b]) {
      expect(r.status).toBe(200);
      expect(r.headers['content-range']).toBeUndefined();
      expect(r.headers['accept-ranges']).toBeUndefined();
      expect(JSON.parse(r.text)).toEqual({ Id: 7, FullName: 'Demo', Note: 'n'.repeat(300) });
    }
    // However the pieces are laid side by side, the token is not among them.
    expectNoBearer(a.text + b.text, bearer);
    expectNoBearer(a.text.slice(55, 71) + b.text.slice(71, 301), bearer);
    const upstreamSaw = h.upstream.requests.filter((r) => r.url.startsWith('/api/shape/range'));
    expect(upstreamSaw.every((r) => r.headers.range === undefined)).toBe(true);
  });

  it('a_multi_range_request_is_not_answered_as_multipart_byteranges_carrying_the_bearer', async () => {
    const r = await get(app, '/api/shape/range', { range: 'bytes=0-1,2-' });
    expect(r.status).toBe(200);
    expect(String(r.headers['content-type'])).toMatch(/^application\/json/);
    expect(r.text.includes('--fake-upstream-boundary')).toBe(false);
    expectNoBearer(r.text, bearerFor('/api/shape/range'));
  });
});

describe('the bearer in any content type, escape or header', () => {
  it('an_xml_answer_negotiated_with_accept_application_xml_has_its_access_token_element_redacted', async () => {
    const r = await get(app, '/api/shape/negotiate', { accept: 'application/xml' });
    expect(r.status).toBe(200);
    expect(r.text).toMatch(/<AccessToken>\[redacted\]\**<\/AccessToken>/);
    expectNoBearer(r.text, bearerFor('/api/shape/negotiate'));
  });

  const types: [string, RegExp | undefined][] = [
    ['text/html', /^text\/html/],
    ['text/plain', /^text\/plain/],
    ['none', undefined],
    ['ndjson', /^application\/x-ndjson/],
    ['jsonp', /^application\/javascript/],
  ];
  it.each(types)('an_answer_of_type_%s_echoing_the_bearer_reaches_the_browser_without_it', async (type, contentType) => {
    const r = await get(app, `/api/shape/typed?type=${type}`);
    expect(r.status).toBe(200);
    if (contentType) expect(String(r.headers['content-type'])).toMatch(contentType);
    else expect(r.headers['content-type']).toBeUndefined();
    // JSONP carries the bearer only as a token field, which goes whole; the others echo it in text.
    if (type !== 'jsonp') expect(r.text).toContain('[redacted]');
    expectNoBearer(r.text, bearerFor('/api/shape/typed'));
    // JSON kinds also lose the token field, not just its value.
    if (type === 'ndjson' || type === 'jsonp') expect(r.text.includes('AccessToken')).toBe(false);
  });

  it('json_with_the_bearer_written_in_u_escapes_under_an_escaped_token_name_reaches_the_browser_without_it', async () => {
    const r = await get(app, '/api/shape/escaped');
    expect(r.status).toBe(200);
    const parsed = JSON.parse(r.text) as Record<string, unknown>;
    expect(Object.keys(parsed)).toEqual(['Id', 'echo', 'Note']);
    expectNoBearer(r.text, bearerFor('/api/shape/escaped'));
    expectNoBearer(JSON.stringify(parsed), bearerFor('/api/shape/escaped'));
  });

  it('a_response_header_and_an_upstream_location_carrying_the_bearer_are_dropped', async () => {
    const r = await get(app, '/api/shape/header');
    expect(r.status).toBe(302);
    expect(r.headers['x-debug-authorization']).toBeUndefined();
    expect(r.headers.location).toBeUndefined();
    expect(r.headers['x-kept']).toBe('yes');
    expectNoBearer(JSON.stringify(r.headers), bearerFor('/api/shape/header'));
  });

  it.each(['gzip', 'br', 'deflate'])('a_%s_json_answer_is_decoded_and_cleaned_whatever_the_browser_accepts', async (coding) => {
    for (const accept of [undefined, 'br, gzip', 'gzip']) {
      const r = await get(app, `/api/shape/json?coding=${coding}&pad=2000`, accept ? { 'accept-encoding': accept } : {});
      expect(r.status).toBe(200);
      expect(r.complete).toBe(true);
      expect(r.headers['content-encoding']).toBe(accept === undefined ? undefined : accept.startsWith('br') ? 'br' : 'gzip');
      expect(JSON.parse(r.text)).toEqual({ Id: 7, FullName: 'Demo', Note: 'n'.repeat(2000) });
      expectNoBearer(r.text, bearerFor('/api/shape/json'));
    }
  });

  it('an_answer_in_a_coding_cloakroom_cannot_decode_is_refused_502_rather_than_passed_unchecked', async () => {
    const r = await get(app, '/api/shape/json?coding=zstd', { 'accept-encoding': 'zstd, br' });
    expect(r.status).toBe(502);
    expect(JSON.parse(r.text)).toMatchObject({ error: 'upstream_unavailable' });
    expectNoBearer(r.text, bearerFor('/api/shape/json'));
  });

  it.each([
    ['over 8 MiB', 9 * 1024 * 1024],
    ['of 20 MB', 20_000_000],
  ])('a_json_answer_%s_of_unknown_length_loses_its_token_fields_at_both_ends', async (_label, size) => {
    const r = await get(app, `/api/shape/large?size=${size}`);
    expect(r.status).toBe(200);
    expect(r.complete).toBe(true);
    expect(r.body.length).toBeGreaterThan(size);
    const parsed = JSON.parse(r.text) as { items: unknown[]; echo: string; AccessToken?: unknown; refresh_token?: unknown };
    expect(parsed).not.toHaveProperty('AccessToken');
    expect(parsed).not.toHaveProperty('refresh_token');
    expect(parsed.echo).toMatch(/^\[redacted\]\**$/);
    expect(parsed.items.length).toBeGreaterThan(size / 250);
    expectNoBearer(r.text, bearerFor('/api/shape/large'));
  });
});

describe('codings toward the browser', () => {
  it('a_json_answer_of_1_kib_or_more_is_brotli_for_a_browser_accepting_br_and_gzip', async () => {
    const r = await get(app, '/api/data?size=5000', { 'accept-encoding': 'gzip, deflate, br' });
    expect(r.headers['content-encoding']).toBe('br');
    expect(String(r.headers.vary)).toMatch(/accept-encoding/i);
    expect(r.headers['content-length']).toBeUndefined();
    expect(r.wire.length).toBeLessThan(1000);
    expect((JSON.parse(r.text) as { size: number }).size).toBe(5000);
  });

  it('a_browser_accepting_only_gzip_gets_gzip', async () => {
    const r = await get(app, '/api/data?size=5000', { 'accept-encoding': 'gzip' });
    expect(r.headers['content-encoding']).toBe('gzip');
    expect(r.body.length).toBe(5000);
  });

  it('a_text_answer_of_1_kib_or_more_is_compressed_too', async () => {
    const r = await get(app, '/api/shape/typed?type=text/plain&pad=4000', { 'accept-encoding': 'br' });
    expect(r.headers['content-encoding']).toBe('br');
    expect(r.text.endsWith('n'.repeat(4000))).toBe(true);
  });

  it('an_answer_under_1_kib_goes_out_as_it_is', async () => {
    const r = await get(app, '/api/data?size=500', { 'accept-encoding': 'br, gzip' });
    expect(r.headers['content-encoding']).toBeUndefined();
    expect(r.headers['content-length']).toBe('500');
    expect(String(r.headers.vary)).toMatch(/accept-encoding/i);
  });

  it('a_browser_accepting_neither_gets_an_uncompressed_answer_even_when_upstream_compressed_it', async () => {
    for (const accept of [undefined, 'identity', 'deflate', 'br;q=0, gzip;q=0']) {
      const r = await get(app, '/api/shape/json?coding=br&pad=3000', accept ? { 'accept-encoding': accept } : {});
      expect(r.headers['content-encoding']).toBeUndefined();
      expect(JSON.parse(r.wire.toString('utf8'))).toEqual({ Id: 7, FullName: 'Demo', Note: 'n'.repeat(3000) });
    }
  });
});

describe('streams', () => {
  it('each_server_sent_event_arrives_before_upstream_sends_the_next_uncompressed_and_scrubbed', async () => {
    const r = await get(app, '/api/shape/sse?events=3&gap=700', { 'accept-encoding': 'br, gzip', accept: 'text/event-stream' });
    expect(r.status).toBe(200);
    expect(r.headers['content-encoding']).toBeUndefined();
    expect(String(r.headers['content-type'])).toMatch(/^text\/event-stream/);
    const first = r.chunks[0];
    expect(first).toBeDefined();
    const [t1, c1] = first as [number, Buffer];
    // The first event on its own, long before the second was written (700 ms later).
    expect(c1.toString()).toMatch(/^id: 1\nevent: tick\ndata: event 1/);
    const second = r.chunks.find(([, c]) => c.includes('id: 2'));
    expect(second).toBeDefined();
    expect((second as [number, Buffer])[0] - t1).toBeGreaterThan(400);
    expect(r.text).toMatch(/data: token \[redacted\]/);
    expect(r.text.endsWith('id: last\ndata: bye\n\n')).toBe(true);
    expectNoBearer(r.text, bearerFor('/api/shape/sse'));
  });

  it('an_event_stream_silent_longer_than_upstream_timeout_stays_open_until_upstream_ends_it', async () => {
    // UPSTREAM_TIMEOUT=1 s; the stream is silent for 2.5 s after its first event.
    const r = await get(quick, '/api/shape/sse?events=1&hold=2500');
    expect(r.status).toBe(200);
    expect(r.complete).toBe(true);
    expect(r.text.endsWith('id: last\ndata: bye\n\n')).toBe(true);
    expect((r.chunks[r.chunks.length - 1] as [number, Buffer])[0]).toBeGreaterThan(2400);
  });

  it('any_other_answer_silent_longer_than_upstream_timeout_is_still_cut', async () => {
    const r = await get(quick, '/api/shape/slow?first=262144&ms=2500');
    expect(r.status).toBe(200);
    expect(r.complete).toBe(false);
    const last = r.chunks[r.chunks.length - 1];
    expect(last === undefined || last[0] < 2400).toBe(true);
  });

  it.each([undefined, 'br, gzip'])('the_first_bytes_of_a_slow_large_answer_arrive_before_its_end_(accept-encoding %p)', async (accept) => {
    const r = await get(app, '/api/shape/slow?first=262144&ms=1000', accept ? { 'accept-encoding': accept } : {});
    expect(r.status).toBe(200);
    expect(r.complete).toBe(true);
    const [t1] = r.chunks[0] as [number, Buffer];
    const [tEnd] = r.chunks[r.chunks.length - 1] as [number, Buffer];
    expect(t1).toBeLessThan(700);
    expect(tEnd).toBeGreaterThan(950);
    // Most of the head went out before upstream's pause (flushed, when compressed), not just a byte or two.
    const early = Buffer.concat(r.chunks.filter(([t]) => t < 700).map(([, c]) => c));
    const decoded = accept ? brotliDecompressSync(early, { finishFlush: constants.BROTLI_OPERATION_FLUSH }) : early;
    expect(decoded.length).toBeGreaterThan(200_000);
    const parsed = JSON.parse(r.text) as Record<string, unknown>;
    expect(Object.keys(parsed)).toEqual(['head', 'tail']);
  });
});

describe('the request id on every kind of proxied answer', () => {
  // The proxy writes the id into the heads it writes itself (no header is set ahead of them), so
  // each way an answer leaves has to carry it: whole, streamed, compressed, event stream, refused.
  const shapes: [string, string, OutgoingHttpHeaders, number][] = [
    ['a small whole answer', '/api/shape/json?pad=10', {}, 200],
    ['a compressed answer', '/api/shape/json?coding=gzip&pad=3000', { 'accept-encoding': 'br' }, 200],
    ['a large streamed answer', '/api/shape/large?size=200000', {}, 200],
    ['an event stream', '/api/shape/sse?events=1', { accept: 'text/event-stream' }, 200],
    ['a coding refused with 502', '/api/shape/json?coding=zstd', { 'accept-encoding': 'zstd, br' }, 502],
  ];
  it.each(shapes)('%s', async (_name, path, headers, status) => {
    const id = `shape-${status}-${path.length}`;
    const r = await get(app, path, { ...headers, 'x-request-id': id });
    expect(r.status).toBe(status);
    expect(r.headers['x-request-id']).toBe(id);
  });

  it('a_head_request_and_a_request_without_a_session_carry_it_too', async () => {
    const { hostname, port } = new URL(app.url);
    const head = await new Promise<{ status: number | undefined; headers: IncomingHttpHeaders }>((resolve, reject) => {
      const req = httpRequest({ host: hostname, port, path: '/api/shape/json', method: 'HEAD', headers: { cookie, 'x-csrf': '1', 'x-request-id': 'head-1' }, agent: false }, (res) => {
        res.resume();
        resolve({ status: res.statusCode, headers: res.headers });
      });
      req.on('error', reject);
      req.end();
    });
    expect(head.status).toBe(200);
    expect(head.headers['x-request-id']).toBe('head-1');
    const anonymous = await get(app, '/api/shape/json', { 'x-request-id': 'anon-1' }, '');
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers['x-request-id']).toBe('anon-1');
  });
});
