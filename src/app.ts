import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import path from 'node:path';
import express, { type NextFunction, type Request, type Response } from 'express';
import { Redis } from 'ioredis';
import session from 'express-session';
import helmet from 'helmet';
import type { AuthDialect } from './auth/dialect.js';
import { createJsonDialect } from './auth/json-api.js';
import { createNexudusDialect } from './auth/nexudus.js';
import { createOidcProvider, type OidcProvider } from './auth/oidc.js';
import type { Config } from './config.js';
import { createIdleToucher } from './core/idle-touch.js';
import { createLinkSigner } from './core/link-signing.js';
import { createLoginThrottle } from './core/login-throttle.js';
import { createRefresher } from './core/refresh.js';
import { createTokenSealer } from './core/token-crypto.js';
import { createTokenVault } from './core/token-vault.js';
import { createTokenAccess } from './core/token-access.js';
import { compileDownloadPaths } from './core/upstream-paths.js';
import { errors } from './errors.js';
import { createAntiForgeryCheck, ownOriginResolver } from './http/anti-forgery.js';
import { createAuthRoutes } from './http/auth-routes.js';
import { createLinkRoutes } from './http/link-routes.js';
import { createOpsRoutes } from './http/ops-routes.js';
import { createApiProxy, pathVerdict } from './http/proxy.js';
import { createWebSocketProxy, type WebSocketProxy } from './proxy/websocket.js';
import { pathOf, sendError } from './http/respond.js';
import { createSessionIdReader } from './http/session-cookie.js';
import type { Logger } from './logger.js';
import { createMetrics, type Metrics } from './metrics.js';
import { newSessionId } from './store/keys.js';
import { createMemoryTokenStore } from './store/memory-token-store.js';
import { createOidcStore } from './store/oidc-store.js';
import type { RedisClient } from './store/redis-client.js';
import { createRedisTokenStore } from './store/redis-token-store.js';
import { createTrackedTokenStore } from './store/tracked-token-store.js';
import { createSessionRecordStore } from './store/session-record-store.js';
import type { TokenStore } from './store/token-store.js';
import { createUpstreamClient, type UpstreamClient } from './upstream/client.js';

export interface AppDeps {
  config: Readonly<Config>;
  logger: Logger;
  /** null: the development-only in-process store. */
  redis: RedisClient | null;
  clock?: () => number;
  upstream?: UpstreamClient;
  metrics?: Metrics;
  /** Whether the Redis primary has replicas to acknowledge rotated tokens (WAIT 1). */
  hasReplicas?: () => boolean;
}

export interface Cloakroom {
  /** The Node request listener: `/api/*` goes straight to the proxy, the rest through Express. */
  readonly handler: RequestListener;
  readonly app: express.Express;
  readonly metrics: Metrics;
  readonly store: TokenStore;
  /** `GET /api/*` with `Upgrade: websocket`: the server's 'upgrade' listener, and the open sockets. */
  readonly websockets: WebSocketProxy;
  /** Readiness turns 503 from here on; in-flight requests still finish. */
  beginShutdown(): void;
  close(): Promise<void>;
}

/** The password dialects; oidc mode's provider is made by createApp, which needs its routes too. */
function createDialect(config: Readonly<Config>, upstream: UpstreamClient, oidc: OidcProvider | null): AuthDialect {
  switch (config.authMode) {
    case 'json':
      return createJsonDialect(upstream, { loginPath: config.jsonLoginPath, refreshPath: config.jsonRefreshPath });
    case 'nexudus':
      return createNexudusDialect(upstream, { exchangeValidMinutes: config.exchangeValidMinutes });
    case 'oidc':
      if (!oidc) throw new Error('AUTH_MODE=oidc without its OIDC_* settings');
      return oidc;
  }
}

export function createApp(deps: AppDeps): Cloakroom {
  const { config, logger } = deps;
  const clock = deps.clock ?? Date.now;
  const metrics = deps.metrics ?? createMetrics();
  const onStoreError = () => metrics.redisErrors.inc();
  const redisStore = deps.redis
    ? createRedisTokenStore(deps.redis, { onError: onStoreError, ...(deps.hasReplicas ? { hasReplicas: deps.hasReplicas } : {}) })
    : null;
  // The proxy's one read is served locally while Redis tracking keeps it exact (standalone and
  // Sentinel; a Cluster would need a tracking connection per node, not done yet).
  const tracked = deps.redis instanceof Redis && redisStore ? createTrackedTokenStore(redisStore, deps.redis) : null;
  const store: TokenStore = tracked ?? redisStore ?? createMemoryTokenStore(clock);
  const upstream = deps.upstream ?? createUpstreamClient(config.upstreamUrl, config.upstreamTimeoutMs);
  const oidc = config.authMode === 'oidc' && config.oidc ? createOidcProvider(config.oidc, config.upstreamTimeoutMs) : null;
  const dialect = createDialect(config, upstream, oidc);
  const sealer = createTokenSealer(config.tokenKeys);
  const vault = createTokenVault(store, sealer, clock, config.refreshSkewSeconds * 1000);
  const idleMs = config.idleTimeoutSeconds * 1000;
  const absoluteMs = config.absoluteTimeoutSeconds * 1000;
  const toucher = createIdleToucher({
    store,
    idleMs,
    intervalMs: Math.min(60_000, Math.max(1000, idleMs / 20)),
    clock,
    onError: (err) => logger.warn({ err }, 'idle timeout touch failed'),
  });
  const refresher = createRefresher({
    vault,
    store,
    dialect,
    clock,
    // Two upstream timeouts (headers, body) and slack: a lease never ends mid-refresh.
    leaseMs: config.upstreamTimeoutMs * 2 + 5000,
    onRefresh: (outcome) => metrics.refreshes.inc({ outcome }),
    onLockError: (err) => logger.warn({ err }, 'refresh lock release failed'),
  });
  const readSessionId = createSessionIdReader(config.cookie.name, config.sessionSecrets);
  let shuttingDown = false;

  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', config.trustProxy);
  app.set('query parser', 'simple');
  const trustFn = app.get('trust proxy fn') as (addr: string, i: number) => boolean;
  const ownOrigin = ownOriginResolver((req) => trustFn(req.socket.remoteAddress ?? '', 0), config.cookie.secure);
  const checkAntiForgery = createAntiForgeryCheck({ ownOrigin, ...(config.allowedOrigins ? { allowedOrigins: config.allowedOrigins } : {}) });

  const tokenAccess = createTokenAccess({ vault, refresher, toucher, clock });
  const proxy = createApiProxy({
    upstream,
    tokens: tokenAccess,
    readSessionId,
    observeUpstream: (s) => metrics.upstreamLatency.observe({ kind: 'api' }, s),
    onStreamError: (err) => logger.warn({ err }, 'upstream body failed mid-stream'),
  });

  // WebSockets on /api/*: same session, tokens and path rules as the HTTP proxy (src/proxy/websocket.ts).
  const websockets = createWebSocketProxy({
    upstreamUrl: config.upstreamUrl,
    readSessionId,
    tokens: tokenAccess,
    originAllowed: (req, origin) => (config.allowedOrigins ? config.allowedOrigins.includes(origin) : origin === ownOrigin(req)),
    pathVerdict,
    readSession: (sid) => store.readTokens(sid),
    ...(store.changed ? { changed: store.changed.bind(store) } : {}),
    keepAlive: (sid, absoluteExpiresAt) => toucher.maybeTouch(sid, absoluteExpiresAt),
    onOpenCountChange: (n) => metrics.websocketsOpen.set(n),
    logger,
    clock,
    upstreamTimeoutMs: config.upstreamTimeoutMs,
    maxPerSession: config.websocket.maxPerSession,
    maxOpen: config.websocket.maxOpen,
    maxPayload: config.websocket.maxMessageBytes,
    checkIntervalMs: Math.min(3000, Math.max(250, idleMs / 4)),
  });

  const sessionMiddleware = session({
    name: config.cookie.name,
    secret: config.sessionSecrets,
    store: createSessionRecordStore(deps.redis, { idleMs, clock, onError: onStoreError }),
    genid: newSessionId,
    resave: false,
    saveUninitialized: false,
    rolling: false,
    // Not 'destroy': a failed store read leaves req.session unset, and 'destroy' would then DEL the record.
    unset: 'keep',
    cookie: { httpOnly: true, path: '/', secure: config.cookie.secure, sameSite: config.cookie.sameSite, maxAge: undefined },
  });

  // A JSON API: nothing here is meant to be framed, sniffed or rendered.
  const jsonHelmet = helmet({
    contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
    crossOriginResourcePolicy: { policy: 'same-origin' },
  });

  app.use(createOpsRoutes({ store, registry: metrics.registry, isShuttingDown: () => shuttingDown }));

  const noStore = (_req: Request, res: Response, next: NextFunction) => {
    res.set('Cache-Control', 'no-store');
    next();
  };
  // express-session silently drops a Secure cookie unless it thinks the request came over TLS.
  // COOKIE_SECURE=true says the browser side is https (TLS ends in front of us), so say so.
  const declaredSecure = (req: Request, _res: Response, next: NextFunction) => {
    if (config.cookie.secure) Object.defineProperty(req, 'secure', { value: true, configurable: true });
    next();
  };
  const antiForgery = (req: Request, _res: Response, next: NextFunction) => {
    // Back-Channel Logout is called by the provider, server to server: it proves itself with a signed token.
    if (oidc && req.path === '/backchannel-logout') return next();
    const safe = req.method === 'GET' || req.method === 'HEAD';
    next(checkAntiForgery(req, !safe) ?? undefined);
  };
  const bodies = [express.json({ limit: '16kb', strict: true }), express.urlencoded({ extended: false, limit: '16kb', parameterLimit: 20 })];
  app.use('/auth', jsonHelmet, noStore, antiForgery, ...bodies, declaredSecure, sessionMiddleware, createAuthRoutes({
    dialect,
    vault,
    store,
    toucher,
    throttle: createLoginThrottle(deps.redis, config.loginMaxFailures),
    metrics,
    clock,
    idleMs,
    absoluteMs,
    cookie: config.cookie,
    ...(oidc ? { oidc: { provider: oidc, oidcStore: createOidcStore(deps.redis, clock), sealer } } : {}),
  }));
  app.use('/links', jsonHelmet, createLinkRoutes({
    signer: createLinkSigner({
      upstream,
      tokens: tokenAccess,
      store,
      sealer,
      clock,
      mediaBaseUrl: config.mediaBaseUrl,
      ...(config.portalUrl ? { portalUrl: config.portalUrl } : {}),
      portalLoginPath: config.portalLoginPath,
      observeUpstream: (kind, s) => metrics.upstreamLatency.observe({ kind }, s),
    }),
    downloadPaths: compileDownloadPaths(config.downloadPaths),
    readSessionId,
    metrics,
    ...(config.loginPageUrl ? { loginPageUrl: config.loginPageUrl } : {}),
  }));

  if (config.staticDir) {
    const root = path.resolve(config.staticDir);
    app.use(helmet(), express.static(root, { index: 'index.html', fallthrough: true }));
    // The SPA's own routes: unknown paths that accept HTML get index.html.
    app.get('/*splat', (req: Request, res: Response, next: NextFunction) => {
      if (!req.accepts('html') || /^\/(api|auth|links)(\/|$)/.test(req.path)) return next();
      res.sendFile(path.join(root, 'index.html'));
    });
  }

  app.use(jsonHelmet, (_req: Request, _res: Response, next: NextFunction) => next(errors.notFound()));
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => sendError(req, res, err, logger));

  const routeOf = (url: string): string => {
    if (url.startsWith('/api/')) return '/api/*';
    const p = pathOf(url);
    return /^\/(auth|links)\/[a-z-]+$/.test(p) || ['/healthz', '/readyz', '/metrics'].includes(p) ? p : 'other';
  };

  const handler: RequestListener = (req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? '/';
    const started = performance.now();
    res.once('finish', () => {
      const route = routeOf(url);
      metrics.requests.inc({ route, status: String(res.statusCode) });
      // Path only: queries can carry exchange tokens. The proxy path logs at debug (volume).
      const level = route === '/api/*' ? 'debug' : 'info';
      if (!logger.isLevelEnabled(level)) return;
      logger[level]({ method: req.method, path: pathOf(url), status: res.statusCode, ms: Math.round(performance.now() - started) }, 'request');
    });
    if (url.startsWith('/api/')) {
      const err = checkAntiForgery(req, true);
      if (err) return sendError(req, res, err, logger);
      proxy(req, res).catch((e: unknown) => sendError(req, res, e, logger));
      return;
    }
    app(req, res);
  };

  return {
    handler,
    app,
    metrics,
    store,
    websockets,
    beginShutdown: () => {
      shuttingDown = true;
    },
    close: async () => {
      shuttingDown = true;
      await websockets.closeAll(1001);
      tracked?.close();
      await upstream.close().catch(() => undefined);
    },
  };
}
