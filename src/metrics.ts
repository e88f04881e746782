import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** One registry per app instance, so two instances in one test process do not collide. */
export function createMetrics(opts: { defaultMetrics?: boolean } = {}) {
  const registry = new Registry();
  if (opts.defaultMetrics) collectDefaultMetrics({ register: registry });
  return {
    registry,
    requests: new Counter({
      name: 'cloakroom_http_requests_total',
      help: 'Requests answered, by route and status.',
      labelNames: ['route', 'status'] as const,
      registers: [registry],
    }),
    upstreamLatency: new Histogram({
      name: 'cloakroom_upstream_duration_seconds',
      help: 'Time to upstream response headers, by kind of call.',
      labelNames: ['kind'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    refreshes: new Counter({
      name: 'cloakroom_token_refreshes_total',
      help: 'Upstream token refreshes, by outcome (ok, refused, failed).',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    redisErrors: new Counter({
      name: 'cloakroom_redis_errors_total',
      help: 'Session store commands that failed.',
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
}

export type Metrics = ReturnType<typeof createMetrics>;
