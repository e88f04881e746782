import { createHash } from 'node:crypto';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import { StoreError } from '../errors.js';
import type { RedisClient } from '../store/redis-client.js';

const WINDOW_SECONDS = 15 * 60;

export type ThrottleVerdict = { allowed: true } | { allowed: false; retryAfterSeconds: number };

/**
 * Failed sign-ins counted per email and per client address, in Redis so every instance sees
 * one count (contract: LOGIN_MAX_FAILURES per email, five times that per address, per 15 min).
 */
export function createLoginThrottle(client: RedisClient | null, maxFailures: number) {
  const make = (keyPrefix: string, points: number): RateLimiterAbstract =>
    client
      ? new RateLimiterRedis({ storeClient: client, keyPrefix, points, duration: WINDOW_SECONDS })
      : new RateLimiterMemory({ keyPrefix, points, duration: WINDOW_SECONDS });
  const byEmail = make('cr:rl:email', maxFailures);
  const byAddress = make('cr:rl:addr', maxFailures * 5);
  // Emails are personal data: Redis keeps only a digest.
  const emailKey = (email: string) => createHash('sha256').update(email.trim().toLowerCase()).digest('base64url');

  const guard = async <T>(fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof RateLimiterRes) throw err;
      throw new StoreError(err);
    }
  };
  const blocked = (res: RateLimiterRes | null, points: number) =>
    res !== null && res.consumedPoints >= points ? Math.max(1, Math.ceil(res.msBeforeNext / 1000)) : 0;

  return {
    async check(email: string, address: string): Promise<ThrottleVerdict> {
      const [e, a] = await guard(() => Promise.all([byEmail.get(emailKey(email)), byAddress.get(address)]));
      const wait = Math.max(blocked(e, byEmail.points), blocked(a, byAddress.points));
      return wait > 0 ? { allowed: false, retryAfterSeconds: wait } : { allowed: true };
    },
    async recordFailure(email: string, address: string): Promise<void> {
      await guard(() =>
        Promise.all([byEmail.penalty(emailKey(email), 1), byAddress.penalty(address, 1)]).then(() => undefined),
      );
    },
    async recordSuccess(email: string): Promise<void> {
      await guard(() => byEmail.delete(emailKey(email)).then(() => undefined));
    },
  };
}

export type LoginThrottle = ReturnType<typeof createLoginThrottle>;
