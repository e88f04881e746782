import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
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
import { createSessionLifecycle, sessionTimeouts } from './core/session-lifecycle.js';
import { createTokenSealer } from './core/token-crypto.js';
import { createTokenVault } from './core/token-vault.js';
import { createTokenAccess } from './core/token-access.js';
import { compileDownloadPaths, credentialApiPaths } from './core/upstream-paths.js';
import { errors } from './errors.js';
import { createAntiForgeryCheck, ownOriginResolver } from './http/anti-forgery.js';
import { createAuthRoutes } from './http/auth-routes.js';
import { createLinkRoutes } from './http/link-routes.js';
import { createOpsRoutes } from './http/ops-routes.js';
import { createApiProxy } from './http/proxy.js';
import { createClientScriptRoute, createStaticRoutes } from './http/static-routes.js';
import { createForwarding } from './proxy/forwarding.js';
import { pathOf, sendError } from './http/respond.js';
import { createSessionIdReader } from './http/session-cookie.js';
import type { Logger } from './logger.js';
import { createMetrics, type Metrics } from './metrics.js';
import { newSessionId } from './store/keys.js';
import { createBackends } from './store/backends.js';
import type { RedisClient } from './store/redis-client.js';
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
  const upstream = deps.upstream ?? createUpstreamClient(config.upstreamUrl, config.upstreamTimeoutMs);
  const oidc = config.authMode === 'oidc' && config.oidc ? createOidcProvider(config.oidc, config.upstreamTimeoutMs) : null;
  const dialect = createDialect(config, upstream, oidc);
  const sealer = createTokenSealer(config.tokenKeys);
  const timeouts = sessionTimeouts(config.idleTimeoutSeconds * 1000, config.absoluteTimeoutSeconds * 1000);
  const backends = createBackends({
    redis: deps.redis,
    clock,
    timeouts,
    onRedisError: () => metrics.redisErrors.inc(),
    hasReplicas: deps.hasReplicas,
  });
  const store = backends.tokens;
  const vault = createTokenVault(store, sealer, clock, config.refreshSkewSeconds * 1000);
  const toucher = createIdleToucher({
    store,
    timeouts,
    intervalMs: Math.min(60_000, Math.max(1000, timeouts.idleMs / 20)),
    clock,
    onError: (err) => logger.warn({ err }, 'idle timeout touch failed'),
  });
  const sessions = createSessionLifecycle({ store, vault, toucher, timeouts, clock, oidcStore: oidc ? backends.oidc : undefined });
  const refresher = createRefresher({
    vault,
    sessions,
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
    forbiddenPaths: credentialApiPaths(config),
    forwarding: createForwarding(trustFn, ownOrigin),
    observeUpstream: (s) => metrics.upstreamLatency.observe({ kind: 'api' }, s),
    onStreamError: (err) => logger.warn({ err }, 'upstream body failed mid-stream'),
  });

  const sessionMiddleware = session({
    name: config.cookie.name,
    secret: config.sessionSecrets,
    store: backends.sessionRecords,
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
  app.use(createClientScriptRoute({ logger }));

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
    sessions,
    toucher,
    throttle: createLoginThrottle(backends.throttle, config.loginMaxFailures),
    metrics,
    clock,
    cookie: config.cookie,
    ...(oidc ? { oidc: { provider: oidc, oidcStore: backends.oidc, sealer } } : {}),
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

  if (config.staticDir) app.use(createStaticRoutes({ root: config.staticDir, cookieSecure: config.cookie.secure, ...(config.contentSecurityPolicy ? { contentSecurityPolicy: config.contentSecurityPolicy } : {}) }));

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
    beginShutdown: () => {
      shuttingDown = true;
    },
    close: async () => {
      shuttingDown = true;
      backends.close();
      await upstream.close().catch(() => undefined);
    },
  };
}
