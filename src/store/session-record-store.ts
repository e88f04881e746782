import { RedisStore } from 'connect-redis';
import type session from 'express-session';
import { SESSION_PREFIX } from './keys.js';
import type { RedisClient } from './redis-client.js';
import type { SessionTimeouts } from '../core/session-lifecycle.js';
import type { RedisGuard } from './redis-guard.js';

/**
 * The express-session store: connect-redis 8 over ioredis, every command through the Redis
 * guard (503, never a logout). The record lives as long as the session's other keys (its
 * absolute end follows from `createdAt`, so the record does not store it again); touching is
 * ours (throttled), not express-session's per-request EXPIRE.
 */
export function createRedisSessionRecordStore(
  client: RedisClient,
  opts: { timeouts: SessionTimeouts; clock: () => number; guard: RedisGuard },
): session.Store {
  const { guard, timeouts } = opts;
  const ttlSeconds = (sess: session.SessionData): number => {
    const ttl = sess.createdAt === undefined ? timeouts.idleMs : timeouts.ttlAt(opts.clock(), timeouts.absoluteEnd(sess.createdAt));
    return Math.max(1, Math.ceil(ttl / 1000));
  };
  const adapter = {
    get: (key: string) => guard(() => client.get(key)),
    set: (key: string, value: string, mode?: 'EX', ttl?: number) => guard(() => (mode && ttl ? client.set(key, value, 'EX', ttl) : client.set(key, value))),
    del: (keys: string[] | string) => guard(() => client.del(...(Array.isArray(keys) ? keys : [keys]))),
    expire: (key: string, ttl: number) => guard(() => client.expire(key, ttl)),
    mget: (keys: string[]) => guard(() => client.mget(...keys)),
    scan: (cursor: string, ...args: (string | number)[]) =>
      guard(() => (client as { scan(...a: unknown[]): Promise<[string, string[]]> }).scan(cursor, ...args)),
  };
  return new RedisStore({ client: adapter, prefix: SESSION_PREFIX, ttl: ttlSeconds, disableTouch: true });
}
