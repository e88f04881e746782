import { errors, type AppError } from '../errors.js';
import { failureToError } from '../upstream/client.js';
import type { IdleToucher } from './idle-touch.js';
import type { FreshTokens, Refresher } from './refresh.js';
import type { SessionTokens, TokenVault } from './token-vault.js';

/**
 * The one way any route gets a usable access token for a session: read (the tracked cache,
 * else one Redis GET), extend the idle timeout (throttled), refresh ahead of expiry through
 * the single-flight refresher. Used by the proxy and the signed links alike.
 */
export function createTokenAccess(deps: { vault: TokenVault; refresher: Refresher; toucher: IdleToucher; clock: () => number }) {
  const { vault, refresher, toucher, clock } = deps;

  const unwrap = (result: FreshTokens): SessionTokens => {
    if (result.kind === 'ok') return result.tokens;
    throw endedOrFailed(result);
  };

  /**
   * currentTokens's common case without a promise: the tokens when this process holds the
   * session's record (the tracked cache) alive and not yet due, the idle touch done as there;
   * else undefined, and currentTokens decides (a read, a refresh, 401). Each await of that
   * chain cost about a microsecond per proxied request. currentTokens starts with it, so the
   * two cannot disagree about the common case.
   */
  const tokensNow = (sid: string): SessionTokens | undefined => {
    const now = clock();
    const hint = vault.hint(sid);
    if (hint !== undefined && hint.refreshAt <= now) return undefined;
    const tokens = vault.peek(sid);
    if (!tokens || tokens.absoluteExpiresAt <= now || tokens.refreshAt <= now) return undefined;
    toucher.maybeTouch(sid, tokens.absoluteExpiresAt);
    return tokens;
  };

  return {
    /**
     * Throws 401 unauthenticated without a live session, session_expired / 502 / 504 when a refresh
     * does not succeed. `requestId`: the browser request's, sent upstream by a refresh it starts.
     */
    async currentTokens(sid: string, requestId?: string): Promise<SessionTokens> {
      const held = tokensNow(sid);
      if (held !== undefined) return held;
      const now = clock();
      const hint = vault.hint(sid);
      if (hint !== undefined && hint.refreshAt <= now) {
        // The tokens this process last saw are due: go straight to the refresher, whose claim
        // reads the record in the same round trip as the lock attempt (one round trip less
        // before the refresh leaves, in a burst that is what the p99 waits for). A stale hint
        // costs nothing extra: the claim returns the newer record and takes no lock.
        if (hint.absoluteExpiresAt <= now) throw errors.unauthenticated();
        // The claim is written first (refreshTokensOnce sends it before its first await), the
        // idle-timeout touch after it, so Redis answers the claim first.
        const claimed = refresher.refreshTokensOnce(sid, hint, requestId);
        toucher.maybeTouch(sid, hint.absoluteExpiresAt);
        const result = await claimed;
        // The claim was this request's read: no session is what a read would have said.
        if (result.kind === 'gone') {
          vault.forgetHint(sid);
          throw errors.unauthenticated();
        }
        return unwrap(result);
      }
      const tokens = await vault.read(sid);
      const readAt = clock();
      if (!tokens || tokens.absoluteExpiresAt <= readAt) throw errors.unauthenticated();
      toucher.maybeTouch(sid, tokens.absoluteExpiresAt);
      if (tokens.refreshAt > readAt) return tokens;
      return unwrap(await refresher.refreshTokensOnce(sid, tokens, requestId));
    },
    tokensNow,
    /** After upstream answered 401 to `used`: newer tokens (refreshed once, or by someone else). */
    async tokensAfterRejection(sid: string, used: SessionTokens, requestId?: string): Promise<SessionTokens> {
      return unwrap(await refresher.refreshTokensOnce(sid, used, requestId));
    },
  };
}

export function endedOrFailed(result: Exclude<FreshTokens, { kind: 'ok' }>): AppError {
  // The cause is logged once per failed request by the error handler, as a sign-in's is.
  return result.kind === 'failed' ? failureToError(result.failure, result.cause) : errors.sessionExpired();
}

export type TokenAccess = ReturnType<typeof createTokenAccess>;
