/** Types of the cloakroom browser client (hand-written; the module itself is plain JavaScript). */

export interface CloakroomUser {
  id: string | number;
  email: string;
  fullName?: string;
  [field: string]: unknown;
}

export type SessionAnswer =
  | { authenticated: false }
  | { authenticated: true; user: CloakroomUser; expiresAt: string };

export interface LoginRequest {
  email: string;
  password: string;
  /** The two-factor code, when the first attempt rejected with `two_factor_required`. */
  totp?: string;
  /** A persistent cookie (Max-Age) instead of a browser-session one. */
  remember?: boolean;
}

export interface LogoutResult {
  /** oidc mode: the provider's end-session URL, to navigate to. */
  logoutUrl?: string;
}

/** What every rejection of the client is: the contract's `{error, message}` and the status. */
export declare class CloakroomError extends Error {
  readonly status: number;
  /** The contract's error code, e.g. `invalid_grant`, `two_factor_required`, `must_reset_password`. */
  readonly code: string;
  /** With `must_reset_password` only. */
  readonly resetToken?: string;
}

export interface ClientOptions {
  /** Called when an API call answers 401 `session_expired` or `unauthenticated`. */
  onSessionEnded?: (code: 'session_expired' | 'unauthenticated') => void;
  /** Where cloakroom is, when not on this page's origin root (e.g. `/bff`). Default `''`. */
  baseUrl?: string;
  /** A fetch to use instead of `globalThis.fetch` (tests, non-window hosts). */
  fetch?: typeof fetch;
}

export interface CloakroomClient {
  /** `fetch` of a same-origin `/api/*` path with `X-CSRF: 1` and `credentials: "same-origin"`. */
  fetch(path: string, init?: RequestInit): Promise<Response>;
  /** The body of `GET /auth/session`. */
  session(): Promise<SessionAnswer>;
  /** Resolves to the signed-in user; rejects with a {@link CloakroomError}. */
  login(request: LoginRequest): Promise<CloakroomUser>;
  /** Resolves once the session has ended (`everywhere`: every session of this user). */
  logout(options?: { everywhere?: boolean }): Promise<LogoutResult>;
  /** `/links/download?path=...`, for an `href`. */
  downloadUrl(path: string): string;
  /** `/links/portal?redirectUrl=...`, for an `href`. */
  portalUrl(redirectUrl?: string): string;
}

export declare function createClient(options?: ClientOptions): CloakroomClient;
