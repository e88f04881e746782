import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Request and upstream latencies: 5 ms (a cached proxy hop) to 30 s (the default UPSTREAM_TIMEOUT). */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Waiting for another request's refresh: 1 ms (the claim's round trip) to 10 s (a slow token endpoint). */
const LOCK_WAIT_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * Which part of cloakroom saw a Redis failure (`cloakroom_redis_errors_total{part}`): a fixed list.
 * `tokens`, `sessions`, `oidc`, `throttle`: a command of that store failed; `tracking`: the tracked
 * cache's connection failed a setup or health command; `connection`: a client reported a connection
 * error.
 */
export const REDIS_PARTS = ['tokens', 'sessions', 'oidc', 'throttle', 'tracking', 'connection'] as const;
export type RedisPart = (typeof REDIS_PARTS)[number];

/** One registry per app instance, so two instances in one test process do not collide. */
export function createMetrics(opts: { defaultMetrics?: boolean } = {}) {
  const registry = new Registry();
  if (opts.defaultMetrics) collectDefaultMetrics({ register: registry });
  const metrics = {
    registry,
    requests: new Counter({
      name: 'cloakroom_http_requests_total',
      help: 'Requests answered, by route group and status.',
      labelNames: ['route', 'status'] as const,
      registers: [registry],
    }),
    requestDuration: new Histogram({
      name: 'cloakroom_http_request_duration_seconds',
      help: 'Time from the request to the end of its answer, by route group.',
      labelNames: ['route'] as const,
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
    upstreamLatency: new Histogram({
      name: 'cloakroom_upstream_duration_seconds',
      help: 'Time to upstream response headers, by kind of call.',
      labelNames: ['kind'] as const,
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
    refreshes: new Counter({
      name: 'cloakroom_token_refreshes_total',
      help: 'Upstream token refreshes, by outcome (ok, refused, failed).',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    refreshLockWait: new Histogram({
      name: 'cloakroom_refresh_lock_wait_seconds',
      help: 'Time a refresh attempt waited to take the session lock or to get the tokens of the instance holding it.',
      buckets: LOCK_WAIT_BUCKETS,
      registers: [registry],
    }),
    redisErrors: new Counter({
      name: 'cloakroom_redis_errors_total',
      help: 'Redis failures, by the part of cloakroom that saw them.',
      labelNames: ['part'] as const,
      registers: [registry],
    }),
    links: new Counter({
      name: 'cloakroom_links_total',
      help: 'Signed links, by kind (download, portal) and outcome (issued, refused, failed).',
      labelNames: ['kind', 'outcome'] as const,
      registers: [registry],
    }),
    logins: new Counter({
      name: 'cloakroom_logins_total',
      help: 'Sign-in attempts, by outcome.',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    websocketsOpen: new Gauge({
      name: 'cloakroom_websockets_open',
      help: 'WebSockets proxied on /api/* right now (handshakes in progress included).',
      registers: [registry],
    }),
  };
  // Every series of a fixed label set exists from the start at 0: rate() and alerts see a
  // failure's first count as an increase, and a scrape shows what could be counted.
  for (const part of REDIS_PARTS) metrics.redisErrors.inc({ part }, 0);
  for (const outcome of ['ok', 'refused', 'failed'] as const) metrics.refreshes.inc({ outcome }, 0);
  return metrics;
}

export type Metrics = ReturnType<typeof createMetrics>;
