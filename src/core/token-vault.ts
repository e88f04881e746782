import { LRUCache } from 'lru-cache';
import type { TokenSet } from '../auth/dialect.js';
import type { TokenSealer } from './token-crypto.js';
import type { ReplaceOutcome, TokenRecord, TokenStore } from '../store/token-store.js';

/** A session's tokens as the core uses them, decrypted; never leaves the process. */
export interface SessionTokens {
  version: number;
  absoluteExpiresAt: number;
  accessExpiresAt: number;
  refreshAt: number;
  accessToken: string;
  refreshToken: string | null;
  clientId: string;
  idToken?: string | undefined;
}

/**
 * Every SessionTokens is built here, frozen and with the same fields in the same order, so
 * the proxy's hot path sees one object shape whether the tokens came from the cache, a read or
 * a refresh. (Until it was so, a refresh's differently built object deoptimised the proxy code
 * for the next bursts; docs/performance.md.)
 */
function sessionTokens(t: SessionTokens): SessionTokens {
  return Object.freeze({
    version: t.version,
    absoluteExpiresAt: t.absoluteExpiresAt,
    accessExpiresAt: t.accessExpiresAt,
    refreshAt: t.refreshAt,
    accessToken: t.accessToken,
    refreshToken: t.refreshToken,
    clientId: t.clientId,
    idToken: t.idToken || undefined,
  });
}

export type TokenHint = Pick<SessionTokens, 'version' | 'refreshAt' | 'absoluteExpiresAt'>;

const MAX_HINTS = 50_000;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

interface SealedPart { a: string; r: string | null; c: string; i?: string }

export interface TokenVault {
  /** `fresh`: straight from the store, past any local cache (the refresher, after a lost compare-and-set). */
  read(sid: string, opts?: { fresh?: boolean }): Promise<SessionTokens | null>;
  /** The tokens, opened, when the store holds the record in this process (`peekTokens`); else undefined. */
  peek(sid: string): SessionTokens | undefined;
  /**
   * The refresher's one round trip: takes the session's refresh lock for `owner` only while the
   * stored tokens are still at `seenVersion`, and returns the stored tokens either way, opened
   * (null: no session, or none a configured key opens).
   */
  claim(sid: string, owner: string, leaseMs: number, seenVersion: number): Promise<{ locked: boolean; tokens: SessionTokens | null }>;
  /** Releases a lock `owner` still holds. */
  release(sid: string, owner: string): Promise<void>;
  /** Resolves when the session's tokens may have changed (the tracked store's notice), or after maxMs. */
  changed(sid: string, maxMs: number): Promise<void>;
  /**
   * What this process last saw of a session's record: version and times, nothing secret. Kept
   * longer than the token cache (up to 50,000 sessions), so a request can tell that the tokens
   * it last saw are due for refresh without reading them first.
   */
  hint(sid: string): TokenHint | undefined;
  /** Drops the hint of a session found gone, so its cookie is not taken for a due one again. */
  forgetHint(sid: string): void;
  create(sid: string, init: { tokens: TokenSet; clientId: string; absoluteExpiresAt: number }, ttlMs: number): Promise<SessionTokens>;
  /** Compare-and-set of freshly rotated tokens over `previous`. */
  rotate(sid: string, previous: SessionTokens, tokens: TokenSet): Promise<{ outcome: ReplaceOutcome; tokens: SessionTokens }>;
}

/**
 * When to refresh: REFRESH_SKEW before expiry, but never earlier than half the lifetime, so an
 * upstream that issues tokens shorter than the skew does not cause a refresh on every request.
 */
export function refreshTimeFor(now: number, expiresInSeconds: number, skewMs: number): number {
  const lifetime = expiresInSeconds * 1000;
  return now + Math.max(lifetime - skewMs, lifetime / 2);
}

export function createTokenVault(store: TokenStore, sealer: TokenSealer, clock: () => number, refreshSkewMs: number): TokenVault {
  const seal = (sid: string, t: Pick<SessionTokens, 'accessToken' | 'refreshToken' | 'clientId' | 'idToken'>): string => {
    const part: SealedPart = { a: t.accessToken, r: t.refreshToken, c: t.clientId, ...(t.idToken ? { i: t.idToken } : {}) };
    return sealer.seal(JSON.stringify(part), sid);
  };

  // Records are never changed in place (every write makes a new one), so a record object
  // opens to the same tokens for as long as anything holds it.
  const opened = new WeakMap<TokenRecord, { sid: string; tokens: SessionTokens }>();
  const openRecord = (sid: string, record: TokenRecord): SessionTokens | null => {
    const plain = sealer.open(record.sealed, sid);
    // A blob no configured key opens (key rotated out, tampered) is an ended session.
    if (plain === null) return null;
    const part = JSON.parse(plain) as SealedPart;
    return sessionTokens({
      version: record.version,
      absoluteExpiresAt: record.absoluteExpiresAt,
      accessExpiresAt: record.accessExpiresAt,
      refreshAt: record.refreshAt,
      accessToken: part.a,
      refreshToken: part.r,
      clientId: part.c,
      idToken: part.i,
    });
  };

  // No TTL: a hint is only ever a reason to ask the store, and the least recently used go first.
  const hints = new LRUCache<string, TokenHint>({ max: MAX_HINTS });
  const remember = (sid: string, t: SessionTokens) => {
    if (hints.get(sid)?.version === t.version) return;
    hints.set(sid, { version: t.version, refreshAt: t.refreshAt, absoluteExpiresAt: t.absoluteExpiresAt });
  };
  // The tracked cache and joined reads hand out one record object to many requests: open it
  // once (AES-GCM and JSON.parse were a tenth of the proxy's CPU in a burst).
  const open = (sid: string, record: TokenRecord): SessionTokens | null => {
    const known = opened.get(record);
    if (known?.sid === sid) return known.tokens;
    const tokens = openRecord(sid, record);
    if (tokens) {
      opened.set(record, { sid, tokens });
      remember(sid, tokens);
    }
    return tokens;
  };

  return {
    async read(sid, opts) {
      const record = opts?.fresh && store.readTokensFresh ? await store.readTokensFresh(sid) : await store.readTokens(sid);
      return record ? open(sid, record) : null;
    },

    peek(sid) {
      const record = store.peekTokens?.(sid);
      return record ? (open(sid, record) ?? undefined) : undefined;
    },

    async claim(sid, owner, leaseMs, seenVersion) {
      const { locked, record } = await store.claimRefresh(sid, owner, leaseMs, seenVersion);
      return { locked, tokens: record ? open(sid, record) : null };
    },

    release: (sid, owner) => store.releaseLock(sid, owner),

    changed: (sid, maxMs) => (store.changed ? store.changed(sid, maxMs) : sleep(maxMs)),

    hint: (sid) => hints.get(sid),

    forgetHint: (sid) => {
      hints.delete(sid);
    },

    async create(sid, init, ttlMs) {
      const now = clock();
      const tokens = sessionTokens({
        version: 1,
        absoluteExpiresAt: init.absoluteExpiresAt,
        accessExpiresAt: now + init.tokens.expiresInSeconds * 1000,
        refreshAt: refreshTimeFor(now, init.tokens.expiresInSeconds, refreshSkewMs),
        accessToken: init.tokens.accessToken,
        refreshToken: init.tokens.refreshToken,
        clientId: init.clientId,
        idToken: init.tokens.idToken,
      });
      await store.createTokens(
        sid,
        { version: 1, absoluteExpiresAt: tokens.absoluteExpiresAt, accessExpiresAt: tokens.accessExpiresAt, refreshAt: tokens.refreshAt, sealed: seal(sid, tokens) },
        ttlMs,
      );
      remember(sid, tokens);
      return tokens;
    },

    async rotate(sid, previous, fresh) {
      const now = clock();
      const next = sessionTokens({
        ...previous,
        version: previous.version + 1,
        accessExpiresAt: now + fresh.expiresInSeconds * 1000,
        refreshAt: refreshTimeFor(now, fresh.expiresInSeconds, refreshSkewMs),
        accessToken: fresh.accessToken,
        // Upstreams that do not rotate the refresh token leave the old one valid.
        refreshToken: fresh.refreshToken ?? previous.refreshToken,
        idToken: fresh.idToken || previous.idToken,
      });
      const outcome = await store.replaceTokens(sid, previous.version, {
        version: next.version,
        absoluteExpiresAt: next.absoluteExpiresAt,
        accessExpiresAt: next.accessExpiresAt,
        refreshAt: next.refreshAt,
        sealed: seal(sid, next),
      });
      if (outcome === 'ok') remember(sid, next);
      return { outcome, tokens: next };
    },
  };
}
