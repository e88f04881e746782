import type { ReplaceOutcome, TokenRecord, TokenStore } from './token-store.js';

interface Entry<T> { value: T; expiresAt: number }

/**
 * Development-only stand-in for Redis (no REDIS_URL, never in production): one process,
 * nothing shared, nothing survives a restart. Same semantics as the Redis store.
 */
export function createMemoryTokenStore(clock: () => number = Date.now): TokenStore {
  const tokens = new Map<string, Entry<TokenRecord>>();
  const locks = new Map<string, Entry<string>>();
  const media = new Map<string, Entry<string>>();
  const live = <T>(map: Map<string, Entry<T>>, key: string): T | null => {
    const e = map.get(key);
    if (!e) return null;
    if (e.expiresAt <= clock()) {
      map.delete(key);
      return null;
    }
    return e.value;
  };
  // Expired entries are also swept now and then so an idle dev server does not grow.
  const sweep = setInterval(() => {
    const now = clock();
    for (const map of [tokens, locks, media] as Map<string, Entry<unknown>>[]) {
      for (const [k, e] of map) if (e.expiresAt <= now) map.delete(k);
    }
  }, 60_000);
  sweep.unref();

  return {
    readTokens: async (sid) => live(tokens, sid),
    peekTokens: (sid) => live(tokens, sid) ?? undefined,
    createTokens: async (sid, record, ttlMs) => {
      tokens.set(sid, { value: record, expiresAt: clock() + ttlMs });
    },
    replaceTokens: async (sid, expectedVersion, record): Promise<ReplaceOutcome> => {
      const cur = live(tokens, sid);
      const entry = tokens.get(sid);
      if (!cur || !entry) return 'gone';
      if (cur.version !== expectedVersion) return 'conflict';
      entry.value = record;
      return 'ok';
    },
    touch: async (sid, ttlMs) => {
      for (const map of [tokens, media] as Map<string, Entry<unknown>>[]) {
        const e = map.get(sid);
        if (e) e.expiresAt = clock() + ttlMs;
      }
    },
    destroy: async (sid) => {
      tokens.delete(sid);
      locks.delete(sid);
      media.delete(sid);
    },
    claimRefresh: async (sid, owner, leaseMs, seenVersion) => {
      const record = live(tokens, sid);
      if (!record || record.version !== seenVersion || live(locks, sid) !== null) return { locked: false, record };
      locks.set(sid, { value: owner, expiresAt: clock() + leaseMs });
      return { locked: true, record };
    },
    releaseLock: async (sid, owner) => {
      if (live(locks, sid) === owner) locks.delete(sid);
    },
    readMedia: async (sid) => live(media, sid),
    writeMedia: async (sid, sealed, ttlMs) => {
      media.set(sid, { value: sealed, expiresAt: clock() + ttlMs });
    },
    ping: async () => undefined,
  };
}
