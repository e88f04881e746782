import session from 'express-session';
import { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis } from 'rate-limiter-flexible';
import type { ThrottleBackend } from '../core/login-throttle.js';
import type { SessionTimeouts } from '../core/session-lifecycle.js';
import { createMemoryTokenStore } from './memory-token-store.js';
import { THROTTLE_PREFIXES } from './keys.js';
import { createMemoryOidcStore, createRedisOidcStore, SIGN_IN_STARTS, type OidcStore } from './oidc-store.js';
import type { RedisClient } from './redis-client.js';
import type { RedisPart } from '../metrics.js';
import { createRedisGuard, type StoreSpan } from './redis-guard.js';
import { createRedisTokenStore } from './redis-token-store.js';
import { createRedisSessionRecordStore } from './session-record-store.js';
import { createRedisSessionBroadcast, type SessionBroadcast } from './session-broadcast.js';
import { createMemorySessionIndex, createRedisSessionIndex, type SessionIndex } from './session-index.js';
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
  /** Every user's sessions (devices). */
  sessionIndex: SessionIndex;
  /** Announces ended sessions to every instance (null in-process: there is only this one). */
  sessionsEnded: Pick<SessionBroadcast, 'publish'> | null;
  /** What to run here when any instance announces an ended session (set once, by the app). */
  onSessionEnded(listener: (sid: string) => void): void;
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
  /** Every Redis failure, with the part of cloakroom that saw it. */
  onRedisError: (part: RedisPart, err: unknown) => void;
  /** Trace spans around store operations (tracing on). */
  storeSpan?: StoreSpan | undefined;
  /** Whether the Redis primary has replicas to acknowledge rotated tokens (WAIT 1). */
  hasReplicas?: (() => boolean) | undefined;
}): Backends {
  const { redis, clock } = deps;
  const signInStarts = { keyPrefix: THROTTLE_PREFIXES.signInStart, points: SIGN_IN_STARTS.points, duration: SIGN_IN_STARTS.durationSeconds };
  if (!redis) {
    // The in-process limiter cannot fail as a store does; the guard only keeps one error type.
    const guard = createRedisGuard();
    return {
      tokens: createMemoryTokenStore(clock),
      sessionRecords: new session.MemoryStore(),
      oidc: createMemoryOidcStore(clock, new RateLimiterMemory(signInStarts)),
      throttle: { guard, limiter: (opts) => new RateLimiterMemory(opts) },
      sessionIndex: createMemorySessionIndex(),
      sessionsEnded: null,
      onSessionEnded: () => undefined,
      close: () => undefined,
    };
  }
  const guardFor = (part: RedisPart) => createRedisGuard((err) => deps.onRedisError(part, err), deps.storeSpan);
  const guard = guardFor('tokens');
  const redisTokens = createRedisTokenStore(redis, { guard, ...(deps.hasReplicas ? { hasReplicas: deps.hasReplicas } : {}) });
  // The proxy's one read is served locally while Redis tracking keeps it exact: one tracking
  // connection for one Redis (standalone, Sentinel), one per master on a Cluster.
  const trackingOpts = { onError: (err: unknown) => deps.onRedisError('tracking', err) };
  const tracked = redis instanceof Redis ? createTrackedTokenStore(redisTokens, redis, trackingOpts) : createClusterTrackedTokenStore(redisTokens, redis, trackingOpts);
  let endedListener: ((sid: string) => void) | null = null;
  const broadcast = createRedisSessionBroadcast(redis, guardFor('sessions'), (sid) => endedListener?.(sid));
  return {
    tokens: tracked,
    sessionRecords: createRedisSessionRecordStore(redis, { timeouts: deps.timeouts, clock, guard: guardFor('sessions') }),
    oidc: createRedisOidcStore(redis, guardFor('oidc'), new RateLimiterRedis({ storeClient: redis, ...signInStarts })),
    throttle: { guard: guardFor('throttle'), limiter: (opts) => new RateLimiterRedis({ storeClient: redis, ...opts }) },
    sessionIndex: createRedisSessionIndex(redis, guardFor('sessions')),
    sessionsEnded: broadcast,
    onSessionEnded: (listener) => {
      endedListener = listener;
    },
    close: () => {
      tracked.close();
      broadcast.close();
    },
  };
}
