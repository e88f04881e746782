import { createHash } from 'node:crypto';
import type { RateLimiterAbstract } from 'rate-limiter-flexible';
import { OIDC_PREFIXES } from './keys.js';
import type { RedisClient } from './redis-client.js';
import type { RedisGuard } from './redis-guard.js';

/**
 * What OIDC mode keeps besides sessions: login attempts in flight (by `state`, single use) and
 * which of our sessions belong to a provider session (`sid`) or subject (`sub`), for
 * Back-Channel Logout. Keys hold a digest of the provider's values, never the values (no stray
 * `{`/`}` hash tags, nothing personal). Each key stands alone, so this works on a Cluster.
 */
export interface OidcStore {
  /**
   * Counts one sign-in start from `address`: 0 while within SIGN_IN_STARTS, else the seconds
   * until the next start is allowed (contract: sign-in starts are limited per client address).
   */
  countSignInStart(address: string): Promise<number>;
  putAttempt(state: string, sealed: string, ttlMs: number): Promise<void>;
  /** The attempt, removed in the same command: a state works once. */
  takeAttempt(state: string): Promise<string | null>;
  index(sessionId: string, owners: { sid?: string | undefined; sub: string }, ttlMs: number): Promise<void>;
  /** Every session indexed under the provider session (or subject), forgotten as they are returned. */
  takeSessions(owner: { sid: string } | { sub: string }): Promise<string[]>;
}

/**
 * Sign-in starts per client address: 30 a minute. A person starts a handful (tabs, retries); a
 * script filling Redis with attempts started 850 a second. Behind NAT everyone shares one
 * address, so it is per minute (a short wait), not a long lock-out. The limiter is built with
 * the other stores (backends.ts), on Redis, so every instance sees one count.
 */
export const SIGN_IN_STARTS = { points: 30, durationSeconds: 60 } as const;

/** The seconds to wait, or 0: penalty() counts atomically and never throws for being over. */
async function countStart(limiter: RateLimiterAbstract, address: string): Promise<number> {
  const res = await limiter.penalty(address, 1);
  return res.consumedPoints > SIGN_IN_STARTS.points ? Math.max(1, Math.ceil(res.msBeforeNext / 1000)) : 0;
}

const digest = (v: string) => createHash('sha256').update(v).digest('base64url');
const attemptKey = (state: string) => `${OIDC_PREFIXES.attempt}${digest(state)}`;
const ownerKey = (owner: { sid: string } | { sub: string }) =>
  'sid' in owner ? `${OIDC_PREFIXES.providerSid}${digest(owner.sid)}` : `${OIDC_PREFIXES.subject}${digest(owner.sub)}`;

export function createRedisOidcStore(client: RedisClient, guard: RedisGuard, startLimiter: RateLimiterAbstract): OidcStore {
  const ms = (ttlMs: number) => Math.max(1, Math.ceil(ttlMs));
  return {
    countSignInStart: (address) => guard(() => countStart(startLimiter, address)),
    putAttempt: (state, sealed, ttlMs) =>
      guard(async () => {
        await client.set(attemptKey(state), sealed, 'PX', ms(ttlMs));
      }),
    takeAttempt: (state) => guard(() => client.getdel(attemptKey(state))),
    index: (sessionId, owners, ttlMs) =>
      guard(async () => {
        const keys = [ownerKey({ sub: owners.sub }), ...(owners.sid ? [ownerKey({ sid: owners.sid })] : [])];
        // One MULTI per key: the keys may live on different Cluster slots.
        await Promise.all(keys.map((k) => client.multi().sadd(k, sessionId).pexpire(k, ms(ttlMs)).exec()));
      }),
    takeSessions: (owner) =>
      guard(async () => {
        const k = ownerKey(owner);
        const results = (await client.multi().smembers(k).del(k).exec()) ?? [];
        const [err, members] = results[0] ?? [null, []];
        if (err) throw err;
        return (members as string[] | null) ?? [];
      }),
  };
}

/** Development stand-in (no Redis): one process, nothing shared. */
export function createMemoryOidcStore(clock: () => number, startLimiter: RateLimiterAbstract): OidcStore {
  const attempts = new Map<string, { value: string; until: number }>();
  const owners = new Map<string, { ids: Set<string>; until: number }>();
  return {
    countSignInStart: (address) => countStart(startLimiter, address),
    putAttempt: async (state, sealed, ttlMs) => {
      // Development store: abandoned sign-ins are swept once there are many.
      if (attempts.size >= 10_000) for (const [k, v] of attempts) if (v.until <= clock()) attempts.delete(k);
      attempts.set(attemptKey(state), { value: sealed, until: clock() + ttlMs });
    },
    takeAttempt: async (state) => {
      const k = attemptKey(state);
      const hit = attempts.get(k);
      attempts.delete(k);
      return hit && hit.until > clock() ? hit.value : null;
    },
    index: async (sessionId, o, ttlMs) => {
      for (const k of [ownerKey({ sub: o.sub }), ...(o.sid ? [ownerKey({ sid: o.sid })] : [])]) {
        const entry = owners.get(k) ?? { ids: new Set<string>(), until: 0 };
        entry.ids.add(sessionId);
        entry.until = clock() + ttlMs;
        owners.set(k, entry);
      }
    },
    takeSessions: async (owner) => {
      const k = ownerKey(owner);
      const entry = owners.get(k);
      owners.delete(k);
      return entry && entry.until > clock() ? [...entry.ids] : [];
    },
  };
}
