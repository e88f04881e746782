/**
 * Contract, Operations: with OTEL_EXPORTER_OTLP_ENDPOINT set, each request is a trace with spans
 * for the upstream call, a refresh and the session store, exported over OTLP/HTTP; the browser's
 * `traceparent` is continued and one is sent upstream. The collector here is a plain Node server
 * that keeps the JSON the exporter posts.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { WebSocket } from 'ws';
import { startTracing, type Tracing } from '../src/tracing.js';
import { startHarness, type Harness, type Instance, closeExpectingNoLeaks } from './support/harness.js';
import { startWsUpstream } from './support/ws-upstream.js';

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
}

let h: Harness;
let app: Instance;
let tracing: Tracing;
let collector: Server;
const spans: OtlpSpan[] = [];
const posts: string[] = [];

beforeAll(async () => {
  collector = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      posts.push(req.url ?? '');
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { resourceSpans?: { scopeSpans?: { spans?: OtlpSpan[] }[] }[] };
      for (const rs of body.resourceSpans ?? []) for (const ss of rs.scopeSpans ?? []) spans.push(...(ss.spans ?? []));
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
  process.env.OTEL_EXPORTER_OTLP_ENDPOINT = `http://127.0.0.1:${(collector.address() as AddressInfo).port}`;
  process.env.OTEL_BSP_SCHEDULE_DELAY = '50';
  tracing = await startTracing();
  h = await startHarness();
  app = await h.start();
}, 30_000);
afterAll(async () => {
  await closeExpectingNoLeaks(h);
  await tracing.shutdown();
  collector.close();
  delete process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
  delete process.env.OTEL_BSP_SCHEDULE_DELAY;
});

/** Every span of the trace, once the exporter has sent them. */
async function traceSpans(traceId: string, atLeast: number): Promise<OtlpSpan[]> {
  for (let i = 0; i < 100; i += 1) {
    await tracing.flush();
    const found = spans.filter((s) => s.traceId === traceId);
    if (found.length >= atLeast) return found;
    await new Promise((r) => setTimeout(r, 50));
  }
  return spans.filter((s) => s.traceId === traceId);
}

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const BROWSER_SPAN = '00f067aa0ba902b7';

describe('tracing', () => {
  it('a_proxied_request_continues_the_browser_trace_and_sends_it_upstream', async () => {
    const agent = await h.signIn(app);
    const res = await agent.get('/api/echo/traced').set('X-CSRF', '1').set('traceparent', `00-${TRACE_ID}-${BROWSER_SPAN}-01`);
    expect(res.status).toBe(200);
    const sent = (res.body as { headers: Record<string, string> }).headers.traceparent ?? '';
    expect(sent).toMatch(new RegExp(`^00-${TRACE_ID}-[0-9a-f]{16}-01$`));

    const found = await traceSpans(TRACE_ID, 2);
    const server = found.find((s) => s.name === 'GET /api/*');
    const upstream = found.find((s) => s.name === 'upstream GET');
    // One request, one server span in the trace.
    expect(found.filter((s) => s.kind === 2)).toHaveLength(1);
    expect(server?.parentSpanId).toBe(BROWSER_SPAN);
    expect(upstream?.parentSpanId).toBe(server?.spanId);
    // What upstream got names the upstream span as its parent.
    expect(sent.split('-')[2]).toBe(upstream?.spanId);
    expect(posts.every((p) => p === '/v1/traces')).toBe(true);
  });

  it('a_request_without_traceparent_is_a_trace_of_its_own_with_its_store_spans', async () => {
    const before = new Set(spans.map((s) => s.traceId));
    const res = await request(app.url).post('/auth/login').set('X-CSRF', '1').send({ email: 'demo@example.com', password: 'demo-password' });
    expect(res.status).toBe(200);
    let login: OtlpSpan | undefined;
    for (let i = 0; i < 100 && !login; i += 1) {
      await tracing.flush();
      login = spans.find((s) => s.name === 'POST /auth/login' && !before.has(s.traceId));
      if (!login) await new Promise((r) => setTimeout(r, 50));
    }
    expect(login).toBeDefined();
    expect(login?.parentSpanId ?? '').toBe('');
    const found = await traceSpans(login?.traceId ?? '', 2);
    const store = found.filter((s) => s.name === 'session store');
    expect(store.length).toBeGreaterThan(0);
    expect(store.every((s) => s.parentSpanId === login?.spanId)).toBe(true);
  });

  /** The last `/api/token` call carried `traceId`, from an `upstream POST` span under the span named `parent`. */
  const expectTokenCallTraced = async (traceId: string, parent: string, atLeast: number) => {
    const sent = h.upstream.requests.filter((r) => r.url === '/api/token').at(-1)?.headers.traceparent;
    expect(sent).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
    const found = await traceSpans(traceId, atLeast);
    const token = found.find((s) => s.name === 'upstream POST');
    expect(token?.parentSpanId).toBe(found.find((s) => s.name === parent)?.spanId);
    expect(String(sent).split('-')[2]).toBe(token?.spanId);
  };

  it('a_sign_in_sends_its_trace_upstream_on_the_token_call', async () => {
    const traceId = 'b'.repeat(31) + '2';
    const res = await request(app.url).post('/auth/login').set('X-CSRF', '1').set('traceparent', `00-${traceId}-${BROWSER_SPAN}-01`)
      .send({ email: 'demo@example.com', password: 'demo-password' });
    expect(res.status).toBe(200);
    await expectTokenCallTraced(traceId, 'POST /auth/login', 3);
  });

  it('a_websocket_handshake_continues_the_browser_trace_and_sends_it_upstream', async () => {
    const up = await startWsUpstream(h.upstream.port);
    try {
      const instance = await h.start({ UPSTREAM_URL: up.url });
      const login = await request(instance.url).post('/auth/login').set('X-CSRF', '1').send({ email: 'demo@example.com', password: 'demo-password' });
      const cookie = ((login.headers['set-cookie'] as unknown as string[])[0] ?? '').split(';')[0] ?? '';
      const traceId = 'd'.repeat(31) + '4';
      const ws = new WebSocket(`${instance.url.replace('http', 'ws')}/api/ws/echo`, {
        origin: instance.url,
        headers: { cookie, traceparent: `00-${traceId}-${BROWSER_SPAN}-01` },
      });
      await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
      await new Promise((resolve) => ws.once('close', resolve).close());
      const sent = String(up.handshakes.at(-1)?.headers.traceparent);
      expect(sent).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
      const found = await traceSpans(traceId, 2);
      const server = found.find((s) => s.name === 'GET /api/*');
      const upstream = found.find((s) => s.name === 'upstream GET');
      expect(server?.parentSpanId).toBe(BROWSER_SPAN);
      expect(upstream?.parentSpanId).toBe(server?.spanId);
      expect(sent.split('-')[2]).toBe(upstream?.spanId);
    } finally {
      await up.close();
    }
  });

  it('an_invalid_traceparent_starts_a_new_trace', async () => {
    const agent = await h.signIn(app);
    const res = await agent.get('/api/echo/bad-parent').set('X-CSRF', '1').set('traceparent', 'not-a-traceparent');
    expect(res.status).toBe(200);
    const sent = (res.body as { headers: Record<string, string> }).headers.traceparent ?? '';
    expect(sent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
    const found = await traceSpans(sent.split('-')[1] ?? '', 2);
    expect(found.find((s) => s.name === 'GET /api/*')?.parentSpanId ?? '').toBe('');
  });

  it('a_refresh_is_a_span_of_the_request_that_needed_it_with_its_store_spans_and_its_token_call', async () => {
    const agent = await h.signIn(app);
    h.upstream.expireAllAccessTokens();
    const traceId = 'a'.repeat(31) + '1';
    const res = await agent.get('/api/echo/refreshing').set('X-CSRF', '1').set('traceparent', `00-${traceId}-${BROWSER_SPAN}-01`);
    expect(res.status).toBe(200);
    const found = await traceSpans(traceId, 4);
    const server = found.find((s) => s.name === 'GET /api/*');
    const refresh = found.find((s) => s.name === 'token refresh');
    expect(refresh?.parentSpanId).toBe(server?.spanId);
    // The claim and the write back are store operations inside the refresh.
    expect(found.filter((s) => s.name === 'session store' && s.parentSpanId === refresh?.spanId).length).toBeGreaterThanOrEqual(1);
    expect(found.find((s) => s.name === 'upstream GET')?.parentSpanId).toBe(server?.spanId);
    // The refresh's own token call is a span of the refresh, its context sent upstream.
    await expectTokenCallTraced(traceId, 'token refresh', 5);
  });
});
