import { createServer, request as httpRequest, type IncomingHttpHeaders, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Redis } from 'ioredis';
import { createTokenSealer } from '../src/core/token-crypto.js';
import { newSessionId } from '../src/store/keys.js';
import { createRedisTokenStore } from '../src/store/redis-token-store.js';
import { decodeRecord, type TokenRecord } from '../src/store/token-store.js';
import { DEMO, TEST_TOKEN_KEY, startHarness, type Harness, type Instance } from './support/harness.js';
import { freePort } from '../scripts/redis-server.js';

/**
 * Faults the other suites do not reach: a hung (SIGSTOPped) Redis, a token endpoint that
 * misbehaves during sign-in, bodies that stall, and the write ordering of rotated tokens.
 */

type TokenFault = 'pass' | 'garbage' | 'http500' | 'reset' | 'hang';

/**
 * Sits in front of the fake upstream and forwards everything, except that `/api/token` can be
 * made to misbehave (the fake's own fault queue only covers refresh grants) and
 * `/api/slow-stream?ms=` answers a non-JSON body that stalls after its first chunk.
 */
interface FaultyUpstream {
  readonly url: string;
  tokenFault: TokenFault;
  close(): Promise<void>;
}

async function startFaultyUpstream(target: string): Promise<FaultyUpstream> {
  const { hostname, port } = new URL(target);
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const state: { tokenFault: TokenFault } = { tokenFault: 'pass' };
  const server: Server = createServer((req, res) => {
    const url = req.url ?? '/';
    if (url.startsWith('/api/slow-stream')) {
      const ms = Number(new URL(url, 'http://x').searchParams.get('ms') ?? '3000');
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.write(Buffer.alloc(1024, 0x61));
      const t = setTimeout(() => {
        timers.delete(t);
        res.end(Buffer.alloc(1024, 0x62));
      }, ms);
      timers.add(t);
      return;
    }
    if (url === '/api/token' && state.tokenFault !== 'pass') {
      req.resume();
      switch (state.tokenFault) {
        case 'garbage':
          res.writeHead(200, { 'content-type': 'application/json' }).end('{"access_token": "unterminated');
          return;
        case 'http500':
          res.writeHead(500, { 'content-type': 'text/html' }).end('<h1>Internal Server Error</h1>');
          return;
        case 'reset':
          req.socket.destroy();
          return;
        case 'hang':
          return; // never answered; close() destroys the socket
      }
    }
    const forward = httpRequest({ host: hostname, port, method: req.method, path: url, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    forward.on('error', () => res.destroy());
    req.pipe(forward);
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  const boundPort = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    url: `http://127.0.0.1:${boundPort}`,
    get tokenFault() {
      return state.tokenFault;
    },
    set tokenFault(f: TokenFault) {
      state.tokenFault = f;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const t of timers) clearTimeout(t);
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}

let h: Harness;
let app: Instance;
let flaky: FaultyUpstream;
let viaFlaky: Instance;

beforeAll(async () => {
  h = await startHarness();
  app = await h.start({ UPSTREAM_TIMEOUT: '1' });
  flaky = await startFaultyUpstream(h.upstream.url);
  viaFlaky = await h.start({ UPSTREAM_URL: flaky.url, UPSTREAM_TIMEOUT: '1' });
});
afterAll(async () => {
  const leaks = await h.findLeaks();
  await h.close();
  await flaky.close();
  expect(leaks).toEqual([]);
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const sealer = createTokenSealer([Buffer.from(TEST_TOKEN_KEY, 'base64')]);

interface Answer {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
  ms: number;
}

/** One request with fetch, timed, body read as JSON when it is JSON. */
async function call(base: string, path: string, init: { method?: string; cookie?: string; csrf?: boolean; json?: unknown } = {}): Promise<Answer> {
  const headers: Record<string, string> = {};
  if (init.cookie) headers.cookie = init.cookie;
  if (init.csrf !== false) headers['x-csrf'] = '1';
  if (init.json !== undefined) headers['content-type'] = 'application/json';
  const started = Date.now();
  const res = await fetch(`${base}${path}`, {
    method: init.method ?? 'GET',
    headers,
    redirect: 'manual',
    ...(init.json !== undefined ? { body: JSON.stringify(init.json) } : {}),
  });
  const text = await res.text();
  const ms = Date.now() - started;
  let body: Record<string, unknown> = {};
  if ((res.headers.get('content-type') ?? '').includes('json') && text) body = JSON.parse(text) as Record<string, unknown>;
  return { status: res.status, headers: res.headers, body, ms };
}

/** Signs in and returns the `name=value` cookie pair and the session id inside it. */
async function signIn(instance: Instance): Promise<{ cookie: string; sid: string }> {
  const res = await fetch(`${instance.url}/auth/login`, {
    method: 'POST',
    headers: { 'x-csrf': '1', 'content-type': 'application/json' },
    body: JSON.stringify(DEMO),
  });
  if (res.status !== 200) throw new Error(`sign-in failed: ${res.status} ${await res.text()}`);
  await res.arrayBuffer();
  const pair = (res.headers.getSetCookie().find((c) => c.startsWith('bff.sid=')) ?? '').split(';')[0] ?? '';
  const value = decodeURIComponent(pair.slice('bff.sid='.length));
  return { cookie: pair, sid: value.slice(2, value.lastIndexOf('.')) };
}

/** The session's tokens as Redis holds them, opened with the test key. */
async function stored(sid: string): Promise<{ version: number; refreshToken: string; clientId: string } | null> {
  const raw = await h.inspect.get(`cr:tok:${sid}`);
  if (raw === null) return null;
  const rec = decodeRecord(raw);
  const opened = rec ? sealer.open(rec.sealed, sid) : null;
  if (!rec || opened === null) return null;
  const part = JSON.parse(opened) as { r: string; c: string };
  return { version: rec.version, refreshToken: part.r, clientId: part.c };
}

/** Polls until the session answers 200 again; the time it took, or -1. */
async function recoveryMs(instance: Instance, cookie: string, withinMs: number): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < withinMs) {
    const res = await call(instance.url, '/api/echo/after', { cookie });
    if (res.status === 200) return Date.now() - started;
    expect(res.status).toBe(503);
    await sleep(50);
  }
  return -1;
}

/** Sum of every failed-login counter. */
async function throttleCount(): Promise<number> {
  let sum = 0;
  for (const key of await h.inspect.keys('cr:rl:*')) sum += Number((await h.inspect.get(key)) ?? 0);
  return sum;
}

const sessionKeyCount = async () => (await h.inspect.keys('cr:sess:*')).length + (await h.inspect.keys('cr:tok:*')).length;

describe('hung session store (redis-server SIGSTOPped)', () => {
  it('every_session_route_answers_503_within_1_5_s_readyz_503_healthz_200_and_the_same_session_works_after_sigcont', async () => {
    const { cookie, sid } = await signIn(app);
    expect((await call(app.url, '/api/echo/before', { cookie })).status).toBe(200);

    h.redis.pause();
    const timings: Record<string, number> = {};
    try {
      const checks: [string, () => Promise<Answer>][] = [
        ['/api', () => call(app.url, '/api/echo/during', { cookie })],
        ['/auth/session', () => call(app.url, '/auth/session', { cookie, csrf: false })],
        ['/auth/login', () => call(app.url, '/auth/login', { method: 'POST', json: DEMO })],
        ['/links/download', () => call(app.url, '/links/download?path=/api/public/files/report.pdf', { cookie, csrf: false })],
      ];
      for (const [name, check] of checks) {
        const res = await check();
        timings[name] = res.ms;
        expect({ name, status: res.status, body: res.body }).toEqual({
          name,
          status: 503,
          body: { error: 'session_store_unavailable', message: expect.any(String) },
        });
        expect(res.headers.get('content-type')).toMatch(/^application\/json/);
        expect({ name, fast: res.ms < 1500 }).toEqual({ name, fast: true });
      }
      expect((await call(app.url, '/healthz', { csrf: false })).status).toBe(200);
      const ready = await call(app.url, '/readyz', { csrf: false });
      expect(ready.status).toBe(503);
      expect(ready.ms).toBeLessThan(1500);
    } finally {
      h.redis.resume();
    }

    const recovered = await recoveryMs(app, cookie, 5000);
    expect(recovered).toBeGreaterThanOrEqual(0);
    // Both records survived: nothing queued during the hang deleted them once Redis ran again.
    expect(await h.inspect.exists(`cr:sess:${sid}`, `cr:tok:${sid}`)).toBe(2);
    const session = await call(app.url, '/auth/session', { cookie, csrf: false });
    expect(session.body.authenticated).toBe(true);
    expect((await call(app.url, '/readyz', { csrf: false })).status).toBe(200);
    process.stdout.write(`hung-redis figures: 503 after ${JSON.stringify(timings)} ms; same session answered 200 ${recovered} ms after SIGCONT\n`);
  });

  it('store_hanging_while_a_refresh_is_upstream_answers_503_and_does_not_delete_the_session', async () => {
    const { cookie, sid } = await signIn(app);
    h.upstream.expireAllAccessTokens();
    h.upstream.refreshDelayMs = 600;
    let res: Answer;
    try {
      const pending = call(app.url, '/api/echo/mid-refresh', { cookie });
      await sleep(200); // the refresh is now upstream, lock held
      h.redis.pause();
      res = await pending;
    } finally {
      h.redis.resume();
      h.upstream.refreshDelayMs = 0;
    }
    expect(res.status).toBe(503);
    expect(res.body.error).toBe('session_store_unavailable');
    // Whatever reached Redis before the hang (and runs after SIGCONT) must not end the session.
    expect(await recoveryMs(app, cookie, 5000)).toBeGreaterThanOrEqual(0);
    const now = await stored(sid);
    expect(now?.refreshToken).toBe(h.upstream.liveRefreshToken(now?.clientId ?? ''));
    expect((await call(app.url, '/auth/session', { cookie, csrf: false })).body.authenticated).toBe(true);
  });
});

describe('token endpoint faults during sign-in', () => {
  it.each(['garbage', 'http500', 'reset'] as const)('login_when_the_token_endpoint_answers_%s_fails_with_502_and_creates_no_session', async (fault) => {
    const keysBefore = await sessionKeyCount();
    const throttleBefore = await throttleCount();
    flaky.tokenFault = fault;
    try {
      const res = await fetch(`${viaFlaky.url}/auth/login`, {
        method: 'POST',
        headers: { 'x-csrf': '1', 'content-type': 'application/json' },
        body: JSON.stringify(DEMO),
      });
      expect(res.status).toBe(502);
      expect(await res.json()).toEqual({ error: 'upstream_unavailable', message: expect.any(String) });
      expect(res.headers.getSetCookie()).toEqual([]);
    } finally {
      flaky.tokenFault = 'pass';
    }
    expect(await sessionKeyCount()).toBe(keysBefore);
    // An upstream failure is not a wrong password: nothing counted towards the throttle.
    expect(await throttleCount()).toBe(throttleBefore);
  });

  it('login_when_the_token_endpoint_hangs_fails_with_504_within_the_timeout_and_creates_no_session', async () => {
    const keysBefore = await sessionKeyCount();
    flaky.tokenFault = 'hang';
    let res: Answer;
    try {
      res = await call(viaFlaky.url, '/auth/login', { method: 'POST', json: DEMO });
    } finally {
      flaky.tokenFault = 'pass';
    }
    expect(res.status).toBe(504);
    expect(res.body).toEqual({ error: 'upstream_timeout', message: expect.any(String) });
    expect(res.headers.get('set-cookie')).toBeNull();
    expect(res.ms).toBeGreaterThanOrEqual(900);
    expect(res.ms).toBeLessThan(2500);
    expect(await sessionKeyCount()).toBe(keysBefore);
  });

  it('login_when_the_upstream_refuses_connections_fails_with_502_and_creates_no_session', async () => {
    const dead = await h.start({ UPSTREAM_URL: `http://127.0.0.1:${await freePort()}` });
    const keysBefore = await sessionKeyCount();
    const res = await call(dead.url, '/auth/login', { method: 'POST', json: DEMO });
    expect(res.status).toBe(502);
    expect(res.body.error).toBe('upstream_unavailable');
    expect(res.headers.get('set-cookie')).toBeNull();
    expect(await sessionKeyCount()).toBe(keysBefore);
  });

  it('login_through_the_faulty_proxy_works_again_once_the_token_endpoint_recovers', async () => {
    const { cookie } = await signIn(viaFlaky);
    expect((await call(viaFlaky.url, '/api/echo/ok', { cookie })).status).toBe(200);
  });
});

/** A raw GET that reports whether the body arrived whole, instead of throwing on a cut. */
function rawGet(base: string, path: string, headers: IncomingHttpHeaders): Promise<{ status: number; complete: boolean; bytes: number; ms: number }> {
  const { hostname, port } = new URL(base);
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: hostname, port, path, headers, agent: false }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        bytes += c.length;
      });
      res.on('error', () => undefined);
      res.on('close', () => resolve({ status: res.statusCode ?? 0, complete: res.complete, bytes, ms: Date.now() - started }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('stalling upstream bodies (UPSTREAM_TIMEOUT=1)', () => {
  it('slow_json_body_is_answered_504_upstream_timeout_and_the_process_keeps_serving', async () => {
    const { cookie } = await signIn(app);
    const res = await call(app.url, '/api/slow-body?ms=3000', { cookie });
    // JSON answers are inspected for token fields before any header goes out, so a stall is still a clean 504.
    expect(res.status).toBe(504);
    expect(res.body).toEqual({ error: 'upstream_timeout', message: expect.any(String) });
    expect(res.ms).toBeLessThan(2500);
    expect((await call(app.url, '/api/echo/still-alive', { cookie })).status).toBe(200);
  });

  it('slow_streamed_body_is_cut_for_the_browser_after_the_timeout_and_the_process_keeps_serving', async () => {
    const { cookie } = await signIn(viaFlaky);
    const res = await rawGet(viaFlaky.url, '/api/slow-stream?ms=3000', { cookie, 'x-csrf': '1' });
    // Headers were already out: the only honest signal left is a broken body.
    expect(res.status).toBe(200);
    expect(res.complete).toBe(false);
    expect(res.bytes).toBeLessThan(2048);
    expect(res.ms).toBeLessThan(2500);
    expect((await call(viaFlaky.url, '/api/echo/still-alive', { cookie })).status).toBe(200);
    expect((await call(viaFlaky.url, '/healthz', { csrf: false })).status).toBe(200);
  });

  it('refresh_hanging_upstream_answers_504_upstream_timeout_quickly_and_the_session_stays_usable', async () => {
    const { cookie, sid } = await signIn(app);
    h.upstream.expireAllAccessTokens();
    h.upstream.faults.refresh.push('hang');
    const res = await call(app.url, '/api/echo/refresh-hangs', { cookie });
    expect(res.status).toBe(504);
    expect(res.body).toEqual({ error: 'upstream_timeout', message: expect.any(String) });
    expect(res.ms).toBeGreaterThanOrEqual(900);
    expect(res.ms).toBeLessThan(3000);
    expect(await h.inspect.exists(`cr:tok:${sid}`)).toBe(1);
    // The lock is released: the next request refreshes at once instead of waiting out the lease.
    const next = await call(app.url, '/api/echo/after-hang', { cookie });
    expect(next.status).toBe(200);
    expect(next.ms).toBeLessThan(1000);
  });
});

describe('consistency of rotated tokens', () => {
  it('after_a_refreshing_request_returns_200_redis_already_holds_the_live_refresh_token', async () => {
    const { cookie, sid } = await signIn(app);
    const before = await stored(sid);
    h.upstream.expireAllAccessTokens();
    const grants = h.upstream.stats.refreshGrants;
    const res = await call(app.url, '/api/echo/rotate', { cookie });
    expect(res.status).toBe(200);
    // Read at once, before anything else can run: the write preceded the answer.
    const after = await stored(sid);
    expect(h.upstream.stats.refreshGrants).toBe(grants + 1);
    expect(after?.version).toBe((before?.version ?? 0) + 1);
    expect(after?.refreshToken).not.toBe(before?.refreshToken);
    expect(after?.refreshToken).toBe(h.upstream.liveRefreshToken(after?.clientId ?? ''));
  });

  it('two_clients_replacing_tokens_with_the_same_expected_version_give_exactly_one_ok_and_the_winner_is_stored', async () => {
    const clients = [new Redis(h.redis.port, '127.0.0.1'), new Redis(h.redis.port, '127.0.0.1')] as const;
    try {
      const [one, two] = clients.map((c) => createRedisTokenStore(c));
      if (!one || !two) throw new Error('stores not created');
      const record = (version: number, sealed: string): TokenRecord => ({ version, absoluteExpiresAt: Date.now() + 60_000, accessExpiresAt: Date.now() + 30_000, refreshAt: Date.now() + 15_000, sealed });
      for (let round = 0; round < 25; round += 1) {
        const sid = newSessionId();
        await one.createTokens(sid, record(1, 'initial'), 60_000);
        const mine = record(2, `from-one-${round}`);
        const theirs = record(2, `from-two-${round}`);
        const outcomes = await Promise.all([one.replaceTokens(sid, 1, mine), two.replaceTokens(sid, 1, theirs)]);
        expect([...outcomes].sort()).toEqual(['conflict', 'ok']);
        const winner = outcomes[0] === 'ok' ? mine : theirs;
        expect(await one.readTokens(sid)).toEqual(winner);
        // The loser retrying with its stale version still cannot overwrite the newest tokens.
        expect(await two.replaceTokens(sid, 1, record(2, 'stale'))).toBe('conflict');
        expect(await two.readTokens(sid)).toEqual(winner);
        await one.destroy(sid);
        expect(await one.replaceTokens(sid, 2, record(3, 'after-logout'))).toBe('gone');
        expect(await one.readTokens(sid)).toBeNull();
      }
    } finally {
      for (const c of clients) c.disconnect();
    }
  });
});
