import type { TokenSet } from '../auth/dialect.js';
import type { TokenSealer } from './token-crypto.js';
import type { ReplaceOutcome, TokenStore } from '../store/token-store.js';

/** A session's tokens as the core uses them, decrypted; never leaves the process. */
export interface SessionTokens {
  version: number;
  absoluteExpiresAt: number;
  accessExpiresAt: number;
  accessToken: string;
  refreshToken: string | null;
  clientId: string;
  idToken?: string;
}

interface SealedPart { a: string; r: string | null; c: string; i?: string }

export interface TokenVault {
  read(sid: string): Promise<SessionTokens | null>;
  create(sid: string, init: { tokens: TokenSet; clientId: string; absoluteExpiresAt: number }, ttlMs: number): Promise<SessionTokens>;
  /** Compare-and-set of freshly rotated tokens over `previous`. */
  rotate(sid: string, previous: SessionTokens, tokens: TokenSet): Promise<{ outcome: ReplaceOutcome; tokens: SessionTokens }>;
}

export function createTokenVault(store: TokenStore, sealer: TokenSealer, clock: () => number): TokenVault {
  const seal = (sid: string, t: Omit<SessionTokens, 'version' | 'absoluteExpiresAt' | 'accessExpiresAt'>): string => {
    const part: SealedPart = { a: t.accessToken, r: t.refreshToken, c: t.clientId, ...(t.idToken ? { i: t.idToken } : {}) };
    return sealer.seal(JSON.stringify(part), sid);
  };

  return {
    async read(sid) {
      const record = await store.readTokens(sid);
      if (!record) return null;
      const opened = sealer.open(record.sealed, sid);
      // A blob no configured key opens (key rotated out, tampered) is an ended session.
      if (opened === null) return null;
      const part = JSON.parse(opened) as SealedPart;
      return {
        version: record.version,
        absoluteExpiresAt: record.absoluteExpiresAt,
        accessExpiresAt: record.accessExpiresAt,
        accessToken: part.a,
        refreshToken: part.r,
        clientId: part.c,
        ...(part.i ? { idToken: part.i } : {}),
      };
    },

    async create(sid, init, ttlMs) {
      const tokens: SessionTokens = {
        version: 1,
        absoluteExpiresAt: init.absoluteExpiresAt,
        accessExpiresAt: clock() + init.tokens.expiresInSeconds * 1000,
        accessToken: init.tokens.accessToken,
        refreshToken: init.tokens.refreshToken,
        clientId: init.clientId,
        ...(init.tokens.idToken ? { idToken: init.tokens.idToken } : {}),
      };
      await store.createTokens(
        sid,
        { version: 1, absoluteExpiresAt: tokens.absoluteExpiresAt, accessExpiresAt: tokens.accessExpiresAt, sealed: seal(sid, tokens) },
        ttlMs,
      );
      return tokens;
    },

    async rotate(sid, previous, fresh) {
      const next: SessionTokens = {
        ...previous,
        version: previous.version + 1,
        accessExpiresAt: clock() + fresh.expiresInSeconds * 1000,
        accessToken: fresh.accessToken,
        // Upstreams that do not rotate the refresh token leave the old one valid.
        refreshToken: fresh.refreshToken ?? previous.refreshToken,
        ...(fresh.idToken ? { idToken: fresh.idToken } : {}),
      };
      const outcome = await store.replaceTokens(sid, previous.version, {
        version: next.version,
        absoluteExpiresAt: next.absoluteExpiresAt,
        accessExpiresAt: next.accessExpiresAt,
        sealed: seal(sid, next),
      });
      return { outcome, tokens: next };
    },
  };
}
