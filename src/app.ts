import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import session from 'express-session';
import helmet from 'helmet';
import type { AuthDialect } from './auth/dialect.js';
import { createJsonDialect } from './auth/json-api.js';
import { createNexudusDialect } from './auth/nexudus.js';
import { createOidcDialect } from './auth/oidc.js';
import type { Config } from './config.js';
import { createIdleToucher } from './core/idle-touch.js';
import { createLinkSigner } from './core/link-signing.js';
import { createLoginThrottle } from './core/login-throttle.js';
import { createRefresher } from './core/refresh.js';
import { createSessionLifecycle, sessionTimeouts } from './core/session-lifecycle.js';
import { createTokenSealer } from './core/token-crypto.js';
import { createTokenVault } from './core/token-vault.js';
import { createTokenAccess } from './core/token-access.js';
import { apiPathVerdict, compileDownloadPaths, credentialApiPaths } from './core/upstream-paths.js';
import { errors } from './errors.js';
import { antiForgeryGuard, createAntiForgeryCheck, ownOriginResolver, type AntiForgeryRule, type RouterAntiForgery } from './http/anti-forgery.js';
import { createAuthRoutes } from './http/auth-routes.js';
import { createLinkRoutes } from './http/link-routes.js';
import { createOpsRoutes } from './http/ops-routes.js';
import { createApiProxy } from './http/proxy.js';
import { createClientScriptRoute, createStaticRoutes } from './http/static-routes.js';
import { createForwarding } from './proxy/forwarding.js';
import { createWebSocketProxy, type WebSocketProxy } from './proxy/websocket.js';
import { createRequestObserver, noteUpstreamSeconds, requestIdOf } from './http/observe.js';
import { sendError } from './http/respond.js';
import { findRoute, routeLabel, type Route } from './http/route-table.js';
import { createSessionIdReader, sessionCookieMaxAge } from './http/session-cookie.js';
import type { Logger } from './logger.js';
import { createMetrics, type Metrics } from './metrics.js';
import { newSessionId } from './store/keys.js';
import { createBackends } from './store/backends.js';
import type { RedisClient } from './store/redis-client.js';
import type { TokenStore } from './store/token-store.js';
import { activeTracing, type Tracing } from './tracing.js';
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
  /** Tracing (src/tracing.ts); default: the one started in this process, if any. */
  tracing?: Tracing;
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

/**
 * What answers a line of the route table: the raw proxy (no framework on its hot path) or Express.
 * A raw listener writes `X-Request-Id` into every head it writes itself (its errors go through
 * respond.ts sendError, which adds it): observe() does not set it ahead (`idInHead`).
 */
type RouteAnswer =
  | { kind: 'raw'; antiForgery: AntiForgeryRule; listener: (req: IncomingMessage, res: ServerResponse) => Promise<void> }
  | { kind: 'express'; stack: RequestHandler[] };

function createDialect(config: Readonly<Config>, upstream: UpstreamClient): AuthDialect {
  switch (config.authMode) {
    case 'json':
      return createJsonDialect(upstream, { loginPath: config.jsonLoginPath, refreshPath: config.jsonRefreshPath });
    case 'nexudus':
      return createNexudusDialect(upstream, { exchangeValidMinutes: config.exchangeValidMinutes });
    case 'oidc':
      if (!config.oidc) throw new Error('AUTH_MODE=oidc without its OIDC_* settings');
      return createOidcDialect(config.oidc, config.upstreamTimeoutMs);
  }
}

export function createApp(deps: AppDeps): Cloakroom {
  const { config, logger } = deps;
  const clock = deps.clock ?? Date.now;
  const metrics = deps.metrics ?? createMetrics();
  const tracing = deps.tracing ?? activeTracing();
  // Connection failures count too (part `connection`): a dead Redis shows even without traffic.
  const onRedisConnectionError = () => metrics.redisErrors.inc({ part: 'connection' });
  deps.redis?.on('error', onRedisConnectionError);
  const upstream = deps.upstream ?? createUpstreamClient(config.upstreamUrl, config.upstreamTimeoutMs, { tracing });
  const dialect = createDialect(config, upstream);
  const sealer = createTokenSealer(config.tokenKeys);
  const timeouts = sessionTimeouts(config.idleTimeoutSeconds * 1000, config.absoluteTimeoutSeconds * 1000);
  const backends = createBackends({
    redis: deps.redis,
    clock,
    timeouts,
    onRedisError: (part) => metrics.redisErrors.inc({ part }),
    storeSpan: tracing ? (operation) => tracing.span('session store', operation) : undefined,
    hasReplicas: deps.hasReplicas,
  });
  const store = backends.tokens;
  const vault = createTokenVault(store, sealer, clock, config.refreshSkewSeconds * 1000);
  const toucher = createIdleToucher({
    store,
    index: backends.sessionIndex,
    timeouts,
    // A session may end up to one interval before "last request + idle timeout": a twentieth of
    // it (5%), at most 60 s, and at least 50 ms, so SESSION_IDLE_TIMEOUT=3 ends 2.85-3 s after the
    // last request (a 1 s floor let it end a whole second early). docs/design.md.
    intervalMs: Math.min(60_000, Math.max(50, timeouts.idleMs / 20)),
    clock,
    onError: (err) => logger.warn({ err }, 'idle timeout touch failed'),
  });
  const sessions = createSessionLifecycle({
    store,
    vault,
    toucher,
    timeouts,
    clock,
    oidcStore: dialect.redirectSignIn ? backends.oidc : undefined,
    index: backends.sessionIndex,
    broadcast: backends.sessionsEnded ?? undefined,
  });
  // A session ended on any instance (or by the command line) is forgotten here too.
  backends.onSessionEnded((sid) => sessions.dropLocal(sid));
  const refresher = createRefresher({
    vault,
    sessions,
    dialect,
    clock,
    // Two upstream timeouts (headers, body) and slack: a lease never ends mid-refresh.
    leaseMs: config.upstreamTimeoutMs * 2 + 5000,
    onRefresh: (outcome) => metrics.refreshes.inc({ outcome }),
    onLockError: (err) => logger.warn({ err }, 'refresh lock release failed'),
    onLockWait: (seconds) => metrics.refreshLockWait.observe(seconds),
    ...(tracing ? { span: <T>(run: () => Promise<T>) => tracing.span('token refresh', run) } : {}),
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

  const forbiddenPaths = credentialApiPaths(config);
  const tokenAccess = createTokenAccess({ vault, refresher, toucher, clock });
  const proxy = createApiProxy({
    upstream,
    tokens: tokenAccess,
    readSessionId,
    forbiddenPaths,
    forwarding: createForwarding(trustFn, ownOrigin),
    observeUpstream: (s, req) => {
      metrics.upstreamLatency.observe({ kind: 'api' }, s);
      noteUpstreamSeconds(req, s);
    },
    onStreamError: (err, req) => logger.warn({ err, requestId: requestIdOf(req) }, 'upstream body failed mid-stream'),
    requestId: requestIdOf,
    tracing,
  });

  // WebSockets on /api/*: same session, tokens and path rules as the HTTP proxy (src/proxy/websocket.ts).
  const websockets = createWebSocketProxy({
    upstreamUrl: config.upstreamUrl,
    readSessionId,
    tokens: tokenAccess,
    originAllowed: (req, origin) => (config.allowedOrigins ? config.allowedOrigins.includes(origin) : origin === ownOrigin(req)),
    pathVerdict: (rawPath) => apiPathVerdict(rawPath, forbiddenPaths),
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
    checkIntervalMs: Math.min(3000, Math.max(250, timeouts.idleMs / 4)),
    tracing,
  });
  // A session ended here (logout, a refused refresh, /auth/sessions) closes its sockets at once;
  // ends seen from other instances reach them through the same local-end hook or the watcher.
  sessions.onLocalEnd((sid) => void websockets.closeSession(sid));

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
  const bodies = [express.json({ limit: '16kb', strict: true }), express.urlencoded({ extended: false, limit: '16kb', parameterLimit: 20 })];
  // Each router declares who calls it; its rule runs before bodies are parsed.
  const guard = (declared: RouterAntiForgery) => antiForgeryGuard(checkAntiForgery, declared);

  const ops = createOpsRoutes({ store, registry: metrics.registry, isShuttingDown: () => shuttingDown });
  const auth = createAuthRoutes({
    dialect,
    vault,
    sessions,
    toucher,
    throttle: createLoginThrottle(backends.throttle, config.loginMaxFailures),
    metrics,
    clock,
    cookie: config.cookie,
    authMode: config.authMode,
    ...(dialect.redirectSignIn ? { redirectSignIn: { oidcStore: backends.oidc, sealer } } : {}),
  });
  const links = createLinkRoutes({
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
  });

  /**
   * The route table: dispatch (the raw proxy or Express, mounted in this order) and the metrics
   * `route` label both read it. The proxy comes first: its check is the only one on its hot path.
   */
  const routes: readonly Route<RouteAnswer>[] = [
    // Only the SPA's scripts call the proxy: X-CSRF on every method.
    { group: 'api', match: { prefix: '/api/' }, handler: { kind: 'raw', antiForgery: 'always', listener: proxy } },
    { group: 'ops', match: { paths: ['/healthz', '/readyz', '/metrics'] }, handler: { kind: 'express', stack: [guard(ops.antiForgery), ops.router] } },
    {
      group: 'auth',
      match: { prefix: '/auth/' },
      handler: { kind: 'express', stack: [jsonHelmet, noStore, guard(auth.antiForgery), ...bodies, declaredSecure, sessionCookieMaxAge(config.cookie.name), sessionMiddleware, auth.router] },
    },
    { group: 'links', match: { prefix: '/links/' }, handler: { kind: 'express', stack: [jsonHelmet, guard(links.antiForgery), links.router] } },
  ];
  // The browser client is public and safe to fetch: ahead of the /auth stack and its checks.
  app.use(createClientScriptRoute({ logger }));
  for (const route of routes) {
    if (route.handler.kind !== 'express') continue;
    // Whole paths are answered by a router mounted at the root; a prefix `/auth/` mounts at `/auth`.
    app.use('prefix' in route.match ? route.match.prefix.slice(0, -1) : '/', ...route.handler.stack);
  }

  if (config.staticDir) app.use(createStaticRoutes({ root: config.staticDir, cookieSecure: config.cookie.secure, ...(config.contentSecurityPolicy ? { contentSecurityPolicy: config.contentSecurityPolicy } : {}) }));

  app.use(jsonHelmet, (_req: Request, _res: Response, next: NextFunction) => next(errors.notFound()));
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => sendError(req, res, err, logger));

  const observe = createRequestObserver({ logger, metrics, accessLog: config.accessLog });
  const answerRequest = (req: IncomingMessage, res: ServerResponse, route: Route<RouteAnswer> | undefined): void => {
    const answer = route?.handler;
    if (answer?.kind === 'raw') {
      const err = checkAntiForgery(req, answer.antiForgery);
      if (err) return sendError(req, res, err, logger);
      answer.listener(req, res).catch((e: unknown) => sendError(req, res, e, logger));
      return;
    }
    app(req, res);
  };
  const handler: RequestListener = (req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? '/';
    const route = findRoute(routes, url);
    observe(req, res, url, route, route?.handler.kind === 'raw');
    if (tracing) tracing.traceRequest(req, res, `${req.method ?? 'GET'} ${routeLabel(route, url)}`, () => answerRequest(req, res, route));
    else answerRequest(req, res, route);
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
      deps.redis?.off('error', onRedisConnectionError);
      backends.close();
      await upstream.close().catch(() => undefined);
    },
  };
}
