/**
 * Seed 000: `POST /api/sys/users/token/refresh`, the short-lived token the portal puts in
 * `?t=` of its login redirect (not an OAuth refresh), answered in an ActionConfirmation
 * envelope whose `Status` mirrors the HTTP status (200, or 500 on failure). The token is
 * single use and expires quickly: the portal's login (`GET {portal}/user/login?server=true&t=`,
 * or `/login?t=` as the seed's use case writes it) takes it once. Also the "Exchange JWT"
 * endpoint seed 000 points to, `POST /api/sys/users/exchange`: no seed describes it, so its
 * shape here (`?token=&validForInMinutes=`, a Nexudus token pair with the access token as
 * `token`) is this fake's own, as are the portal login's answers (302 to `redirectUrl`, or 401).
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FakeUser } from './accounts.js';
import type { FakeContext } from './context.js';
import { headerValue, sendJson } from './http.js';
import type { NexudusTokens } from './nexudus-token.js';

const EXCHANGE_JWT_TTL_S = 600;
const DEFAULT_EXCHANGE_MINUTES = 60;
// Seed 000 says only "expires quickly".
const ONE_TIME_TTL_S = 60;

/** The portal's login paths a one-time token is taken on: `/user/login`, `/login`, under an optional language segment. */
export const PORTAL_LOGIN_PATH = /^(?:\/[A-Za-z-]{2,10})?\/(?:user\/)?login$/;

interface OneTimeRecord {
  userId: number;
  expiresAt: number;
  used: boolean;
}

interface ExchangeJwtRecord {
  email: string;
  expiresAt: number;
  used: boolean;
}

export interface OneTimeTokens {
  /** `POST /api/sys/users/token/refresh`, bearer already checked. */
  oneTimeToken(res: ServerResponse, user: FakeUser): void;
  /** `GET {portal}/user/login?t=`: a live one-time token signs in once (302 to `redirectUrl`); again, or unknown: 401. */
  portalLogin(res: ServerResponse, query: URLSearchParams): void;
  /** `POST /api/sys/users/exchange`: a server-issued JWT, used once, for a token pair. */
  exchange(req: IncomingMessage, res: ServerResponse, query: URLSearchParams): void;
  /** A JWT `exchange` accepts, as the server side would hand one out. */
  issueExchangeJwt(email: string): string;
}

export function createOneTimeTokens(ctx: FakeContext, nexudus: NexudusTokens): OneTimeTokens {
  const { accounts, hooks } = ctx;
  const exchangeJwts = new Map<string, ExchangeJwtRecord>();
  const oneTimeTokens = new Map<string, OneTimeRecord>();

  return {
    oneTimeToken(res, user) {
      hooks.stats.oneTimeTokens++;
      // Seed 000: `Status` is the HTTP status mirrored in the body, 500 on failure.
      if (hooks.oneTimeTokenFails) {
        return sendJson(res, 500, { WasSuccessful: false, Value: null, Status: 500, Message: 'failed', Errors: null });
      }
      const value = randomBytes(16).toString('hex');
      oneTimeTokens.set(value, { userId: user.id, expiresAt: Date.now() + ONE_TIME_TTL_S * 1000, used: false });
      accounts.remember(value);
      return sendJson(res, 200, { WasSuccessful: true, Value: value, Status: 200, Message: null, Errors: null });
    },

    portalLogin(res, query) {
      const rec = oneTimeTokens.get(query.get('t') ?? '');
      if (rec === undefined || rec.used || rec.expiresAt <= Date.now() || accounts.byId(rec.userId) === undefined) {
        return sendJson(res, 401, { Message: 'Invalid token' });
      }
      // Seed 000: "The JWT token is single-use".
      rec.used = true;
      const target = query.get('redirectUrl') ?? '';
      sendJson(res, 302, { signedIn: true }, { Location: target.startsWith('/') && !target.startsWith('//') ? target : '/' });
    },

    exchange(req, res, query) {
      hooks.stats.exchanges++;
      const jwt = query.get('token') ?? '';
      const rec = exchangeJwts.get(jwt);
      const user = rec === undefined ? undefined : accounts.byEmail(rec.email);
      if (rec === undefined || rec.used || rec.expiresAt <= Date.now() || accounts.verifyJwt(jwt) === undefined || user === undefined) {
        return sendJson(res, 401, { Message: 'Invalid token' });
      }
      rec.used = true;
      const minutesRaw = Number(query.get('validForInMinutes') ?? DEFAULT_EXCHANGE_MINUTES);
      const minutes = Number.isFinite(minutesRaw) && minutesRaw > 0 ? minutesRaw : DEFAULT_EXCHANGE_MINUTES;
      const clientId = headerValue(req, 'client_id') ?? user.email;
      return sendJson(res, 200, nexudus.tokenPair(user, clientId, Math.round(minutes * 60), 'token'));
    },

    issueExchangeJwt(email) {
      const user = accounts.byEmail(email);
      if (user === undefined) throw new Error(`fake upstream: no user ${email}`);
      const now = Math.floor(Date.now() / 1000);
      const jwt = accounts.signJwt({ sub: String(user.id), email: user.email, aud: 'exchange', iat: now, exp: now + EXCHANGE_JWT_TTL_S, jti: randomBytes(8).toString('hex') });
      exchangeJwts.set(jwt, { email: user.email, expiresAt: (now + EXCHANGE_JWT_TTL_S) * 1000, used: false });
      accounts.remember(jwt);
      return jwt;
    },
  };
}
