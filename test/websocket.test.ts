import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { WebSocket } from 'ws';
import { freePort } from '../scripts/redis-server.js';
import { closeExpectingNoLeaks, DEMO, startHarness, type Harness, type Instance } from './support/harness.js';
import { startWsUpstream, type WsUpstream } from './support/ws-upstream.js';

let h: Harness;
let up: WsUpstream;
let a: Instance;
let b: Instance;

beforeAll(async () => {
  h = await startHarness();
  up = await startWsUpstream(h.upstream.port);
  a = await h.start({ UPSTREAM_URL: up.url });
  b = await h.start({ UPSTREAM_URL: up.url });
});
afterAll(async () => {
  await up.close();
  await closeExpectingNoLeaks(h);
});

async function signInCookie(instance: Pick<Instance, 'url'>): Promise<string> {
  const res = await request(instance.url).post('/auth/login').set('X-CSRF', '1').send(DEMO);
  expect(res.status).toBe(200);
  const set = (res.headers['set-cookie'] as unknown as string[] | undefined) ?? [];
  const pair = set[0]?.split(';')[0];
  if (!pair) throw new Error('no session cookie');
  return pair;
}

interface Refusal {
  status: number;
  contentType: string | undefined;
  requestId: string | undefined;
  body: Record<string, unknown>;
}

type Opened = { ws: WebSocket; refusal?: undefined } | { ws?: undefined; refusal: Refusal };

/** Opens a browser-side WebSocket to cloakroom; a refused handshake resolves with its HTTP answer. */
function connect(
  instance: Pick<Instance, 'url'>,
  path: string,
  opts: { cookie?: string; origin?: string | null; protocols?: string[]; headers?: Record<string, string>; rawPath?: boolean } = {},
): Promise<Opened> {
  const origin = opts.origin === undefined ? instance.url : opts.origin;
  const headers: Record<string, string> = { ...(opts.headers ?? {}) };
  if (opts.cookie) headers.cookie = opts.cookie;
  const ws = new WebSocket(`${instance.url.replace('http', 'ws')}${path}`, opts.protocols ?? [], {
    headers,
    ...(origin === null ? {} : { origin }),
    maxPayload: 64 << 20,
    // The path exactly as given: ws goes through the WHATWG URL parser, which re-encodes some characters.
    ...(opts.rawPath
      ? {
          finishRequest: (r: import('node:http').ClientRequest) => {
            r.path = path;
            r.end();
          },
        }
      : {}),
  });
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ ws }));
    ws.once('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: Record<string, unknown> = {};
        try {
          body = JSON.parse(text) as Record<string, unknown>;
        } catch {
          body = { unparsed: text };
        }
        resolve({ refusal: { status: res.statusCode ?? 0, contentType: res.headers['content-type'], requestId: res.headers['x-request-id'] as string | undefined, body } });
        ws.terminate();
      });
    });
    ws.on('error', (err) => {
      if (ws.readyState !== WebSocket.CLOSED) reject(err);
    });
  });
}

async function open(instance: Pick<Instance, 'url'>, path: string, opts: Parameters<typeof connect>[2] = {}): Promise<WebSocket> {
  const r = await connect(instance, path, opts);
  if (!r.ws) throw new Error(`refused: ${r.refusal.status} ${JSON.stringify(r.refusal.body)}`);
  r.ws.on('error', () => undefined);
  return r.ws;
}

async function refused(instance: Pick<Instance, 'url'>, path: string, opts: Parameters<typeof connect>[2] = {}): Promise<Refusal> {
  const r = await connect(instance, path, opts);
  if (!r.refusal) {
    r.ws.terminate();
    throw new Error('the handshake was accepted');
  }
  return r.refusal;
}

const closed = (ws: WebSocket): Promise<{ code: number; reason: string; at: number }> =>
  new Promise((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) return resolve({ code: -1, reason: 'already closed', at: Date.now() });
    ws.once('close', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString('utf8'), at: Date.now() }));
  });

const nextMessage = (ws: WebSocket): Promise<{ data: Buffer; isBinary: boolean }> =>
  new Promise((resolve) => ws.once('message', (data, isBinary) => resolve({ data: Buffer.isBuffer(data) ? data : Buffer.from(data as ArrayBuffer), isBinary })));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function gauge(instance: Pick<Instance, 'url'>): Promise<number> {
  const res = await request(instance.url).get('/metrics');
  const m = /^cloakroom_websockets_open (\d+)$/m.exec(res.text);
  return Number(m?.[1] ?? NaN);
}

async function until(check: () => Promise<boolean> | boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await sleep(25);
  }
  throw new Error('condition not met in time');
}

describe('handshake refusals', () => {
  let cookie: string;
  beforeAll(async () => {
    cookie = await signInCookie(a);
  });

  const expectJsonRefusal = (r: Refusal, status: number, code: string) => {
    expect(r.status).toBe(status);
    expect(r.contentType).toMatch(/^application\/json/);
    expect(r.body.error).toBe(code);
    expect(typeof r.body.message).toBe('string');
  };

  it('websocket_without_origin_is_refused_403_origin_not_allowed_and_nothing_opens_upstream', async () => {
    const before = up.handshakes.length;
    expectJsonRefusal(await refused(a, '/api/ws/echo', { cookie, origin: null }), 403, 'origin_not_allowed');
    expect(up.handshakes.length).toBe(before);
  });

  it('websocket_from_another_origin_is_refused_403_origin_not_allowed', async () => {
    const before = up.handshakes.length;
    expectJsonRefusal(await refused(a, '/api/ws/echo', { cookie, origin: 'https://evil.example' }), 403, 'origin_not_allowed');
    expect(up.handshakes.length).toBe(before);
  });

  it('websocket_from_an_allowed_origin_opens_when_ALLOWED_ORIGINS_is_set', async () => {
    const c = await h.start({ UPSTREAM_URL: up.url, ALLOWED_ORIGINS: 'https://app.example' });
    try {
      expectJsonRefusal(await refused(c, '/api/ws/echo', { cookie, origin: c.url }), 403, 'origin_not_allowed');
      const ws = await open(c, '/api/ws/echo', { cookie, origin: 'https://app.example' });
      ws.close();
      await closed(ws);
    } finally {
      await c.close();
    }
  });

  it('websocket_without_session_is_refused_401_unauthenticated', async () => {
    const before = up.handshakes.length;
    expectJsonRefusal(await refused(a, '/api/ws/echo'), 401, 'unauthenticated');
    expectJsonRefusal(await refused(a, '/api/ws/echo', { cookie: 'bff.sid=s%3Aforged.sig' }), 401, 'unauthenticated');
    expect(up.handshakes.length).toBe(before);
  });

  it('websocket_on_an_invalid_path_is_refused_400_invalid_path', async () => {
    const before = up.handshakes.length;
    // Spellings the WHATWG URL parser of a client leaves as they are (it would resolve a plain `..`).
    expectJsonRefusal(await refused(a, '/api/ws/%252e%252e/x', { cookie }), 400, 'invalid_path');
    expectJsonRefusal(await refused(a, '/api/ws/x%2f..%2fy', { cookie }), 400, 'invalid_path');
    expect(up.handshakes.length).toBe(before);
  });

  it('websocket_on_a_credential_path_is_refused_403_forbidden_path', async () => {
    const before = up.handshakes.length;
    expectJsonRefusal(await refused(a, '/api/token', { cookie }), 403, 'forbidden_path');
    expectJsonRefusal(await refused(a, '/api/sys/users/exchange', { cookie }), 403, 'forbidden_path');
    expect(up.handshakes.length).toBe(before);
  });

  it('upstream_refusing_the_handshake_passes_its_status_to_the_browser', async () => {
    expect((await refused(a, '/api/ws/refuse/403', { cookie })).status).toBe(403);
    expect((await refused(a, '/api/ws/refuse/404', { cookie })).status).toBe(404);
  });

  it('unreachable_upstream_is_502_upstream_unavailable', async () => {
    const dead = await h.start({ UPSTREAM_URL: `http://127.0.0.1:${await freePort()}` });
    try {
      expectJsonRefusal(await refused(dead, '/api/ws/echo', { cookie }), 502, 'upstream_unavailable');
    } finally {
      await dead.close();
    }
  });

  it('an_upgrade_that_is_not_an_api_websocket_is_answered_as_plain_http', async () => {
    const { hostname, port } = new URL(a.url);
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest({ host: hostname, port, path: '/auth/session', headers: { connection: 'Upgrade, HTTP2-Settings', upgrade: 'h2c', 'http2-settings': 'AAMAAABkAARAAAAAAAIAAAAA' } }, (r) => {
        let body = '';
        r.on('data', (c: Buffer) => (body += c.toString('utf8')));
        r.on('end', () => resolve({ status: r.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ authenticated: false });
  });
});

describe('the upstream handshake', () => {
  it('carries_the_bearer_and_neither_the_browser_cookie_nor_its_authorization', async () => {
    const cookie = await signInCookie(a);
    const ws = await open(a, '/api/ws/echo?room=1&x=%2F', { cookie: `${cookie}; theme=dark`, headers: { authorization: 'Basic dXNlcjpwYXNz' } });
    const seen = up.handshakes.at(-1);
    expect(seen?.url).toBe('/api/ws/echo?room=1&x=%2F');
    expect(seen?.headers.authorization).toMatch(/^Bearer at_/);
    expect(seen?.headers.cookie).toBeUndefined();
    expect(seen?.headers.origin).toBeUndefined();
    ws.close();
    await closed(ws);
  });

  it('a_valid_request_id_goes_upstream_and_an_invalid_one_is_replaced', async () => {
    const cookie = await signInCookie(a);
    const kept = await open(a, '/api/ws/echo', { cookie, headers: { 'x-request-id': 'spa-123.4:5_6' } });
    expect(up.handshakes.at(-1)?.headers['x-request-id']).toBe('spa-123.4:5_6');
    kept.close();
    await closed(kept);
    const replaced = await open(a, '/api/ws/echo', { cookie, headers: { 'x-request-id': 'x'.repeat(129) } });
    const sent = up.handshakes.at(-1)?.headers['x-request-id'];
    expect(sent).toMatch(/^[A-Za-z0-9._:-]{1,128}$/);
    expect(sent).not.toBe('x'.repeat(129));
    replaced.close();
    await closed(replaced);
  });

  it('a_browser_traceparent_goes_upstream_when_valid_and_is_dropped_when_not', async () => {
    const cookie = await signInCookie(a);
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const valid = await open(a, '/api/ws/echo', { cookie, headers: { traceparent } });
    expect(up.handshakes.at(-1)?.headers['traceparent']).toBe(traceparent);
    valid.close();
    await closed(valid);
    const forged = await open(a, '/api/ws/echo', { cookie, headers: { traceparent: 'not-a-trace, x' } });
    expect(up.handshakes.at(-1)?.headers['traceparent']).toBeUndefined();
    forged.close();
    await closed(forged);
  });

  it('a_refused_handshake_carries_x_request_id_like_every_answer', async () => {
    const own = await refused(a, '/api/ws/echo', { origin: null, headers: { 'x-request-id': 'refused-1' } });
    expect(own.requestId).toBe('refused-1');
    const made = await refused(a, '/api/ws/echo', { origin: null, headers: { 'x-request-id': 'has space' } });
    expect(made.requestId).toMatch(/^[A-Za-z0-9._:-]{1,128}$/);
    expect(made.requestId).not.toBe('has space');
  });

  it('goes_to_upstream_with_the_raw_path_and_query', async () => {
    const cookie = await signInCookie(a);
    const path = "/api/ws/echo/a%2Fb?name=O'Brien&q=%7Bx%7D&r={y}";
    const ws = await open(a, path, { cookie, rawPath: true });
    expect(up.handshakes.at(-1)?.url).toBe(path);
    ws.close();
    await closed(ws);
  });

  it('passes_the_subprotocols_and_the_browser_gets_the_one_upstream_chose', async () => {
    const cookie = await signInCookie(a);
    const ws = await open(a, '/api/ws/echo', { cookie, protocols: ['chat.v2', 'chat.v1'] });
    expect(up.handshakes.at(-1)?.headers['sec-websocket-protocol']).toBe('chat.v2,chat.v1');
    expect(ws.protocol).toBe('chat.v2');
    ws.close();
    const none = await open(a, '/api/ws/echo', { cookie });
    expect(up.handshakes.at(-1)?.headers['sec-websocket-protocol']).toBeUndefined();
    expect(none.protocol).toBe('');
    none.close();
    await Promise.all([closed(ws), closed(none)]);
  });

  it('upstream_401_to_the_handshake_refreshes_once_and_tries_again', async () => {
    const cookie = await signInCookie(a);
    h.upstream.expireAllAccessTokens();
    const refreshesBefore = h.upstream.stats.refreshGrants;
    const before = up.handshakes.length;
    const ws = await open(a, '/api/ws/echo', { cookie });
    expect(h.upstream.stats.refreshGrants).toBe(refreshesBefore + 1);
    const tries = up.handshakes.slice(before);
    expect(tries).toHaveLength(2);
    expect(tries[0]?.headers.authorization).not.toBe(tries[1]?.headers.authorization);
    ws.send('after refresh');
    expect((await nextMessage(ws)).data.toString()).toBe('after refresh');
    ws.close();
    await closed(ws);
  });
});

describe('frames', () => {
  let cookie: string;
  beforeAll(async () => {
    cookie = await signInCookie(a);
  });

  it('one_mib_text_and_binary_messages_pass_unchanged_both_ways', async () => {
    const ws = await open(a, '/api/ws/echo', { cookie });
    const upstreamSide = up.sockets.at(-1) as WebSocket;
    const received: { data: Buffer; isBinary: boolean }[] = [];
    upstreamSide.on('message', (data, isBinary) => received.push({ data: data as Buffer, isBinary }));
    const text = 'é'.repeat(1 << 19) + 'x'.repeat(16); // 1 MiB + 16 bytes of UTF-8
    const binary = randomBytes((1 << 20) + 1);
    ws.send(text);
    const t = await nextMessage(ws);
    ws.send(binary);
    const bin = await nextMessage(ws);
    expect(t.isBinary).toBe(false);
    expect(t.data.toString('utf8')).toBe(text);
    expect(bin.isBinary).toBe(true);
    expect(bin.data.equals(binary)).toBe(true);
    expect(received.map((r) => r.isBinary)).toEqual([false, true]);
    expect(received[1]?.data.equals(binary)).toBe(true);
    ws.close();
    await closed(ws);
  });

  it('pings_and_pongs_pass_both_ways', async () => {
    const ws = await open(a, '/api/ws/echo', { cookie });
    const upstreamSide = up.sockets.at(-1) as WebSocket;
    const upstreamPing = new Promise<Buffer>((resolve) => upstreamSide.once('ping', resolve));
    const pong = new Promise<Buffer>((resolve) => ws.once('pong', resolve));
    ws.ping(Buffer.from('are-you-there'));
    expect((await upstreamPing).toString()).toBe('are-you-there');
    expect((await pong).toString()).toBe('are-you-there');
    const browserPing = new Promise<Buffer>((resolve) => ws.once('ping', resolve));
    const upstreamPong = new Promise<Buffer>((resolve) => upstreamSide.once('pong', resolve));
    upstreamSide.ping(Buffer.from('from-upstream'));
    expect((await browserPing).toString()).toBe('from-upstream');
    expect((await upstreamPong).toString()).toBe('from-upstream');
    ws.close();
    await closed(ws);
  });

  it('close_codes_and_reasons_pass_both_ways', async () => {
    const ws1 = await open(a, '/api/ws/echo', { cookie });
    const up1 = up.sockets.at(-1) as WebSocket;
    const upClosed = closed(up1);
    ws1.close(4001, 'bye from browser');
    expect(await upClosed).toMatchObject({ code: 4001, reason: 'bye from browser' });

    const ws2 = await open(a, '/api/ws/echo', { cookie });
    const up2 = up.sockets.at(-1) as WebSocket;
    const browserClosed = closed(ws2);
    up2.close(4002, 'bye from upstream');
    expect(await browserClosed).toMatchObject({ code: 4002, reason: 'bye from upstream' });

    const ws3 = await open(a, '/api/ws/echo', { cookie });
    const up3 = up.sockets.at(-1) as WebSocket;
    const noStatus = closed(up3);
    ws3.close();
    expect((await noStatus).code).toBe(1005);

    // A browser that vanishes without a closing handshake: upstream's end goes too, and the slot is free.
    const ws4 = await open(a, '/api/ws/echo', { cookie });
    const up4 = up.sockets.at(-1) as WebSocket;
    const abnormal = closed(up4);
    ws4.terminate();
    expect((await abnormal).code).toBe(1006);
    await until(() => a.cloakroom.websockets.openCount() === 0);
  });
});

describe('session lifetime', () => {
  it('logout_on_another_instance_closes_the_socket_within_5_s_with_1008_session_ended', async () => {
    const cookie = await signInCookie(a);
    const ws = await open(a, '/api/ws/echo', { cookie });
    const upstreamSide = up.sockets.at(-1) as WebSocket;
    const browserClosed = closed(ws);
    const upstreamClosed = closed(upstreamSide);
    const started = Date.now();
    const res = await request(b.url).post('/auth/logout').set('X-CSRF', '1').set('Cookie', cookie);
    expect(res.status).toBe(204);
    const end = await browserClosed;
    expect(end).toMatchObject({ code: 1008, reason: 'session_ended' });
    expect(end.at - started).toBeLessThan(5000);
    await upstreamClosed;
  });

  it.each<[string, (mine: string, other: string) => Promise<void>]>([
    [
      'a_delete_of_its_handle_from_another_device',
      async (_mine, other) => {
        const listed = await request(b.url).get('/auth/sessions').set('Cookie', other);
        const target = (listed.body as { sessions: { id: string; current: boolean }[] }).sessions.find((s) => !s.current);
        if (!target) throw new Error('the first device is not listed');
        expect((await request(b.url).delete(`/auth/sessions/${target.id}`).set('X-CSRF', '1').set('Cookie', other)).status).toBe(204);
      },
    ],
    [
      'sign_out_everywhere_from_another_device',
      async (_mine, other) => {
        expect((await request(b.url).post('/auth/logout').set('X-CSRF', '1').set('Cookie', other).send({ everywhere: true })).status).toBe(204);
      },
    ],
  ])('%s_on_another_instance_closes_the_socket_within_5_s_with_1008', async (_name, endIt) => {
    const mine = await signInCookie(a);
    const other = await signInCookie(b);
    const ws = await open(a, '/api/ws/echo', { cookie: mine });
    const browserClosed = closed(ws);
    const started = Date.now();
    await endIt(mine, other);
    const end = await browserClosed;
    expect(end).toMatchObject({ code: 1008, reason: 'session_ended' });
    expect(end.at - started).toBeLessThan(5000);
    expect((await request(a.url).get('/api/auth/me').set('X-CSRF', '1').set('Cookie', mine)).status).toBe(401);
  });

  it('a_refused_refresh_on_another_instance_closes_the_socket_with_1008', async () => {
    const cookie = await signInCookie(a);
    const ws = await open(a, '/api/ws/echo', { cookie });
    const browserClosed = closed(ws);
    h.upstream.expireAllAccessTokens();
    h.upstream.faults.refresh.push('invalid_grant');
    const res = await request(b.url).get('/api/echo/x').set('X-CSRF', '1').set('Cookie', cookie);
    expect(res.body.error).toBe('session_expired');
    expect(await browserClosed).toMatchObject({ code: 1008, reason: 'session_ended' });
  });

  it('an_open_socket_keeps_an_idle_session_alive_and_a_session_without_one_ends', async () => {
    const short = await h.start({ UPSTREAM_URL: up.url }, (c) => ({ ...c, idleTimeoutSeconds: 2, absoluteTimeoutSeconds: 600 }));
    try {
      const withSocket = await signInCookie(short);
      const without = await signInCookie(short);
      const ws = await open(short, '/api/ws/echo', { cookie: withSocket });
      await sleep(4500);
      expect(ws.readyState).toBe(WebSocket.OPEN);
      expect((await request(short.url).get('/auth/session').set('Cookie', withSocket)).body.authenticated).toBe(true);
      expect((await request(short.url).get('/auth/session').set('Cookie', without)).body.authenticated).toBe(false);
      ws.close();
      await closed(ws);
    } finally {
      await short.close();
    }
  });

  it('the_absolute_timeout_still_ends_a_session_with_an_open_socket', async () => {
    const short = await h.start({ UPSTREAM_URL: up.url }, (c) => ({ ...c, idleTimeoutSeconds: 2, absoluteTimeoutSeconds: 3 }));
    try {
      const cookie = await signInCookie(short);
      const ws = await open(short, '/api/ws/echo', { cookie });
      const started = Date.now();
      const end = await closed(ws);
      expect(end).toMatchObject({ code: 1008, reason: 'session_ended' });
      expect(end.at - started).toBeLessThan(3000 + 5000);
    } finally {
      await short.close();
    }
  });

  it('the_in_process_store_closes_a_socket_after_logout_too', async () => {
    const memory = await h.start({ UPSTREAM_URL: up.url, REDIS_URL: '' });
    try {
      const cookie = await signInCookie(memory);
      const ws = await open(memory, '/api/ws/echo', { cookie });
      const browserClosed = closed(ws);
      const started = Date.now();
      await request(memory.url).post('/auth/logout').set('X-CSRF', '1').set('Cookie', cookie);
      const end = await browserClosed;
      expect(end).toMatchObject({ code: 1008, reason: 'session_ended' });
      expect(end.at - started).toBeLessThan(5000);
    } finally {
      await memory.close();
    }
  });
});

describe('operations', () => {
  it('close_all_on_shutdown_closes_open_sockets_with_1001', async () => {
    const c = await h.start({ UPSTREAM_URL: up.url });
    const cookie = await signInCookie(c);
    const ws = await open(c, '/api/ws/echo', { cookie });
    const upstreamSide = up.sockets.at(-1) as WebSocket;
    const browserClosed = closed(ws);
    const upstreamClosed = closed(upstreamSide);
    await c.cloakroom.websockets.closeAll(1001);
    expect((await browserClosed).code).toBe(1001);
    expect((await upstreamClosed).code).toBe(1001);
    expect(c.cloakroom.websockets.openCount()).toBe(0);
    await c.close();
  });

  it('caps_per_session_and_per_process_refuse_with_429_and_503', async () => {
    const c = await h.start({ UPSTREAM_URL: up.url, WEBSOCKET_MAX_PER_SESSION: '2', WEBSOCKET_MAX_OPEN: '3' });
    try {
      const one = await signInCookie(c);
      const two = await signInCookie(c);
      const sockets = [await open(c, '/api/ws/echo', { cookie: one }), await open(c, '/api/ws/echo', { cookie: one })];
      const perSession = await refused(c, '/api/ws/echo', { cookie: one });
      expect(perSession.status).toBe(429);
      expect(perSession.body.error).toBe('rate_limited');
      sockets.push(await open(c, '/api/ws/echo', { cookie: two }));
      const perProcess = await refused(c, '/api/ws/echo', { cookie: two });
      expect(perProcess.status).toBe(503);
      expect(perProcess.body.error).toBe('websockets_unavailable');
      // A closed socket frees its slot.
      const first = sockets[0] as WebSocket;
      first.close();
      await closed(first);
      await until(() => c.cloakroom.websockets.openCount() === 2);
      sockets.push(await open(c, '/api/ws/echo', { cookie: two }));
      for (const ws of sockets) ws.close();
      await Promise.all(sockets.map(closed));
    } finally {
      await c.close();
    }
  });

  it('the_gauge_counts_open_websockets', async () => {
    const cookie = await signInCookie(a);
    await until(async () => (await gauge(a)) === 0).catch(async () => {
      throw new Error(`gauge ${await gauge(a)}, openCount ${a.cloakroom.websockets.openCount()}`);
    });
    const ws1 = await open(a, '/api/ws/echo', { cookie });
    const ws2 = await open(a, '/api/ws/echo', { cookie });
    expect(await gauge(a)).toBe(2);
    ws1.close();
    await closed(ws1);
    await until(async () => (await gauge(a)) === 1);
    ws2.close();
    await closed(ws2);
    await until(async () => (await gauge(a)) === 0);
  });
});

describe('the server process', () => {
  // Its own build folder (under node_modules, so packages resolve): other suites build dist/ at the same time.
  const ROOT = fileURLToPath(new URL('..', import.meta.url));
  const OUT = join(ROOT, 'node_modules', '.cache', 'cloakroom-websocket-test');
  const MAIN = join(OUT, 'src', 'main.js');

  beforeAll(async () => {
    // Transpiled only (no type check, about a second): a full tsc build here would load the
    // machine while the other suites run; type checking is `npm run lint`'s job.
    const ts = (await import('typescript')).default;
    const walk = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
    for (const file of walk(join(ROOT, 'src'))) {
      const out = join(OUT, relative(ROOT, file)).replace(/\.ts$/, '.js');
      const { outputText } = ts.transpileModule(readFileSync(file, 'utf8'), {
        compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
        fileName: file,
      });
      mkdirSync(dirname(out), { recursive: true });
      writeFileSync(out, outputText);
    }
    // ES modules, as the project's own package.json says for dist/.
    writeFileSync(join(OUT, 'package.json'), '{"type":"module"}\n');
    if (!existsSync(MAIN)) throw new Error(`transpiling did not produce ${MAIN}`);
  }, 90_000);

  it('sigterm_closes_open_websockets_with_1001_and_exits_0', async () => {
    const port = await freePort();
    const child = spawn(process.execPath, [MAIN], {
      cwd: mkdtempSync(join(tmpdir(), 'cloakroom-ws-')),
      env: {
        PATH: process.env.PATH ?? '',
        PORT: String(port),
        HOST: '127.0.0.1',
        UPSTREAM_URL: up.url,
        REDIS_URL: `redis://127.0.0.1:${h.redis.port}`,
        SESSION_SECRET: a.config.sessionSecrets[0] ?? '',
        TOKEN_ENCRYPTION_KEY: (a.config.tokenKeys[0] ?? Buffer.alloc(0)).toString('base64'),
        LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
    try {
      const proc = { url: `http://127.0.0.1:${port}` };
      await until(async () => (await request(proc.url).get('/healthz').catch(() => ({ status: 0 }))).status === 200, 10_000);
      const cookie = await signInCookie(proc);
      const ws = await open(proc, '/api/ws/echo', { cookie });
      const upstreamSide = up.sockets.at(-1) as WebSocket;
      const browserClosed = closed(ws);
      const upstreamClosed = closed(upstreamSide);
      child.kill('SIGTERM');
      expect((await browserClosed).code).toBe(1001);
      expect((await upstreamClosed).code).toBe(1001);
      expect(await exited).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, 30_000);
});
