import { request as httpRequest, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { DEMO, startHarness, type Harness, type Instance, closeExpectingNoLeaks } from './support/harness.js';

let h: Harness;
let app: Instance;
let cookie: string;

beforeAll(async () => {
  h = await startHarness();
  app = await h.start();
  const res = await request(app.url).post('/auth/login').set('X-CSRF', '1').send(DEMO);
  expect(res.status).toBe(200);
  const set = (res.headers['set-cookie'] as unknown as string[] | undefined) ?? [];
  cookie = (set.find((c) => c.startsWith(`${app.config.cookie.name}=`)) ?? '').split(';')[0] ?? '';
});
afterAll(() => closeExpectingNoLeaks(h));

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
