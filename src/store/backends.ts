import session from 'express-session';
import { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis } from 'rate-limiter-flexible';
import type { ThrottleBackend } from '../core/login-throttle.js';
import type { SessionTimeouts } from '../core/session-lifecycle.js';
import { createMemoryTokenStore } from './memory-token-store.js';
import { createMemoryOidcStore, createRedisOidcStore, type OidcStore } from './oidc-store.js';
import type { RedisClient } from './redis-client.js';
import { createRedisGuard } from './redis-guard.js';
import { createRedisTokenStore } from './redis-token-store.js';
import { createRedisSessionRecordStore } from './session-record-store.js';
import type { TokenStore } from './token-store.js';
import { createClusterTrackedTokenStore } from './cluster-tracking.js';
import { createTrackedTokenStore, type TrackedTokenStore } from './tracked-token-store.js';

export interface Backends {
  /** The tracked (locally cached) store where Redis tracking works, else Redis, else memory. */
  tokens: TokenStore | TrackedTokenStore;
  /** express-session's store of the session record. */
  sessionRecords: session.Store;
  oidc: OidcStore;
  throttle: ThrottleBackend;
  /** Stops the tracked cache's connection and timers. */
  close(): void;
}

/**
 * Redis or in-process, chosen here once for every store (no REDIS_URL: development only, one
 * process, nothing shared). Every Redis-backed store goes through one guard, so `onRedisError`
 * sees every Redis failure, from whichever store.
 */
export function createBackends(deps: {
  redis: RedisClient | null;
  clock: () => number;
  /** The session record lives as long as the session's other keys. */
  timeouts: SessionTimeouts;
  onRedisError: (err: unknown) => void;
  /** Whether the Redis primary has replicas to acknowledge rotated tokens (WAIT 1). */
  hasReplicas?: (() => boolean) | undefined;
}): Backends {
  const { redis, clock } = deps;
  if (!redis) {
    // The in-process limiter cannot fail as a store does; the guard only keeps one error type.
    const guard = createRedisGuard();
    return {
      tokens: createMemoryTokenStore(clock),
      sessionRecords: new session.MemoryStore(),
      oidc: createMemoryOidcStore(clock),
      throttle: { guard, limiter: (opts) => new RateLimiterMemory(opts) },
      close: () => undefined,
    };
  }
  const guard = createRedisGuard(deps.onRedisError);
  const redisTokens = createRedisTokenStore(redis, { guard, ...(deps.hasReplicas ? { hasReplicas: deps.hasReplicas } : {}) });
  // The proxy's one read is served locally while Redis tracking keeps it exact: one tracking
  // connection for one Redis (standalone, Sentinel), one per master on a Cluster.
  const tracked = redis instanceof Redis ? createTrackedTokenStore(redisTokens, redis) : createClusterTrackedTokenStore(redisTokens, redis);
  return {
    tokens: tracked ?? redisTokens,
    sessionRecords: createRedisSessionRecordStore(redis, { timeouts: deps.timeouts, clock, guard }),
    oidc: createRedisOidcStore(redis, guard),
    throttle: { guard, limiter: (opts) => new RateLimiterRedis({ storeClient: redis, ...opts }) },
    close: () => tracked.close(),
  };
}
