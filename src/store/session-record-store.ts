import { RedisStore } from 'connect-redis';
import session from 'express-session';
import { StoreError } from '../errors.js';
import { SESSION_PREFIX } from './keys.js';
import type { RedisClient } from './redis-client.js';

/**
 * The express-session store: connect-redis 8 over ioredis, with store errors translated to
 * StoreError at this boundary (503, never a logout). TTLs follow the session's own idle and
 * absolute ends; touching is ours (throttled), not express-session's per-request EXPIRE.
 */
export function createSessionRecordStore(client: RedisClient | null, opts: { idleMs: number; clock: () => number; onError?: (err: unknown) => void }): session.Store {
  const ttlSeconds = (sess: session.SessionData): number => {
    const now = opts.clock();
    const end = Math.min(now + opts.idleMs, sess.absoluteExpiresAt ?? Number.POSITIVE_INFINITY);
    return Math.max(1, Math.ceil((end - now) / 1000));
  };
  if (!client) return new session.MemoryStore();

  const guard =
    <A extends unknown[], R>(fn: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      try {
        return await fn(...args);
      } catch (err) {
        opts.onError?.(err);
        throw new StoreError(err);
      }
    };
  const adapter = {
    get: guard((key: string) => client.get(key)),
    set: guard((key: string, value: string, mode?: 'EX', ttl?: number) =>
      mode && ttl ? client.set(key, value, 'EX', ttl) : client.set(key, value),
    ),
    del: guard((keys: string[] | string) => client.del(...(Array.isArray(keys) ? keys : [keys]))),
    expire: guard((key: string, ttl: number) => client.expire(key, ttl)),
    mget: guard((keys: string[]) => client.mget(...keys)),
    scan: guard((cursor: string, ...args: (string | number)[]) => (client as { scan(...a: unknown[]): Promise<[string, string[]]> }).scan(cursor, ...args)),
  };
  return new RedisStore({ client: adapter, prefix: SESSION_PREFIX, ttl: ttlSeconds, disableTouch: true });
}
