import { createHash } from 'node:crypto';
import type { RateLimiterAbstract, RateLimiterRes } from 'rate-limiter-flexible';
import { THROTTLE_PREFIXES } from '../store/keys.js';
import type { RedisGuard } from '../store/redis-guard.js';

const WINDOW_SECONDS = 15 * 60;

/**
 * One spelling per address for counting guesses: fullwidth and other compatibility forms folded
 * (NFKC), invisible format characters (zero-width space and joiners, soft hyphen, BOM) and white
 * space removed, case folded. Upstream may treat such variants as the same account, so they must
 * not each get their own LOGIN_MAX_FAILURES.
 */
export function canonicalEmail(email: string): string {
  return email.normalize('NFKC').replace(/[\p{Cf}\p{White_Space}]/gu, '').toUpperCase().toLowerCase();
}

/** Where the counts live: chosen once with the other stores (store/backends.ts). */
export interface ThrottleBackend {
  limiter(opts: { keyPrefix: string; points: number; duration: number }): RateLimiterAbstract;
  guard: RedisGuard;
}

export type ThrottleVerdict = { allowed: true } | { allowed: false; retryAfterSeconds: number };

/**
 * Failed sign-ins counted per email and per client address, in Redis so every instance sees
 * one count (contract: LOGIN_MAX_FAILURES per email, five times that per address, per 15 min).
 */
export function createLoginThrottle(backend: ThrottleBackend, maxFailures: number) {
  const { guard } = backend;
  const byEmail = backend.limiter({ keyPrefix: THROTTLE_PREFIXES.email, points: maxFailures, duration: WINDOW_SECONDS });
  const byAddress = backend.limiter({ keyPrefix: THROTTLE_PREFIXES.address, points: maxFailures * 5, duration: WINDOW_SECONDS });
  // Emails are personal data: Redis keeps only a digest, of the form every spelling of one address shares.
  const emailKey = (email: string) => createHash('sha256').update(canonicalEmail(email)).digest('base64url');

  // Reserved points include the attempt itself: blocked once earlier failures reach the limit.
  const blocked = (res: RateLimiterRes, points: number) =>
    res.consumedPoints > points ? Math.max(1, Math.ceil(res.msBeforeNext / 1000)) : 0;
  const giveBack = (email: string, address: string) =>
    guard(() => Promise.all([byEmail.reward(emailKey(email), 1), byAddress.reward(address, 1)]).then(() => undefined));

  return {
    /**
     * Counts the attempt as a failure before upstream is asked (one atomic increment per key):
     * a check made before counting would let any number of parallel guesses through.
     */
    async reserve(email: string, address: string): Promise<ThrottleVerdict> {
      const [e, a] = await guard(() => Promise.all([byEmail.penalty(emailKey(email), 1), byAddress.penalty(address, 1)]));
      const wait = Math.max(blocked(e, byEmail.points), blocked(a, byAddress.points));
      if (wait === 0) return { allowed: true };
      // Refused here, so not a guess: the counts stay counts of failed sign-ins.
      await giveBack(email, address);
      return { allowed: false, retryAfterSeconds: wait };
    },
    /** The reserved attempt was no wrong guess (upstream down, or right password that must be reset). */
    release: giveBack,
    /** Signed in: the email's count starts again and the attempt does not count against the address. */
    async recordSuccess(email: string, address: string): Promise<void> {
      await guard(() => Promise.all([byEmail.delete(emailKey(email)), byAddress.reward(address, 1)]).then(() => undefined));
    },
  };
}

export type LoginThrottle = ReturnType<typeof createLoginThrottle>;
