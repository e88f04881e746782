import { StoreError } from '../errors.js';

/** Runs one store operation against Redis; a failure is reported once and thrown as StoreError. */
export type RedisGuard = <T>(operation: () => Promise<T>) => Promise<T>;

/** Wraps one store operation in a trace span (src/tracing.ts); absent when tracing is off. */
export type StoreSpan = <T>(operation: () => Promise<T>) => Promise<T>;

/**
 * The one boundary where library errors (ioredis, connect-redis, rate-limiter-flexible) become
 * the StoreError the HTTP layer maps to 503, never a logout. Every Redis-backed store takes
 * this guard, so `onError` (the redis-errors metric) sees every failure of every store.
 */
export function createRedisGuard(onError?: (err: unknown) => void, span?: StoreSpan): RedisGuard {
  const guarded: RedisGuard = async (operation) => {
    try {
      return await operation();
    } catch (err) {
      onError?.(err);
      throw new StoreError(err);
    }
  };
  if (!span) return guarded;
  return (operation) => span(() => guarded(operation));
}
