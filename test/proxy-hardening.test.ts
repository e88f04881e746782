import { request as httpRequest, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { DEMO, startHarness, type Harness, type Instance, closeExpectingNoLeaks } from './support/harness.js';
import { startExpressUpstream, type PathParsingUpstream } from './support/path-parsing-upstream.js';

let h: Harness;
let app: Instance;
let cookie: string;
let expressUp: PathParsingUpstream;

beforeAll(async () => {
  h = await startHarness();
  expressUp = await startExpressUpstream();
  app = await h.start();
  const res = await request(app.url).post('/auth/login').set('X-CSRF', '1').send(DEMO);
  expect(res.status).toBe(200);
  const set = (res.headers['set-cookie'] as unknown as string[] | undefined) ?? [];
  cookie = (set.find((c) => c.startsWith(`${app.config.cookie.name}=`)) ?? '').split(';')[0] ?? '';
});
afterAll(async () => {
  await expressUp.close();
  await closeExpectingNoLeaks(h);
});

interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

function raw(base: string, path: string, opts: { method?: string; headers?: OutgoingHttpHeaders } = {}): Promise<RawResponse> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: hostname, port, path, method: opts.method ?? 'GET', headers: { cookie, 'x-csrf': '1', ...opts.headers }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('methods', () => {
  it('trace_should_fail_with_method_not_allowed_and_send_nothing_upstream', async () => {
    h.upstream.reset();
    const res = await raw(app.url, '/api/echo/trace', { method: 'TRACE' });
    expect(res.status).toBe(405);
    expect(JSON.parse(res.body)).toEqual({ error: 'method_not_allowed', message: expect.any(String) });
    expect(h.upstream.requests).toHaveLength(0);
  });

  it('connect_should_fail_with_method_not_allowed_and_send_nothing_upstream', async () => {
    h.upstream.reset();
    const { hostname, port } = new URL(app.url);
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest({ host: hostname, port, method: 'CONNECT', path: '/api/echo/connect', headers: { cookie, 'x-csrf': '1' }, agent: false });
      // Node's client hands any answer to CONNECT to 'connect', the body left on the socket.
      req.on('connect', (res, socket, head) => {
        const chunks: Buffer[] = [head];
        socket.on('data', (c: Buffer) => chunks.push(c));
        socket.on('close', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      });
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      });
      req.on('error', reject);
      req.end();
    });
    expect(answer.status).toBe(405);
    expect(JSON.parse(answer.body).error).toBe('method_not_allowed');
    expect(h.upstream.requests).toHaveLength(0);
  });

  it('options_is_still_forwarded', async () => {
    h.upstream.reset();
    const res = await raw(app.url, '/api/echo/options', { method: 'OPTIONS' });
    expect(res.status).toBe(200);
    expect(h.upstream.requests.map((r) => r.method)).toEqual(['OPTIONS']);
  });
});

describe('headers', () => {
  const browserHeaders: OutgoingHttpHeaders = {
    'x-original-url': '/api/token',
    'x-rewrite-url': '/api/token',
    'x-http-method-override': 'DELETE',
    'x-http-method': 'DELETE',
    'x-method-override': 'DELETE',
    forwarded: 'for=10.0.0.1;proto=https;host=admin.internal',
    'x-forwarded-for': '203.0.113.7',
    'x-forwarded-proto': 'https',
    'x-forwarded-host': 'admin.internal',
    'x-forwarded-port': '8443',
    'x-forwarded-prefix': '/admin',
    'x-real-ip': '10.0.0.1',
    client_id: 'someone-elses-client',
    cookie2: '$Version="1"',
    x_forwarded_for: '10.0.0.9',
    x_tenant: 'other',
    'x-tenant': 'own',
  };
  const NEVER = ['x-original-url', 'x-rewrite-url', 'x-http-method-override', 'x-http-method', 'x-method-override', 'forwarded', 'x-forwarded-port', 'x-forwarded-prefix', 'x-real-ip', 'client_id', 'cookie2', 'x_forwarded_for', 'x_tenant'];

  const received = (res: RawResponse) => (JSON.parse(res.body) as { headers: Record<string, string> }).headers;

  it('override_and_forwarding_headers_from_the_browser_never_reach_upstream_and_cloakroom_sets_its_own', async () => {
    const instance = await h.start({ UPSTREAM_URL: expressUp.url });
    const res = await raw(instance.url, '/api/headers', { headers: browserHeaders });
    expect(res.status).toBe(200);
    const seen = received(res);
    for (const name of NEVER) expect(seen).not.toHaveProperty(name);
    expect(seen['x-tenant']).toBe('own');
    // TRUST_PROXY is off: the browser's X-Forwarded-* count for nothing.
    expect(seen['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen['x-forwarded-proto']).toBe('http');
    expect(seen['x-forwarded-host']).toBe(new URL(instance.url).host);
  });

  it('behind_a_trusted_proxy_the_forwarded_client_address_proto_and_host_are_the_ones_it_sent', async () => {
    const instance = await h.start({ UPSTREAM_URL: expressUp.url, TRUST_PROXY: 'loopback' });
    const res = await raw(instance.url, '/api/headers', { headers: { ...browserHeaders, origin: 'https://admin.internal' } });
    expect(res.status).toBe(200);
    const seen = received(res);
    for (const name of NEVER) expect(seen).not.toHaveProperty(name);
    expect(seen['x-forwarded-for']).toBe('203.0.113.7');
    expect(seen['x-forwarded-proto']).toBe('https');
    expect(seen['x-forwarded-host']).toBe('admin.internal');
  });

  it('upstream_cors_and_hsts_headers_never_reach_the_browser', async () => {
    const instance = await h.start({ UPSTREAM_URL: expressUp.url });
    const res = await raw(instance.url, '/api/headers');
    expect(res.status).toBe(200);
    expect(res.headers['x-kept']).toBe('yes');
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
    expect(res.headers['access-control-allow-credentials']).toBeUndefined();
    expect(res.headers['strict-transport-security']).toBeUndefined();
  });
});
