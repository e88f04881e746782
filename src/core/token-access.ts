import { errors, type AppError } from '../errors.js';
import { failureToError } from '../upstream/client.js';
import type { IdleToucher } from './idle-touch.js';
import type { FreshTokens, Refresher } from './refresh.js';
import type { SessionTokens, TokenVault } from './token-vault.js';

/**
 * The one way any route gets a usable access token for a session: read (one Redis GET),
 * extend the idle timeout (throttled), refresh ahead of expiry through the single-flight
 * refresher. Used by the proxy and the signed links alike.
 */
export function createTokenAccess(deps: { vault: TokenVault; refresher: Refresher; toucher: IdleToucher; clock: () => number }) {
  const { vault, refresher, toucher, clock } = deps;

  const unwrap = (result: FreshTokens): SessionTokens => {
    if (result.kind === 'ok') return result.tokens;
    throw endedOrFailed(result);
  };

  return {
    /** Throws 401 unauthenticated without a live session, session_expired / 502 / 504 when a refresh does not succeed. */
    async currentTokens(sid: string): Promise<SessionTokens> {
      const tokens = await vault.read(sid);
      if (!tokens || tokens.absoluteExpiresAt <= clock()) throw errors.unauthenticated();
      toucher.maybeTouch(sid, tokens.absoluteExpiresAt);
      if (tokens.refreshAt > clock()) return tokens;
      return unwrap(await refresher.refreshTokensOnce(sid, tokens));
    },
    /** After upstream answered 401 to `used`: newer tokens (refreshed once, or by someone else). */
    async tokensAfterRejection(sid: string, used: SessionTokens): Promise<SessionTokens> {
      return unwrap(await refresher.refreshTokensOnce(sid, used));
    },
  };
}

export function endedOrFailed(result: Exclude<FreshTokens, { kind: 'ok' }>): AppError {
  return result.kind === 'ended' ? errors.sessionExpired() : failureToError(result.failure);
}

export type TokenAccess = ReturnType<typeof createTokenAccess>;
