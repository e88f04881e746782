import type { UpstreamFailure } from '../upstream/client.js';

export interface TokenSet {
  accessToken: string;
  /** null when the upstream did not send one (keep the previous refresh token). */
  refreshToken: string | null;
  expiresInSeconds: number;
  idToken?: string;
}

export interface SessionUser {
  id: string;
  email: string | null;
  fullName: string | null;
  [claim: string]: unknown;
}

export interface Credentials { email: string; password: string; totp?: string }

/**
 * Why the upstream said no to a sign-in, in its terms; `refusalError` (errors.ts) alone turns
 * it into the contract's answer, and callers switch on `kind`, never on an error code.
 */
export type SignInRefusal =
  /** Wrong user name or password; `message`: upstream's own wording, when it sent one. */
  | { kind: 'wrong_credentials'; message?: string }
  | { kind: 'two_factor_required'; message?: string }
  /** The password was right but must be changed first; upstream hands over a reset token. */
  | { kind: 'must_reset_password'; resetToken: string | null }
  /** A server-issued sign-in link (exchange) that is invalid or has expired. */
  | { kind: 'link_invalid' }
  /** The OIDC provider said no, or its answer (ID token) did not validate. */
  | { kind: 'provider_refused'; message: string };

/**
 * Upstream trouble: the contract's 502/504 (`failure`), and what went wrong (`cause`: the
 * transport error, e.g. ECONNREFUSED, DNS or TLS, or an `unexpectedAnswer`), for the one warn line
 * the error handler writes. Never a token or password: errors carry codes and messages only.
 */
export interface UpstreamFailed {
  kind: 'failed';
  failure: UpstreamFailure;
  cause?: unknown;
}

/** An answer that is neither the tokens nor a refusal (5xx, garbage): its status, nothing of its body. */
export function unexpectedAnswer(what: string, status: number): Error {
  return Object.assign(new Error(`${what} answered HTTP ${status} without usable tokens`), { code: 'UPSTREAM_UNEXPECTED_ANSWER' });
}

export type LoginOutcome =
  | { kind: 'ok'; tokens: TokenSet; user: SessionUser }
  | { kind: 'refused'; refusal: SignInRefusal }
  | UpstreamFailed;

export type RedirectSignInOutcome =
  | { kind: 'ok'; tokens: TokenSet; user: SessionUser; subject: string; providerSid: string | undefined }
  | { kind: 'refused'; refusal: SignInRefusal }
  | UpstreamFailed;

/**
 * Sign-in by redirect to a provider (oidc): the browser leaves for the authorization URL and
 * comes back to the callback; the provider also ends sessions (logout URL, back-channel logout).
 */
export interface RedirectSignIn {
  authorizationUrl(p: { state: string; nonce: string; codeChallenge: string }): Promise<URL>;
  /**
   * `callbackQuery`: the raw query string the provider sent the browser back with; `requestId`:
   * the callback's, sent to the provider's token and userinfo endpoints as `X-Request-Id`.
   */
  completeSignIn(callbackQuery: string, checks: { codeVerifier: string; state: string; nonce: string }, requestId?: string): Promise<RedirectSignInOutcome>;
  /** The provider's end_session_endpoint with `id_token_hint`, or null when it has none. */
  endSessionUrl(idToken: string | undefined): Promise<string | null>;
  /** Back-Channel Logout 1.0: the token's `sid` and/or `sub`, or null when it is not valid. */
  verifyLogoutToken(jwt: string): Promise<{ sid?: string; sub?: string } | null>;
}

/** Only `refused` ends a session; a failure keeps it (network, 5xx, garbage). */
export type RefreshOutcome =
  | { kind: 'ok'; tokens: TokenSet }
  | { kind: 'refused' }
  | UpstreamFailed;

/**
 * One upstream authentication protocol: nexudus, json or oidc. `requestId`: the browser
 * request the call is made for, sent upstream as `X-Request-Id` (a refresh carries the id of
 * the request that started it, docs/operations.md).
 */
export interface AuthDialect {
  /** Password sign-in (POST /auth/login); absent in oidc mode, where sign-in is a redirect. */
  login?(credentials: Credentials, clientId: string, requestId?: string): Promise<LoginOutcome>;
  refresh(refreshToken: string, clientId: string, requestId?: string): Promise<RefreshOutcome>;
  /** Server-issued JWT (magic link, checkout) to a session; absent where the upstream has none. */
  exchange?(jwt: string, clientId: string, requestId?: string): Promise<LoginOutcome>;
  /** oidc mode only: sign-in by redirect, and the provider's ways of ending a session. */
  redirectSignIn?: RedirectSignIn;
}

export function positiveSeconds(v: unknown, fallback: number): number {
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : fallback;
}
