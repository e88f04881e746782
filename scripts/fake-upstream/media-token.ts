/**
 * Seed 001: `GET /api/auth/media/customer` answers `{ jwt }`, a short-lived token the portal
 * appends as `?t=` to protected media, e.g. `/api/public/billing/invoices/{id}/pdf?t=`.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FakeUser } from './accounts.js';
import type { FakeContext } from './context.js';
import { sendJson } from './http.js';

export interface MediaTokens {
  /** `GET /api/auth/media/customer`, bearer already checked. */
  mediaToken(res: ServerResponse, user: FakeUser): void;
  /** A media JWT as `?t=`; a bearer also works when no `t` is given, as the public API would. */
  mediaAllowed(req: IncomingMessage, query: URLSearchParams): boolean;
}

export function createMediaTokens(ctx: FakeContext): MediaTokens {
  const { accounts, hooks, settings } = ctx;
  return {
    mediaToken(res, user) {
      hooks.stats.mediaTokens++;
      const now = Math.floor(Date.now() / 1000);
      const jwt = accounts.signJwt({ sub: String(user.id), aud: 'media', iat: now, exp: now + settings.mediaTokenTtlSeconds, jti: randomBytes(8).toString('hex') });
      accounts.remember(jwt);
      return sendJson(res, 200, { jwt });
    },
    mediaAllowed(req, query) {
      const t = query.get('t');
      if (t === null) {
        if (accounts.bearerUser(req) === undefined) return false;
        hooks.stats.apiCalls++;
        return true;
      }
      const payload = accounts.verifyJwt(t);
      return payload !== undefined && payload['aud'] === 'media' && typeof payload['sub'] === 'string'
        && accounts.byId(Number(payload['sub'])) !== undefined;
    },
  };
}
