/**
 * In-process fake of the Nexudus API (seeds 000-003) plus the generic JSON refresh
 * dialect (seed 004), for the test suite and `npm run demo`.
 *
 * It is deliberately strict where the seeds are strict (form encoding on /api/token,
 * one live refresh token per client_id, single-use refresh tokens), because a lenient
 * fake would hide exactly the bugs a token proxy is likely to have.
 *
 * One file per seed's behaviour (one-time-token: 000, media-token: 001, nexudus-token and
 * nexudus-profile: 002/003, json-refresh: 004), the test hooks and test-only routes apart
 * (test-hooks, test-endpoints); this file routes and owns the server.
 */
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { pathToFileURL } from 'node:url';
import { createAccounts, DEMO_USERS, type FakeUser } from './accounts.js';
import type { FakeContext, FakeSettings } from './context.js';
import { DENIED, methodNotAllowed, readBody, sendJson, sendText } from './http.js';
import { createJsonRefresh } from './json-refresh.js';
import { createMediaTokens } from './media-token.js';
import { nexudusProfile } from './nexudus-profile.js';
import { createNexudusTokens } from './nexudus-token.js';
import { createOneTimeTokens, PORTAL_LOGIN_PATH } from './one-time-token.js';
import { serveTestEndpoint } from './test-endpoints.js';
import { createTestHooks, type DownloadProgress, type FakeUpstreamStats, type RecordedRequest, type RefreshFault } from './test-hooks.js';

export { DEMO_USERS, type FakeUser } from './accounts.js';
export type { DownloadProgress, FakeUpstreamStats, RecordedRequest, RefreshFault } from './test-hooks.js';

export interface FakeUpstreamOptions {
  users?: FakeUser[];
  accessTokenTtlSeconds?: number;
  refreshTokenTtlSeconds?: number;
  host?: string;
  port?: number;
}

export interface FakeUpstream {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
  issuedTokens(): string[];
  readonly stats: FakeUpstreamStats;
  readonly requests: RecordedRequest[];
  /** `/api/download?size=N` answers, newest last: how far each got (it honours backpressure). */
  readonly downloads: DownloadProgress[];
  accessTokenTtlSeconds: number;
  refreshTokenTtlSeconds: number;
  mediaTokenTtlSeconds: number;
  refreshDelayMs: number;
  oneTimeTokenFails: boolean;
  faults: { refresh: RefreshFault[] };
  expireAllAccessTokens(): void;
  /** An access token this API accepts, for a token issued elsewhere (the fake OIDC provider). */
  mintAccessToken(email: string, ttlSeconds: number): string;
  /** A token issued elsewhere that must never reach the browser, logs or Redis in clear text. */
  noteIssued(token: string): void;
  /** A demo user by email (case-insensitive). */
  user(email: string): FakeUser | undefined;
  liveRefreshToken(clientId: string): string | undefined;
  issueExchangeJwt(email: string): string;
  reset(): void;
}

const DEFAULT_ACCESS_TTL_S = 3600;
// Seed 002: "Refresh Tokens are valid for 15 days."
const DEFAULT_REFRESH_TTL_S = 15 * 24 * 3600;
// Seed 001 only says "short-lived"; five minutes is what the brief asks for.
const DEFAULT_MEDIA_TTL_S = 300;

export async function startFakeUpstream(opts: FakeUpstreamOptions = {}): Promise<FakeUpstream> {
  const settings: FakeSettings = {
    accessTokenTtlSeconds: opts.accessTokenTtlSeconds ?? DEFAULT_ACCESS_TTL_S,
    refreshTokenTtlSeconds: opts.refreshTokenTtlSeconds ?? DEFAULT_REFRESH_TTL_S,
    mediaTokenTtlSeconds: DEFAULT_MEDIA_TTL_S,
  };
  const ctx: FakeContext = { accounts: createAccounts(opts.users ?? DEMO_USERS), hooks: createTestHooks(), settings };
  const { accounts, hooks } = ctx;
  const nexudus = createNexudusTokens(ctx);
  const oneTime = createOneTimeTokens(ctx, nexudus);
  const media = createMediaTokens(ctx);
  const json = createJsonRefresh(ctx);

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const record = hooks.record(req);
    const body = await readBody(req);
    record.body = body;
    if (hooks.closed || res.destroyed) return;

    const rawUrl = record.url;
    const q = rawUrl.indexOf('?');
    // Routing on the raw path (no dot-segment normalisation), so a proxy that lets
    // `/api/echo/../token` through is seen doing exactly that.
    const path = q === -1 ? rawUrl : rawUrl.slice(0, q);
    const query = new URLSearchParams(q === -1 ? '' : rawUrl.slice(q + 1));
    const method = record.method;

    if (path === '/api/token') {
      if (method !== 'POST') return methodNotAllowed(res, method);
      return nexudus.tokenEndpoint(req, res, body);
    }
    if (path === '/api/login') {
      if (method !== 'POST') return methodNotAllowed(res, method);
      return json.login(res, body);
    }
    if (path === '/api/login/refresh-token') {
      if (method !== 'POST') return methodNotAllowed(res, method);
      return json.refresh(req, res, body);
    }
    if (path === '/api/sys/users/exchange') {
      if (method !== 'POST') return methodNotAllowed(res, method);
      return oneTime.exchange(req, res, query);
    }
    const invoice = /^\/api\/public\/billing\/invoices\/([^/]+)\/pdf$/.exec(path);
    if (invoice?.[1] !== undefined) {
      if (!media.mediaAllowed(req, query)) return sendJson(res, 401, DENIED);
      return sendText(res, 200, `%PDF-1.4 fake invoice ${invoice[1]}`, 'application/pdf');
    }
    const file = /^\/api\/public\/files\/(.+)$/.exec(path);
    if (file?.[1] !== undefined) {
      if (!media.mediaAllowed(req, query)) return sendJson(res, 401, DENIED);
      return sendText(res, 200, `fake file ${file[1]}`, 'application/octet-stream');
    }
    // The portal's pages, not the API (`/api/login` is the json dialect's sign-in).
    if (!path.startsWith('/api/') && PORTAL_LOGIN_PATH.test(path)) {
      if (method !== 'GET') return methodNotAllowed(res, method);
      return oneTime.portalLogin(res, query);
    }
    if (!path.startsWith('/api/')) {
      return sendJson(res, 404, { Message: 'Not found' });
    }

    const auth = accounts.bearerUser(req);
    if (auth === undefined) return sendJson(res, 401, DENIED, { 'WWW-Authenticate': 'Bearer' });
    hooks.stats.apiCalls++;
    if (path === '/api/auth/me') {
      if (method !== 'GET') return methodNotAllowed(res, method);
      return sendJson(res, 200, nexudusProfile(auth.user, auth.token));
    }
    if (path === '/api/auth/media/customer') {
      if (method !== 'GET') return methodNotAllowed(res, method);
      return media.mediaToken(res, auth.user);
    }
    if (path === '/api/sys/users/token/refresh') {
      if (method !== 'POST') return methodNotAllowed(res, method);
      return oneTime.oneTimeToken(res, auth.user);
    }
    if (await serveTestEndpoint(hooks, { req, res, method, rawUrl, path, query, body })) return;
    return sendJson(res, 404, { Message: `No HTTP resource was found that matches the request URI '${path}'.` });
  };

  const host = opts.host ?? '127.0.0.1';
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) sendText(res, 500, 'fake upstream internal error');
      else res.destroy();
    });
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('error', () => { /* peers vanish mid-test on purpose; nothing to report */ });
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('fake upstream: no TCP address');
  const port = addr.port;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;

  return {
    url,
    port,
    async close() {
      if (hooks.closed) return;
      hooks.close();
      const closing = new Promise<void>((resolve) => server.close(() => resolve()));
      // 'hang' faults and keep-alive connections would otherwise keep close() waiting forever.
      for (const s of sockets) s.destroy();
      sockets.clear();
      await closing;
    },
    issuedTokens: () => accounts.issued(),
    stats: hooks.stats,
    requests: hooks.requests,
    downloads: hooks.downloads,
    get accessTokenTtlSeconds() { return settings.accessTokenTtlSeconds; },
    set accessTokenTtlSeconds(v) { settings.accessTokenTtlSeconds = v; },
    get refreshTokenTtlSeconds() { return settings.refreshTokenTtlSeconds; },
    set refreshTokenTtlSeconds(v) { settings.refreshTokenTtlSeconds = v; },
    get mediaTokenTtlSeconds() { return settings.mediaTokenTtlSeconds; },
    set mediaTokenTtlSeconds(v) { settings.mediaTokenTtlSeconds = v; },
    get refreshDelayMs() { return hooks.refreshDelayMs; },
    set refreshDelayMs(v) { hooks.refreshDelayMs = v; },
    get oneTimeTokenFails() { return hooks.oneTimeTokenFails; },
    set oneTimeTokenFails(v) { hooks.oneTimeTokenFails = v; },
    get faults() { return hooks.faults; },
    set faults(v) { hooks.faults = v; },
    expireAllAccessTokens: () => accounts.revokeAllAccessTokens(),
    mintAccessToken(email, ttlSeconds) {
      const user = accounts.byEmail(email);
      if (!user) throw new Error(`fake upstream: no user ${email}`);
      return accounts.newAccessToken(user.id, ttlSeconds);
    },
    noteIssued: (token) => accounts.remember(token),
    user: (email) => accounts.byEmail(email),
    liveRefreshToken: (clientId) => nexudus.liveRefreshToken(clientId),
    issueExchangeJwt: (email) => oneTime.issueExchangeJwt(email),
    reset: () => hooks.reset(),
  };
}

const entry = process.argv[1];
if (entry !== undefined && import.meta.url === pathToFileURL(entry).href) {
  const port = Number.parseInt(process.env['PORT'] ?? '4000', 10);
  const fake = await startFakeUpstream({ port, host: process.env['HOST'] ?? '127.0.0.1' });
  process.stdout.write(`fake upstream listening on ${fake.url}\n`);
  for (const u of DEMO_USERS) {
    const extra = [u.totp !== undefined ? `totp ${u.totp}` : '', u.mustResetPassword === true ? 'must reset password' : ''].filter(Boolean).join(', ');
    process.stdout.write(`  ${u.email} / ${u.password}${extra ? ` (${extra})` : ''}\n`);
  }
  const stop = (): void => {
    void fake.close().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
