/**
 * The hand-assembled reference BFF, for comparison only: express 5 + express-session +
 * connect-redis 8 + http-proxy-middleware 3, rolling sessions (so every request costs a
 * session GET and an EXPIRE), tokens kept in the session record, a keep-alive agent
 * towards the upstream. It is what one writes from the libraries' READMEs.
 */
import http from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import session from 'express-session';
import { RedisStore } from 'connect-redis';
import { createProxyMiddleware } from 'http-proxy-middleware';
import { Redis } from 'ioredis';
import { request } from 'undici';
import { runChild } from './child.js';

interface RefTokens {
  access: string;
  refresh: string | null;
  expiresAt: number;
}

const upstreamUrl = process.env['BENCH_UPSTREAM_URL'];
const redisUrl = process.env['BENCH_REDIS_URL'];
const secret = process.env['BENCH_SESSION_SECRET'];
if (!upstreamUrl || !redisUrl || !secret) throw new Error('BENCH_UPSTREAM_URL, BENCH_REDIS_URL and BENCH_SESSION_SECRET are required');

const redis = new Redis(redisUrl);
const app = express();
app.disable('x-powered-by');

app.use(
  session({
    name: 'ref.sid',
    store: new RedisStore({ client: redis, prefix: 'ref:sess:' }),
    secret,
    resave: false,
    saveUninitialized: false,
    rolling: true,
    cookie: { httpOnly: true, sameSite: 'lax', secure: false, maxAge: 8 * 3600 * 1000 },
  }),
);

const tokensOf = (req: Request): RefTokens | undefined => (req.session as unknown as { tokens?: RefTokens }).tokens;

app.post('/auth/login', express.json(), async (req: Request, res: Response) => {
  const { email, password } = (req.body ?? {}) as { email?: string; password?: string };
  const answer = await request(`${upstreamUrl}/api/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', client_id: `ref-${Date.now()}` },
    body: new URLSearchParams({ grant_type: 'password', username: email ?? '', password: password ?? '' }).toString(),
  });
  const json = (await answer.body.json()) as { access_token?: string; refresh_token?: string; expires_in?: number };
  if (answer.statusCode !== 200 || !json.access_token) {
    res.status(401).json({ error: 'invalid_grant' });
    return;
  }
  (req.session as unknown as { tokens: RefTokens }).tokens = {
    access: json.access_token,
    refresh: json.refresh_token ?? null,
    expiresAt: Date.now() + (json.expires_in ?? 3600) * 1000,
  };
  res.json({ authenticated: true });
});

const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
app.use(
  '/api',
  (req: Request, res: Response, next: NextFunction) => {
    if (!tokensOf(req)) {
      res.status(401).json({ error: 'unauthenticated' });
      return;
    }
    next();
  },
  createProxyMiddleware<Request, Response>({
    target: `${upstreamUrl}/api`,
    changeOrigin: true,
    agent,
    on: {
      proxyReq: (proxyReq, req) => {
        proxyReq.removeHeader('cookie');
        proxyReq.setHeader('authorization', `Bearer ${tokensOf(req)?.access ?? ''}`);
      },
    },
  }),
);

await runChild(http.createServer(app), {
  onShutdown: async () => {
    agent.destroy();
    redis.disconnect();
  },
});
