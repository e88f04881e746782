/**
 * What Redis keeps of a session's tokens. The secret part is sealed (AES-256-GCM); the
 * rest is what the proxy needs to decide, without decrypting, whether to refresh.
 */
export interface TokenRecord {
  /** Bumped by every write; refresh writes are compare-and-set on it. */
  version: number;
  /** Epoch ms at which the session ends regardless of activity. */
  absoluteExpiresAt: number;
  /** Epoch ms at which the access token expires. */
  accessExpiresAt: number;
  /** Epoch ms from which the proxy refreshes first (REFRESH_SKEW ahead, at most half the lifetime). */
  refreshAt: number;
  sealed: string;
}

export type ReplaceOutcome = 'ok' | 'conflict' | 'gone';

/** The session-scoped storage the core needs; Redis in production, memory in development. */
export interface TokenStore {
  readTokens(sid: string): Promise<TokenRecord | null>;
  /** Bypasses any local cache (the refresher's read after a lost compare-and-set); defaults to readTokens. */
  readTokensFresh?(sid: string): Promise<TokenRecord | null>;
  /**
   * The record as this process holds it right now, without a command or a promise (the proxy's
   * fast path): what `readTokens` would answer from its cache at this instant, else undefined
   * (ask `readTokens`). Never anything `readTokens` would not have served.
   */
  peekTokens?(sid: string): TokenRecord | undefined;
  /** Resolves when the session's token record may have changed, or after maxMs: wakes refresh waiters early. */
  changed?(sid: string, maxMs: number): Promise<void>;
  createTokens(sid: string, record: TokenRecord, ttlMs: number): Promise<void>;
  replaceTokens(sid: string, expectedVersion: number, record: TokenRecord): Promise<ReplaceOutcome>;
  /** Extends every key of the session to ttlMs (idle timeout, capped by the absolute end). */
  touch(sid: string, ttlMs: number): Promise<void>;
  destroy(sid: string): Promise<void>;
  /** Drops whatever this process caches of the session, no Redis command (the tracked store). */
  forget?(sid: string): void;
  /**
   * One round trip for the refresher: takes the session's refresh lock for `owner` only if the
   * stored record is still at `seenVersion`, and returns the stored record either way (null:
   * the session is gone). Not locked + a newer record means someone else already refreshed.
   */
  claimRefresh(sid: string, owner: string, leaseMs: number, seenVersion: number): Promise<{ locked: boolean; record: TokenRecord | null }>;
  releaseLock(sid: string, owner: string): Promise<void>;
  readMedia(sid: string): Promise<string | null>;
  writeMedia(sid: string, sealed: string, ttlMs: number): Promise<void>;
  ping(): Promise<void>;
}

export function encodeRecord(r: TokenRecord): string {
  return JSON.stringify({ v: r.version, abs: r.absoluteExpiresAt, exp: r.accessExpiresAt, ra: r.refreshAt, s: r.sealed });
}

export function decodeRecord(raw: string): TokenRecord | null {
  try {
    const o: unknown = JSON.parse(raw);
    if (typeof o !== 'object' || o === null) return null;
    const { v, abs, exp, ra, s } = o as Record<string, unknown>;
    if (typeof v !== 'number' || typeof abs !== 'number' || typeof exp !== 'number' || typeof ra !== 'number' || typeof s !== 'string') return null;
    return { version: v, absoluteExpiresAt: abs, accessExpiresAt: exp, refreshAt: ra, sealed: s };
  } catch {
    return null;
  }
}
