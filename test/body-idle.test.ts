import { request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import type { TokenAccess } from '../src/core/token-access.js';
import type { SessionTokens } from '../src/core/token-vault.js';
import { createCloakroomServer } from '../src/http/server.js';
import { sendError } from '../src/http/respond.js';
import { createLogger } from '../src/logger.js';
import { createApiProxy } from '../src/proxy/api-proxy.js';
import { createUpstreamClient, type UpstreamClient } from '../src/upstream/client.js';
import { startFakeUpstream, type FakeUpstream } from '../scripts/fake-upstream/index.js';

/**
 * The request-body idle bound, on the proxy alone (a short bound; the app's is 15 s): a body
 * that stops arriving frees its connection; one that keeps arriving slowly is not cut.
 */
const IDLE_MS = 300;

let upstream: FakeUpstream;
let client: UpstreamClient;
let server: Server;
let base: { host: string; port: number };

const TOKENS: SessionTokens = Object.freeze({
  version: 1,
  absoluteExpiresAt: Date.now() + 3_600_000,
  accessExpiresAt: Date.now() + 3_600_000,
  refreshAt: Date.now() + 3_600_000,
  accessToken: 'at_body-idle-test-0123456789abcdef',
  refreshToken: null,
  clientId: 'body-idle-test',
});

beforeAll(async () => {
  upstream = await startFakeUpstream();
  client = createUpstreamClient(upstream.url, 5000);
  const tokens = { currentTokens: async () => TOKENS, tokensNow: () => undefined, tokensAfterRejection: async () => TOKENS } as unknown as TokenAccess;
  const proxy = createApiProxy({ upstream: client, tokens, readSessionId: () => 'sid', bodyIdleTimeoutMs: IDLE_MS });
  const logger = createLogger('silent', new Writable({ write: (_c, _e, cb) => cb() }));
  server = createCloakroomServer((req, res) => {
    proxy(req, res).catch((err: unknown) => sendError(req, res, err, logger));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = { host: '127.0.0.1', port: (server.address() as AddressInfo).port };
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await client.close();
  await upstream.close();
});
beforeEach(() => upstream.reset());

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

type Outcome = { kind: 'answer'; status: number; body: string; ms: number } | { kind: 'cut'; ms: number } | { kind: 'still-open' };

/** Sends `parts` (bytes, or pauses in ms) of a body declared `length` long (chunked when null), then waits up to `waitMs`. */
function send(path: string, length: number | null, parts: (Buffer | number)[], waitMs: number): Promise<Outcome> {
  const started = Date.now();
  return new Promise((resolve) => {
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
    if (length !== null) headers['content-length'] = String(length);
    const req = httpRequest({ ...base, path, method: 'POST', headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ kind: 'answer', status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), ms: Date.now() - started }));
      res.on('error', () => resolve({ kind: 'cut', ms: Date.now() - started }));
    });
    req.on('error', () => resolve({ kind: 'cut', ms: Date.now() - started }));
    const timer = setTimeout(() => {
      resolve({ kind: 'still-open' });
      req.destroy();
    }, waitMs);
    req.on('close', () => clearTimeout(timer));
    void (async () => {
      for (const part of parts) {
        if (typeof part === 'number') await sleep(part);
        else if (!req.destroyed) req.write(part);
      }
      if (length === null || parts.every((p) => typeof p !== 'number')) req.end();
    })();
  });
}

describe('request body idle bound', () => {
  it('a_small_body_that_stops_arriving_is_answered_408_and_nothing_goes_upstream', async () => {
    const outcome = await send('/api/echo/stalled', 100, [Buffer.alloc(10, 1)], 3000);
    expect(outcome).toMatchObject({ kind: 'answer', status: 408 });
    if (outcome.kind === 'answer') expect(JSON.parse(outcome.body)).toEqual({ error: 'request_timeout', message: expect.any(String) });
    expect(upstream.requests).toHaveLength(0);
  });

  it('a_chunked_body_that_stops_arriving_is_answered_408', async () => {
    const outcome = await send('/api/echo/stalled-chunked', null, [Buffer.alloc(10, 1), 3000], 3000);
    expect(outcome).toMatchObject({ kind: 'answer', status: 408 });
    expect(upstream.requests).toHaveLength(0);
  });

  it('a_large_streamed_body_that_stops_arriving_has_its_connection_cut', async () => {
    const outcome = await send('/api/echo/stalled-large', 4 << 20, [Buffer.alloc(2 << 20, 1)], 3000);
    expect(outcome.kind).toBe('cut');
    // Upstream may have seen the start of it, never the whole.
    expect(upstream.requests.filter((r) => r.url === '/api/echo/stalled-large' && r.body.length === 4 << 20)).toHaveLength(0);
  });

  it('a_large_body_that_stops_after_the_replay_limit_has_its_connection_cut', async () => {
    // Chunked, so cloakroom only learns it is large once 1 MiB has arrived.
    const outcome = await send('/api/echo/stalled-over-limit', null, [Buffer.alloc(1536 * 1024, 1), 3000], 3000);
    expect(outcome.kind).toBe('cut');
  });

  it('a_body_that_keeps_arriving_slowly_is_not_cut', async () => {
    const piece = Buffer.alloc(100, 2);
    const parts: (Buffer | number)[] = [];
    for (let i = 0; i < 8; i += 1) parts.push(piece, IDLE_MS / 2);
    const outcome = await send('/api/echo/slow-but-steady', null, parts, 5000);
    // Upstream's own answer (a 401: it does not know this test's bearer), after the whole body.
    expect(outcome).toMatchObject({ kind: 'answer', status: 401 });
    expect(upstream.requests.find((r) => r.url === '/api/echo/slow-but-steady')?.body.length).toBe(800);
  });
});
