/**
 * In-process fake of the Nexudus API (seeds 000-003) plus the generic JSON refresh
 * dialect (seed 004), for the test suite and `npm run demo`.
 *
 * It is deliberately strict where the seeds are strict (form encoding on /api/token,
 * one live refresh token per client_id, single-use refresh tokens), because a lenient
 * fake would hide exactly the bugs a token proxy is likely to have.
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { pathToFileURL } from 'node:url';

export interface FakeUser {
  id: number;
  email: string;
  password: string;
  fullName: string;
  totp?: string;
  mustResetPassword?: boolean;
}

export interface FakeUpstreamOptions {
  users?: FakeUser[];
  accessTokenTtlSeconds?: number;
  refreshTokenTtlSeconds?: number;
  host?: string;
  port?: number;
}

export interface RecordedRequest {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export type RefreshFault = 'http500' | 'reset' | 'garbage' | 'hang' | 'invalid_grant';

export interface FakeUpstreamStats {
  passwordGrants: number;
  refreshGrants: number;
  jsonLogins: number;
  jsonRefreshes: number;
  mediaTokens: number;
  oneTimeTokens: number;
  exchanges: number;
  apiCalls: number;
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

export interface DownloadProgress {
  size: number;
  sent: number;
  /** The whole body was handed to the socket. */
  finished: boolean;
  /** The connection closed before that: the client (cloakroom) stopped reading. */
  aborted: boolean;
}

export const DEMO_USERS: FakeUser[] = [
  { id: 1001, email: 'demo@example.com', password: 'demo-password', fullName: 'Demo User' },
  { id: 1002, email: 'totp@example.com', password: 'totp-password', fullName: 'Totp User', totp: '123456' },
  { id: 1003, email: 'reset@example.com', password: 'reset-password', fullName: 'Reset User', mustResetPassword: true },
  { id: 1004, email: 'other@example.com', password: 'other-password', fullName: 'Other User' },
];

const DEFAULT_ACCESS_TTL_S = 3600;
// Seed 002: "Refresh Tokens are valid for 15 days."
const DEFAULT_REFRESH_TTL_S = 15 * 24 * 3600;
// Seed 001 only says "short-lived"; five minutes is what the brief asks for.
const DEFAULT_MEDIA_TTL_S = 300;
const EXCHANGE_JWT_TTL_S = 600;
const DEFAULT_EXCHANGE_MINUTES = 60;
const MAX_RECORDED = 500;
const MAX_DATA_SIZE = 64 * 1024 * 1024;

const DENIED = { Message: 'Authorization has been denied for this request.' };

interface AccessRecord {
  userId: number;
  expiresAt: number;
  revoked: boolean;
}

interface NexudusRefreshRecord {
  clientId: string;
  userId: number;
  expiresAt: number;
}

interface JsonRefreshRecord {
  userId: number;
  expiresAt: number;
}

interface ExchangeJwtRecord {
  email: string;
  expiresAt: number;
  used: boolean;
}

type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

function opaque(prefix: string): string {
  return prefix + randomBytes(32).toString('base64url');
}

function sendJson(res: ServerResponse, status: number, body: JsonValue, headers: Record<string, string | string[]> = {}): void {
  if (res.destroyed || res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': String(Buffer.byteLength(text)),
    ...headers,
  });
  res.end(text);
}

function sendText(res: ServerResponse, status: number, text: string, contentType = 'text/plain; charset=utf-8'): void {
  if (res.destroyed || res.headersSent) return;
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': String(Buffer.byteLength(text)) });
  res.end(text);
}

function mediaType(req: IncomingMessage): string {
  return (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}

function headerValue(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function parseJsonObject(body: Buffer): Record<string, unknown> | undefined {
  try {
    const parsed: unknown = JSON.parse(body.toString('utf8'));
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as Record<string, unknown>;
    return undefined;
  } catch {
    return undefined;
  }
}

function methodNotAllowed(res: ServerResponse, method: string): void {
  sendJson(res, 405, { Message: `The requested resource does not support http method '${method}'.` });
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      resolve(Buffer.concat(chunks));
    };
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', finish);
    // An aborted upload never emits 'end'; whatever arrived is still worth recording.
    req.on('close', finish);
    req.on('error', finish);
  });
}

class FakeUpstreamServer implements FakeUpstream {
  readonly stats: FakeUpstreamStats = {
    passwordGrants: 0, refreshGrants: 0, jsonLogins: 0, jsonRefreshes: 0,
    mediaTokens: 0, oneTimeTokens: 0, exchanges: 0, apiCalls: 0,
  };
  readonly requests: RecordedRequest[] = [];
  readonly downloads: DownloadProgress[] = [];
  accessTokenTtlSeconds: number;
  refreshTokenTtlSeconds: number;
  mediaTokenTtlSeconds = DEFAULT_MEDIA_TTL_S;
  refreshDelayMs = 0;
  oneTimeTokenFails = false;
  faults: { refresh: RefreshFault[] } = { refresh: [] };

  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly usersByEmail = new Map<string, FakeUser>();
  private readonly usersById = new Map<number, FakeUser>();
  private readonly issued: string[] = [];
  private readonly accessTokens = new Map<string, AccessRecord>();
  private readonly nexudusRefresh = new Map<string, NexudusRefreshRecord>();
  private readonly liveByClient = new Map<string, string>();
  private readonly jsonRefresh = new Map<string, JsonRefreshRecord>();
  private readonly exchangeJwts = new Map<string, ExchangeJwtRecord>();
  // Per process so that media JWTs from an earlier run can never verify.
  private readonly jwtKey = randomBytes(32);
  private boundPort = 0;
  private boundHost: string;
  private closed = false;

  constructor(opts: FakeUpstreamOptions) {
    for (const u of opts.users ?? DEMO_USERS) {
      const copy = { ...u };
      this.usersByEmail.set(copy.email.toLowerCase(), copy);
      this.usersById.set(copy.id, copy);
    }
    this.accessTokenTtlSeconds = opts.accessTokenTtlSeconds ?? DEFAULT_ACCESS_TTL_S;
    this.refreshTokenTtlSeconds = opts.refreshTokenTtlSeconds ?? DEFAULT_REFRESH_TTL_S;
    this.boundHost = opts.host ?? '127.0.0.1';
    this.server = createServer((req, res) => {
      this.handle(req, res).catch(() => {
        if (!res.headersSent) sendText(res, 500, 'fake upstream internal error');
        else res.destroy();
      });
    });
    this.server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.on('error', () => { /* peers vanish mid-test on purpose; nothing to report */ });
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  async listen(port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, this.boundHost, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    const addr = this.server.address();
    if (addr === null || typeof addr === 'string') throw new Error('fake upstream: no TCP address');
    this.boundPort = addr.port;
  }

  get port(): number {
    return this.boundPort;
  }

  get url(): string {
    const host = this.boundHost.includes(':') ? `[${this.boundHost}]` : this.boundHost;
    return `http://${host}:${this.boundPort}`;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    const closing = new Promise<void>((resolve) => this.server.close(() => resolve()));
    // 'hang' faults and keep-alive connections would otherwise keep close() waiting forever.
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    await closing;
  }

  issuedTokens(): string[] {
    return [...this.issued];
  }

  expireAllAccessTokens(): void {
    for (const rec of this.accessTokens.values()) rec.revoked = true;
  }

  liveRefreshToken(clientId: string): string | undefined {
    const token = this.liveByClient.get(clientId);
    if (token === undefined) return undefined;
    const rec = this.nexudusRefresh.get(token);
    return rec !== undefined && rec.expiresAt > Date.now() ? token : undefined;
  }

  issueExchangeJwt(email: string): string {
    const user = this.usersByEmail.get(email.toLowerCase());
    if (user === undefined) throw new Error(`fake upstream: no user ${email}`);
    const now = Math.floor(Date.now() / 1000);
    const jwt = this.signJwt({ sub: String(user.id), email: user.email, aud: 'exchange', iat: now, exp: now + EXCHANGE_JWT_TTL_S, jti: randomBytes(8).toString('hex') });
    this.exchangeJwts.set(jwt, { email: user.email, expiresAt: (now + EXCHANGE_JWT_TTL_S) * 1000, used: false });
    this.remember(jwt);
    return jwt;
  }

  mintAccessToken(email: string, ttlSeconds: number): string {
    const user = this.user(email);
    if (!user) throw new Error(`fake upstream: no user ${email}`);
    return this.newAccessToken(user.id, ttlSeconds);
  }

  noteIssued(token: string): void {
    this.remember(token);
  }

  user(email: string): FakeUser | undefined {
    return this.usersByEmail.get(email.toLowerCase());
  }

  reset(): void {
    for (const k of Object.keys(this.stats) as (keyof FakeUpstreamStats)[]) this.stats[k] = 0;
    this.requests.length = 0;
    this.downloads.length = 0;
    // In place, so a test holding the array sees it emptied too.
    this.faults.refresh.splice(0);
    this.oneTimeTokenFails = false;
  }

  // ---- token bookkeeping ---------------------------------------------------

  private remember(token: string): void {
    this.issued.push(token);
  }

  private newAccessToken(userId: number, ttlSeconds: number): string {
    const token = opaque('at_');
    this.accessTokens.set(token, { userId, expiresAt: Date.now() + ttlSeconds * 1000, revoked: false });
    this.remember(token);
    return token;
  }

  /** Seed 002: a new refresh token for a client_id invalidates every earlier one of that client_id. */
  private newNexudusRefreshToken(clientId: string, userId: number): string {
    const previous = this.liveByClient.get(clientId);
    if (previous !== undefined) this.nexudusRefresh.delete(previous);
    const token = opaque('rt_');
    this.nexudusRefresh.set(token, { clientId, userId, expiresAt: Date.now() + this.refreshTokenTtlSeconds * 1000 });
    this.liveByClient.set(clientId, token);
    this.remember(token);
    return token;
  }

  private killClientRefresh(clientId: string | undefined): void {
    if (clientId === undefined) return;
    const token = this.liveByClient.get(clientId);
    if (token !== undefined) this.nexudusRefresh.delete(token);
    this.liveByClient.delete(clientId);
  }

  private newJsonRefreshToken(userId: number): string {
    const token = opaque('rt_');
    this.jsonRefresh.set(token, { userId, expiresAt: Date.now() + this.refreshTokenTtlSeconds * 1000 });
    this.remember(token);
    return token;
  }

  private signJwt(payload: Record<string, JsonValue>): string {
    const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
    const body = b64url(JSON.stringify(payload));
    const sig = createHmac('sha256', this.jwtKey).update(`${head}.${body}`).digest('base64url');
    return `${head}.${body}.${sig}`;
  }

  /** The payload of a JWT this process signed, if the signature holds and it has not expired. */
  private verifyJwt(jwt: string): Record<string, unknown> | undefined {
    const parts = jwt.split('.');
    if (parts.length !== 3) return undefined;
    const [head, body, sig] = parts as [string, string, string];
    const expected = createHmac('sha256', this.jwtKey).update(`${head}.${body}`).digest();
    const given = Buffer.from(sig, 'base64url');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
    let payload: unknown;
    try {
      payload = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
    } catch {
      return undefined;
    }
    if (payload === null || typeof payload !== 'object') return undefined;
    const p = payload as Record<string, unknown>;
    if (typeof p['exp'] !== 'number' || p['exp'] * 1000 <= Date.now()) return undefined;
    return p;
  }

  private bearerUser(req: IncomingMessage): { user: FakeUser; token: string } | undefined {
    const auth = headerValue(req, 'authorization');
    const m = auth === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(auth);
    const token = m?.[1];
    if (token === undefined) return undefined;
    const rec = this.accessTokens.get(token);
    if (rec === undefined || rec.revoked || rec.expiresAt <= Date.now()) return undefined;
    const user = this.usersById.get(rec.userId);
    return user === undefined ? undefined : { user, token };
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.timers.delete(t);
        resolve();
      }, Math.max(0, ms));
      this.timers.add(t);
    });
  }

  /**
   * Shared by both refresh dialects. The fault is taken from the queue when the request
   * arrives, so queued faults hit refreshes in arrival order even with a delay configured.
   * Returns 'invalid_grant' when the caller must refuse, 'handled' when a response (or
   * deliberate non-response) is already taken care of, 'proceed' otherwise.
   */
  private async refreshGate(req: IncomingMessage, res: ServerResponse): Promise<'proceed' | 'handled' | 'invalid_grant'> {
    const fault = this.faults.refresh.shift();
    if (this.refreshDelayMs > 0) await this.sleep(this.refreshDelayMs);
    if (this.closed || res.destroyed) return 'handled';
    switch (fault) {
      case undefined:
        return 'proceed';
      case 'http500':
        sendText(res, 500, 'Internal Server Error');
        return 'handled';
      case 'reset':
        req.socket.destroy();
        return 'handled';
      case 'garbage':
        sendText(res, 200, '{not json', 'application/json; charset=utf-8');
        return 'handled';
      case 'hang':
        // Never answered; close() destroys the socket.
        return 'handled';
      case 'invalid_grant':
        return 'invalid_grant';
    }
  }

  // ---- routing ---------------------------------------------------------------

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const rawUrl = req.url ?? '/';
    const record: RecordedRequest = { method: req.method ?? 'GET', url: rawUrl, headers: { ...req.headers }, body: Buffer.alloc(0) };
    // Recorded on arrival so the order is the order requests came in, not finished uploading.
    this.requests.push(record);
    if (this.requests.length > MAX_RECORDED) this.requests.splice(0, this.requests.length - MAX_RECORDED);
    const body = await readBody(req);
    record.body = body;
    if (this.closed || res.destroyed) return;

    const q = rawUrl.indexOf('?');
    // Routing on the raw path (no dot-segment normalisation), so a proxy that lets
    // `/api/echo/../token` through is seen doing exactly that.
    const path = q === -1 ? rawUrl : rawUrl.slice(0, q);
    const query = new URLSearchParams(q === -1 ? '' : rawUrl.slice(q + 1));
    const method = record.method;

    if (path === '/api/token') {
      if (method !== 'POST') return methodNotAllowed(res, method);
      return this.tokenEndpoint(req, res, body);
    }
    if (path === '/api/login') {
      if (method !== 'POST') return methodNotAllowed(res, method);
      return this.jsonLogin(res, body);
    }
    if (path === '/api/login/refresh-token') {
      if (method !== 'POST') return methodNotAllowed(res, method);
      return this.jsonRefreshEndpoint(req, res, body);
    }
    if (path === '/api/sys/users/exchange') {
      if (method !== 'POST') return methodNotAllowed(res, method);
      return this.exchange(req, res, query);
    }
    const invoice = /^\/api\/public\/billing\/invoices\/([^/]+)\/pdf$/.exec(path);
    if (invoice?.[1] !== undefined) {
      if (!this.mediaAllowed(req, query)) return sendJson(res, 401, DENIED);
      return sendText(res, 200, `%PDF-1.4 fake invoice ${invoice[1]}`, 'application/pdf');
    }
    const file = /^\/api\/public\/files\/(.+)$/.exec(path);
    if (file?.[1] !== undefined) {
      if (!this.mediaAllowed(req, query)) return sendJson(res, 401, DENIED);
      return sendText(res, 200, `fake file ${file[1]}`, 'application/octet-stream');
    }
    if (!path.startsWith('/api/')) {
      return sendJson(res, 404, { Message: 'Not found' });
    }

    const auth = this.bearerUser(req);
    if (auth === undefined) return sendJson(res, 401, DENIED, { 'WWW-Authenticate': 'Bearer' });
    this.stats.apiCalls++;
    return this.authenticated(req, res, method, rawUrl, path, query, body, auth.user, auth.token);
  }

  private async authenticated(
    req: IncomingMessage, res: ServerResponse, method: string, rawUrl: string, path: string,
    query: URLSearchParams, body: Buffer, user: FakeUser, bearer: string,
  ): Promise<void> {
    if (path === '/api/auth/me') {
      if (method !== 'GET') return methodNotAllowed(res, method);
      return sendJson(res, 200, this.profile(user, bearer));
    }
    if (path === '/api/auth/media/customer') {
      if (method !== 'GET') return methodNotAllowed(res, method);
      this.stats.mediaTokens++;
      const now = Math.floor(Date.now() / 1000);
      const jwt = this.signJwt({ sub: String(user.id), aud: 'media', iat: now, exp: now + this.mediaTokenTtlSeconds, jti: randomBytes(8).toString('hex') });
      this.remember(jwt);
      return sendJson(res, 200, { jwt });
    }
    if (path === '/api/sys/users/token/refresh') {
      if (method !== 'POST') return methodNotAllowed(res, method);
      this.stats.oneTimeTokens++;
      // Seed 000: failure is reported inside a 200 envelope, not by the HTTP status.
      if (this.oneTimeTokenFails) {
        return sendJson(res, 200, { WasSuccessful: false, Value: null, Status: 500, Message: 'failed', Errors: null });
      }
      const value = randomBytes(16).toString('hex');
      this.remember(value);
      return sendJson(res, 200, { WasSuccessful: true, Value: value, Status: 200, Message: null, Errors: null });
    }
    if (path === '/api/echo' || path.startsWith('/api/echo/')) {
      return sendJson(res, 200, {
        method,
        url: rawUrl,
        headers: Object.fromEntries(Object.entries(req.headers).filter((e): e is [string, string | string[]] => e[1] !== undefined)),
        body: body.toString('utf8'),
      }, { 'Set-Cookie': 'upstream=1; Path=/', 'X-Upstream': 'echo' });
    }
    if (path === '/api/data') {
      if (method !== 'GET') return methodNotAllowed(res, method);
      const size = Math.min(Math.max(Number.parseInt(query.get('size') ?? '1024', 10) || 0, 0), MAX_DATA_SIZE);
      const head = `{"size":${size},"data":"`;
      const tail = '"}';
      const text = head + 'x'.repeat(Math.max(0, size - head.length - tail.length)) + tail;
      return sendText(res, 200, text, 'application/json; charset=utf-8');
    }
    if (path === '/api/slow-headers') {
      await this.sleep(Number.parseInt(query.get('ms') ?? '1000', 10) || 0);
      return sendJson(res, 200, { ok: true, slow: 'headers' });
    }
    if (path === '/api/slow-body') {
      res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8' });
      res.write('{"ok":true,');
      await this.sleep(Number.parseInt(query.get('ms') ?? '1000', 10) || 0);
      if (!res.destroyed) res.end('"slow":"body"}');
      return;
    }
    if (path === '/api/reset-mid-body') {
      // A Content-Length the body never reaches, so the client cannot mistake it for a complete answer.
      res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': '4096' });
      res.write('{"partial":"');
      await this.sleep(20);
      req.socket.destroy();
      return;
    }
    const status = /^\/api\/status\/(\d{3})$/.exec(path);
    if (status?.[1] !== undefined) {
      const code = Number(status[1]);
      if (code < 200 || code > 599) return sendJson(res, 400, { Message: 'status must be 200-599' });
      if (code === 204 || code === 205 || code === 304) {
        res.writeHead(code);
        res.end();
        return;
      }
      return sendJson(res, code, { status: code });
    }
    if (path === '/api/informational') {
      // 102 Processing and 103 Early Hints before the answer, as some upstreams and CDNs send.
      res.writeProcessing();
      res.writeEarlyHints({ link: '</app.css>; rel=preload; as=style' });
      return sendJson(res, 200, { ok: true, after: 'informational' });
    }
    if (path === '/api/download') {
      // A binary file of `?size=` bytes in 64 KiB pieces, written only as fast as the reader takes them.
      const size = Math.min(Math.max(Number.parseInt(query.get('size') ?? '0', 10) || 0, 0), 256 * 1024 * 1024);
      const progress: DownloadProgress = { size, sent: 0, finished: false, aborted: false };
      this.downloads.push(progress);
      res.on('close', () => {
        if (!progress.finished) progress.aborted = true;
      });
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(size) });
      const piece = Buffer.alloc(64 * 1024, 0x61);
      while (progress.sent < size && !res.destroyed) {
        const n = Math.min(piece.length, size - progress.sent);
        progress.sent += n;
        if (!res.write(n === piece.length ? piece : piece.subarray(0, n))) {
          await new Promise<void>((resolve) => {
            res.once('drain', resolve);
            res.once('close', resolve);
          });
        }
      }
      if (res.destroyed) return;
      progress.finished = true;
      res.end();
      return;
    }
    if (path === '/api/chunked') {
      res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8' });
      // `?items=N` makes a long answer of unknown length (N pieces of 1 KiB), to test size limits.
      const items = Math.min(Number(query.get('items') ?? 0) || 0, 100_000);
      const filler = `"${'x'.repeat(1022)}",`;
      const pieces = items > 0
        ? ['{"chunks":[', ...Array.from({ length: items }, () => filler), '1],"AccessToken":"not-a-real-token","done":true}']
        : ['{"chunks":[', '1,', '2,', '3', '],"done":true}'];
      for (const piece of pieces) {
        if (res.destroyed) return;
        res.write(piece);
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      res.end();
      return;
    }
    return sendJson(res, 404, { Message: `No HTTP resource was found that matches the request URI '${path}'.` });
  }

  /** Media JWTs (seed 001) as `?t=`; a bearer also works when no `t` is given, as the public API would. */
  private mediaAllowed(req: IncomingMessage, query: URLSearchParams): boolean {
    const t = query.get('t');
    if (t === null) {
      if (this.bearerUser(req) === undefined) return false;
      this.stats.apiCalls++;
      return true;
    }
    const payload = this.verifyJwt(t);
    return payload !== undefined && payload['aud'] === 'media' && typeof payload['sub'] === 'string'
      && this.usersById.has(Number(payload['sub']));
  }

  private profile(user: FakeUser, bearer: string): JsonValue {
    const h = createHash('sha256').update(`user:${user.id}`).digest('hex');
    const uniqueId = `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
    return {
      NewPasswordConfirm: null,
      OldPassword: null,
      DefaultBusinessId: 1234566,
      DefaultBusinessName: 'Demo Space',
      DefaultCurrencyId: 3005,
      DefaultCurrencyName: 'UK Pound Sterling (GBP)',
      DefaultCurrencyCode: 'GBP',
      DefaultCountryId: 1221,
      DefaultCountryName: 'United States',
      DefaultSimpleTimeZoneId: 2023,
      DefaultSimpleTimeZoneName: 'GMT Standard Time',
      DefaultSimpleTimeZoneNameIana: 'Europe/London',
      FullName: user.fullName,
      Email: user.email,
      AccessToken: bearer,
      PreferredLanguageId: 287965678,
      NewPassword: null,
      Active: true,
      IsAdmin: false,
      APIAccess: true,
      Validated: true,
      MustResetPassword: user.mustResetPassword === true,
      LastAccess: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
      Businesses: [1234566],
      UserRoles: [],
      Id: user.id,
      UpdatedOn: '2019-05-14T08:22:25Z',
      CreatedOn: '2017-02-24T23:45:48Z',
      UniqueId: uniqueId,
      UpdatedBy: user.email,
      IsNew: false,
      SystemId: null,
      ToStringText: `${user.fullName} - ${user.email}`,
      LocalizationDetails: null,
    };
  }

  // ---- Nexudus /api/token (seeds 002, 003) -------------------------------------

  private async tokenEndpoint(req: IncomingMessage, res: ServerResponse, body: Buffer): Promise<void> {
    // Seed 003: anything but a form body (a JSON one in particular) is unsupported_grant_type.
    if (mediaType(req) !== 'application/x-www-form-urlencoded') {
      return sendJson(res, 400, { error: 'unsupported_grant_type' });
    }
    const form = new URLSearchParams(body.toString('utf8'));
    const grant = form.get('grant_type');
    if (grant === 'password') return this.passwordGrant(req, res, form);
    if (grant === 'refresh_token') return this.refreshGrant(req, res, form);
    return sendJson(res, 400, { error: 'unsupported_grant_type' });
  }

  private passwordGrant(req: IncomingMessage, res: ServerResponse, form: URLSearchParams): void {
    this.stats.passwordGrants++;
    const username = form.get('username') ?? '';
    const password = form.get('password') ?? '';
    const user = this.usersByEmail.get(username.toLowerCase());
    if (user === undefined || user.password !== password) {
      return sendJson(res, 400, { error: 'invalid_grant', error_description: 'The user name or password is incorrect.' });
    }
    // Second factor before the reset demand: the reset token is itself a credential.
    if (user.totp !== undefined && form.get('totp') !== user.totp) {
      return sendJson(res, 400, { error: 'two_factor_auth_check', error_description: 'Two-factor authentication code is missing or invalid.' });
    }
    if (user.mustResetPassword === true) {
      // Deliberately not in issuedTokens(): the BFF hands it to the browser by contract.
      return sendJson(res, 400, { error: 'must_reset_password', error_description: opaque('reset_') });
    }
    // Seed 002: without a client_id header the client id is the email.
    const clientId = headerValue(req, 'client_id') ?? user.email;
    return sendJson(res, 200, this.nexudusTokenPair(user, clientId, this.accessTokenTtlSeconds, 'access_token'));
  }

  private nexudusTokenPair(user: FakeUser, clientId: string, ttlSeconds: number, accessField: 'access_token' | 'token'): JsonValue {
    const access = this.newAccessToken(user.id, ttlSeconds);
    const refresh = this.newNexudusRefreshToken(clientId, user.id);
    return { [accessField]: access, token_type: 'bearer', expires_in: ttlSeconds, refresh_token: refresh };
  }

  private async refreshGrant(req: IncomingMessage, res: ServerResponse, form: URLSearchParams): Promise<void> {
    this.stats.refreshGrants++;
    const clientId = headerValue(req, 'client_id');
    const gate = await this.refreshGate(req, res);
    if (gate === 'handled') return;
    if (gate === 'invalid_grant') {
      this.killClientRefresh(clientId);
      return sendJson(res, 400, { error: 'invalid_grant' });
    }
    // Checked after the delay, so two concurrent refreshes with one token race like they would upstream.
    const token = form.get('refresh_token') ?? '';
    const rec = this.nexudusRefresh.get(token);
    if (clientId === undefined || rec === undefined || rec.clientId !== clientId
      || this.liveByClient.get(clientId) !== token || rec.expiresAt <= Date.now()) {
      return sendJson(res, 400, { error: 'invalid_grant' });
    }
    const user = this.usersById.get(rec.userId);
    if (user === undefined) return sendJson(res, 400, { error: 'invalid_grant' });
    return sendJson(res, 200, this.nexudusTokenPair(user, clientId, this.accessTokenTtlSeconds, 'access_token'));
  }

  private exchange(req: IncomingMessage, res: ServerResponse, query: URLSearchParams): void {
    this.stats.exchanges++;
    const jwt = query.get('token') ?? '';
    const rec = this.exchangeJwts.get(jwt);
    const user = rec === undefined ? undefined : this.usersByEmail.get(rec.email.toLowerCase());
    if (rec === undefined || rec.used || rec.expiresAt <= Date.now() || this.verifyJwt(jwt) === undefined || user === undefined) {
      return sendJson(res, 401, { Message: 'Invalid token' });
    }
    rec.used = true;
    const minutesRaw = Number(query.get('validForInMinutes') ?? DEFAULT_EXCHANGE_MINUTES);
    const minutes = Number.isFinite(minutesRaw) && minutesRaw > 0 ? minutesRaw : DEFAULT_EXCHANGE_MINUTES;
    const clientId = headerValue(req, 'client_id') ?? user.email;
    return sendJson(res, 200, this.nexudusTokenPair(user, clientId, Math.round(minutes * 60), 'token'));
  }

  // ---- JSON dialect (seed 004) ---------------------------------------------------

  private jsonLogin(res: ServerResponse, body: Buffer): void {
    this.stats.jsonLogins++;
    const obj = parseJsonObject(body);
    if (obj === undefined || typeof obj['username'] !== 'string' || typeof obj['password'] !== 'string') {
      return sendJson(res, 400, { code: '400', response: 'Bad Request' });
    }
    const user = this.usersByEmail.get(obj['username'].toLowerCase());
    if (user === undefined || user.password !== obj['password']) {
      return sendJson(res, 401, { code: '401', response: 'Invalid credentials' });
    }
    return sendJson(res, 200, this.jsonTokenPair(user));
  }

  private jsonTokenPair(user: FakeUser): JsonValue {
    const ttl = this.accessTokenTtlSeconds;
    return { accessToken: this.newAccessToken(user.id, ttl), refreshToken: this.newJsonRefreshToken(user.id), expiresIn: ttl, tokenType: 'Bearer' };
  }

  private async jsonRefreshEndpoint(req: IncomingMessage, res: ServerResponse, body: Buffer): Promise<void> {
    this.stats.jsonRefreshes++;
    const obj = parseJsonObject(body);
    if (obj === undefined) return sendJson(res, 400, { code: '400', response: 'Bad Request' });
    const token = typeof obj['refreshToken'] === 'string' ? obj['refreshToken'] : '';
    const gate = await this.refreshGate(req, res);
    if (gate === 'handled') return;
    const rec = this.jsonRefresh.get(token);
    if (gate === 'invalid_grant' || rec === undefined || rec.expiresAt <= Date.now()) {
      this.jsonRefresh.delete(token);
      return sendJson(res, 401, { code: '401', response: 'RefreshToken Expired' });
    }
    const user = this.usersById.get(rec.userId);
    this.jsonRefresh.delete(token);
    if (user === undefined) return sendJson(res, 401, { code: '401', response: 'RefreshToken Expired' });
    return sendJson(res, 200, this.jsonTokenPair(user));
  }
}

export async function startFakeUpstream(opts: FakeUpstreamOptions = {}): Promise<FakeUpstream> {
  const fake = new FakeUpstreamServer(opts);
  await fake.listen(opts.port ?? 0);
  return fake;
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
