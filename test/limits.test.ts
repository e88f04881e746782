import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { DEMO, startHarness, type Harness, type Instance, closeExpectingNoLeaks } from './support/harness.js';

/**
 * Size limits and requests Node's HTTP parser refuses before any handler runs. Sent over raw
 * sockets or node:http, since fetch and supertest refuse to build most of them.
 */

let h: Harness;
let app: Instance;

beforeAll(async () => {
  h = await startHarness();
  app = await h.start();
});
afterAll(() => closeExpectingNoLeaks(h));

interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Writes bytes as they are to a fresh connection and parses the first HTTP response. */
function rawExchange(bytes: string): Promise<RawAnswer> {
  const port = Number(new URL(app.url).port);
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let data = Buffer.alloc(0);
    let done = false;
    const timer = setTimeout(() => finish(new Error(`no complete answer; got ${JSON.stringify(data.toString('latin1').slice(0, 200))}`)), 3000);
    const parse = (): RawAnswer | null => {
      const text = data.toString('latin1');
      // A 100 Continue is an interim answer; the real one follows it.
      const start = text.startsWith('HTTP/1.1 100') ? text.indexOf('\r\n\r\n') + 4 : 0;
      const end = text.indexOf('\r\n\r\n', start);
      if (end === -1) return null;
      const [statusLine = '', ...lines] = text.slice(start, end).split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of lines) {
        const colon = line.indexOf(':');
        headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      const length = Number(headers['content-length'] ?? NaN);
      const body = data.subarray(Buffer.byteLength(text.slice(0, end + 4), 'latin1'));
      if (!Number.isFinite(length) || body.length < length) return null;
      return { status: Number(statusLine.split(' ')[1]), headers, body: body.subarray(0, length).toString('utf8') };
    };
    const finish = (err: Error | null, answer?: RawAnswer) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      if (answer) resolve(answer);
      else reject(err ?? new Error('connection closed without an answer'));
    };
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      const answer = parse();
      if (answer) finish(null, answer);
    });
    socket.on('error', () => undefined);
    socket.on('close', () => finish(null, parse() ?? undefined));
    socket.write(bytes, 'latin1');
  });
}

/** A POST with node:http (no client-side limits), tolerating a server that stops reading early. */
function post(path: string, body: Buffer, headers: Record<string, string>, chunked = false): Promise<RawAnswer> {
  const { hostname, port } = new URL(app.url);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: hostname, port, path, method: 'POST', agent: false, headers: chunked ? headers : { ...headers, 'content-length': String(body.length) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const out: Record<string, string> = {};
        for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') out[k] = v;
        resolve({ status: res.statusCode ?? 0, headers: out, body: Buffer.concat(chunks).toString('utf8') });
      });
    });
    req.on('error', (err) => reject(err));
    if (chunked) {
      // Several writes without a length: the limit must hold while streaming, not only on Content-Length.
      for (let i = 0; i < body.length; i += 4096) req.write(body.subarray(i, i + 4096));
      req.end();
    } else {
      req.end(body);
    }
  });
}

function expectJsonError(res: RawAnswer, status: number, code: string): void {
  expect({ status: res.status, type: res.headers['content-type'] }).toEqual({ status, type: expect.stringMatching(/^application\/json/) });
  const body = JSON.parse(res.body) as Record<string, unknown>;
  expect(body).toEqual({ error: code, message: expect.any(String) });
}

const jsonHeaders = { 'x-csrf': '1', 'content-type': 'application/json' };
const over16kJson = Buffer.from(JSON.stringify({ ...DEMO, padding: 'x'.repeat(17 * 1024) }));

describe('request bodies on /auth/login', () => {
  it('json_body_over_16_kb_with_content_length_should_fail_with_413_payload_too_large', async () => {
    expectJsonError(await post('/auth/login', over16kJson, jsonHeaders), 413, 'payload_too_large');
  });

  it('json_body_over_16_kb_sent_chunked_should_fail_with_413_payload_too_large', async () => {
    expectJsonError(await post('/auth/login', over16kJson, jsonHeaders, true), 413, 'payload_too_large');
  });

  it('form_body_over_16_kb_should_fail_with_413_payload_too_large', async () => {
    const form = Buffer.from(new URLSearchParams({ ...DEMO, padding: 'y'.repeat(17 * 1024) }).toString());
    expectJsonError(await post('/auth/login', form, { 'x-csrf': '1', 'content-type': 'application/x-www-form-urlencoded' }), 413, 'payload_too_large');
  });

  it('json_body_just_under_16_kb_is_read_and_judged_on_its_fields', async () => {
    const body = Buffer.from(JSON.stringify({ ...DEMO, padding: 'z'.repeat(15 * 1024) }));
    const res = await post('/auth/login', body, jsonHeaders);
    expect(res.status).toBe(200);
  });

  it('no_set_cookie_and_no_session_come_with_a_413', async () => {
    const before = (await h.inspect.keys('cr:sess:*')).length;
    const res = await post('/auth/login', over16kJson, jsonHeaders);
    expect(res.status).toBe(413);
    expect(res.headers['set-cookie']).toBeUndefined();
    expect((await h.inspect.keys('cr:sess:*')).length).toBe(before);
  });
});

describe('oversized request line and headers', () => {
  it.each(['/auth/session', '/api/echo/x', '/healthz', '/links/download'])('headers_over_16_kib_on_%s_should_fail_with_431_json', async (path) => {
    const res = await rawExchange(`GET ${path} HTTP/1.1\r\nHost: x\r\nX-CSRF: 1\r\nX-Big: ${'a'.repeat(17 * 1024)}\r\n\r\n`);
    expectJsonError(res, 431, 'headers_too_large');
  });

  it('many_small_headers_adding_up_to_over_16_kib_should_fail_with_431_json', async () => {
    const headers = Array.from({ length: 400 }, (_, i) => `X-H${i}: ${'b'.repeat(40)}\r\n`).join('');
    expectJsonError(await rawExchange(`GET /auth/session HTTP/1.1\r\nHost: x\r\n${headers}\r\n`), 431, 'headers_too_large');
  });

  it('url_over_16_kib_should_fail_with_431_json', async () => {
    expectJsonError(await rawExchange(`GET /api/${'c'.repeat(17 * 1024)} HTTP/1.1\r\nHost: x\r\nX-CSRF: 1\r\n\r\n`), 431, 'headers_too_large');
  });

  it('a_long_cookie_header_over_16_kib_should_fail_with_431_json', async () => {
    expectJsonError(await rawExchange(`GET /auth/session HTTP/1.1\r\nHost: x\r\nCookie: bff.sid=s%3A${'d'.repeat(17 * 1024)}\r\n\r\n`), 431, 'headers_too_large');
  });

  it('headers_just_under_the_limit_are_served', async () => {
    const res = await rawExchange(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'e'.repeat(15 * 1024)}\r\n\r\n`);
    expect(res.status).toBe(200);
  });
});

describe('requests the parser refuses', () => {
  it.each([
    ['garbage_instead_of_a_request_line', 'GARBAGE\r\n\r\n'],
    ['unknown_protocol', 'GET / FOO/1.1\r\nHost: x\r\n\r\n'],
    ['lowercase_method', 'get /auth/session HTTP/1.1\r\nHost: x\r\n\r\n'],
    ['nul_byte_in_the_url', 'GET /auth/session\x00 HTTP/1.1\r\nHost: x\r\n\r\n'],
    ['space_in_the_url', 'GET /api/a b HTTP/1.1\r\nHost: x\r\nX-CSRF: 1\r\n\r\n'],
    ['header_without_colon', 'GET / HTTP/1.1\r\nHost x\r\n\r\n'],
    ['header_name_with_space', 'GET / HTTP/1.1\r\nHost: x\r\nX Bad: 1\r\n\r\n'],
    ['non_numeric_content_length', 'POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n'],
    ['content_length_and_chunked_together', 'POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
    ['two_different_content_lengths', 'POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}'],
    ['bad_chunk_size_on_login', 'POST /auth/login HTTP/1.1\r\nHost: x\r\nX-CSRF: 1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n\r\n'],
    ['bad_chunk_size_on_the_proxy', 'POST /api/echo/x HTTP/1.1\r\nHost: x\r\nX-CSRF: 1\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n\r\n'],
    ['http2_preface_on_http1', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'],
  ])('%s_should_fail_with_400_json', async (_name, bytes) => {
    expectJsonError(await rawExchange(bytes), 400, 'invalid_request');
  });

  it('http11_request_without_host_should_fail_with_400_json', async () => {
    expectJsonError(await rawExchange('GET /auth/session HTTP/1.1\r\n\r\n'), 400, 'invalid_request');
  });

  it('http10_request_without_host_is_served', async () => {
    expect((await rawExchange('GET /healthz HTTP/1.0\r\n\r\n')).status).toBe(200);
  });

  it('unsupported_expectation_should_fail_with_417_json', async () => {
    const res = await rawExchange('POST /auth/login HTTP/1.1\r\nHost: x\r\nX-CSRF: 1\r\nContent-Type: application/json\r\nContent-Length: 2\r\nExpect: tea\r\n\r\n{}');
    expectJsonError(res, 417, 'expectation_failed');
  });

  it('connect_should_fail_with_405_json_instead_of_a_silent_close', async () => {
    expectJsonError(await rawExchange('CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n'), 405, 'method_not_allowed');
  });

  it('after_all_of_that_the_server_still_signs_in_and_proxies', async () => {
    const agent = await h.signIn(app);
    expect((await agent.get('/api/echo/after-limits').set('X-CSRF', '1')).status).toBe(200);
  });
});
