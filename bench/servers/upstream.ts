/**
 * The minimal fast upstream: the speed ceiling every proxy is measured against.
 *
 * - `GET /api/*` with a bearer of the current generation: a fixed 1 KB JSON body.
 * - `POST /api/token`: Nexudus-style form grants (password, refresh_token); refresh tokens
 *   are single-use and a configurable delay stands in for a real token endpoint.
 * - `GET /api/auth/me`: the profile cloakroom's Nexudus dialect fetches at sign-in.
 *
 * Validation is deliberately shallow (a prefix compare), except that refresh tokens are
 * tracked exactly: the storm check counts refresh grants and catches a reused one.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { randomBytes } from 'node:crypto';
import { DEMO_USERS } from '../../scripts/fake-upstream/index.js';
import { oneKilobyteJson } from '../lib/body.js';
import type { UpstreamCounters } from '../lib/protocol.js';
import { runChild } from './child.js';

const BODY = oneKilobyteJson();
const DATA_HEADERS = { 'content-type': 'application/json; charset=utf-8', 'content-length': String(BODY.length) };
const DENIED = Buffer.from('{"Message":"Authorization has been denied for this request."}');

let generation = 0;
let bearerPrefix = `Bearer at_${generation}.`;
let accessTtlSeconds = 3600;
let refreshDelayMs = 50;
const counters: UpstreamCounters = { apiCalls: 0, rejected: 0, passwordGrants: 0, refreshGrants: 0, refreshReuse: 0, me: 0, lastRefreshStartMs: 0, lastRefreshEndMs: 0, firstApiCallMs: 0 };
const epochMs = () => performance.timeOrigin + performance.now();
/** Live refresh tokens: token -> client id and user. */
const refreshTokens = new Map<string, { clientId: string; userId: number }>();

const newAccessToken = () => `at_${generation}.${randomBytes(24).toString('base64url')}`;

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(text)) });
  res.end(text);
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function tokenPair(clientId: string, userId: number) {
  const refresh = `rt_${randomBytes(24).toString('base64url')}`;
  refreshTokens.set(refresh, { clientId, userId });
  return { access_token: newAccessToken(), token_type: 'bearer', expires_in: accessTtlSeconds, refresh_token: refresh };
}

async function tokenEndpoint(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const form = new URLSearchParams(await readBody(req));
  const header = req.headers['client_id'];
  const clientId = Array.isArray(header) ? header[0] : header;
  if (form.get('grant_type') === 'password') {
    counters.passwordGrants++;
    const user = DEMO_USERS.find((u) => u.email === form.get('username') && u.password === form.get('password'));
    if (!user) return json(res, 400, { error: 'invalid_grant', error_description: 'The user name or password is incorrect.' });
    return json(res, 200, tokenPair(clientId ?? user.email, user.id));
  }
  if (form.get('grant_type') === 'refresh_token') {
    counters.refreshGrants++;
    counters.lastRefreshStartMs = epochMs();
    if (refreshDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, refreshDelayMs));
    const token = form.get('refresh_token') ?? '';
    const rec = refreshTokens.get(token);
    if (!rec || rec.clientId !== clientId) {
      counters.refreshReuse++;
      return json(res, 400, { error: 'invalid_grant' });
    }
    refreshTokens.delete(token);
    counters.lastRefreshEndMs = epochMs();
    return json(res, 200, tokenPair(rec.clientId, rec.userId));
  }
  return json(res, 400, { error: 'unsupported_grant_type' });
}

const server = createServer((req, res) => {
  const url = req.url ?? '/';
  if (url === '/api/token' && req.method === 'POST') {
    tokenEndpoint(req, res).catch(() => json(res, 500, { error: 'server_error' }));
    return;
  }
  if (!url.startsWith('/api/')) return json(res, 404, { Message: 'Not found' });
  const auth = req.headers.authorization;
  if (auth === undefined || !auth.startsWith(bearerPrefix)) {
    counters.rejected++;
    res.writeHead(401, { 'content-type': 'application/json; charset=utf-8', 'content-length': String(DENIED.length), 'www-authenticate': 'Bearer' });
    res.end(DENIED);
    return;
  }
  if (url === '/api/auth/me') {
    counters.me++;
    const user = DEMO_USERS[0];
    return json(res, 200, { Id: user?.id, Email: user?.email, FullName: user?.fullName, AccessToken: auth.slice(7) });
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') return json(res, 405, { Message: 'GET only' });
  if (counters.apiCalls++ === 0) counters.firstApiCallMs = epochMs();
  res.writeHead(200, DATA_HEADERS);
  res.end(BODY);
});

await runChild(server, {
  control: (op, args) => {
    switch (op) {
      case 'counters':
        return { ...counters };
      case 'resetCounters':
        for (const k of Object.keys(counters) as (keyof UpstreamCounters)[]) counters[k] = 0;
        return { ...counters };
      case 'configure':
        if (typeof args['accessTtlSeconds'] === 'number') accessTtlSeconds = args['accessTtlSeconds'];
        if (typeof args['refreshDelayMs'] === 'number') refreshDelayMs = args['refreshDelayMs'];
        return { accessTtlSeconds, refreshDelayMs };
      case 'bearer':
        // A token the bare proxy and the direct runs can present (no session behind it).
        return newAccessToken();
      case 'revokeAll':
        // Every access token issued so far is now answered 401 (an upstream-side revocation).
        generation++;
        bearerPrefix = `Bearer at_${generation}.`;
        return generation;
      default:
        throw new Error(`unknown op ${op}`);
    }
  },
});
