import type { AppError } from '../errors.js';
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

export type LoginOutcome =
  | { kind: 'ok'; tokens: TokenSet; user: SessionUser }
  | { kind: 'refused'; error: AppError }
  | { kind: 'failed'; failure: UpstreamFailure };

/** Only `refused` ends a session; a failure keeps it (network, 5xx, garbage). */
export type RefreshOutcome =
  | { kind: 'ok'; tokens: TokenSet }
  | { kind: 'refused' }
  | { kind: 'failed'; failure: UpstreamFailure };

/** One upstream authentication protocol: nexudus, json or oidc. */
export interface AuthDialect {
  /** Password sign-in (POST /auth/login); absent in oidc mode, where sign-in is a redirect. */
  login?(credentials: Credentials, clientId: string): Promise<LoginOutcome>;
  refresh(refreshToken: string, clientId: string): Promise<RefreshOutcome>;
  /** Server-issued JWT (magic link, checkout) to a session; absent where the upstream has none. */
  exchange?(jwt: string, clientId: string): Promise<LoginOutcome>;
}

export function positiveSeconds(v: unknown, fallback: number): number {
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : fallback;
}
