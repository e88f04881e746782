/**
 * Seed 004, the generic JSON dialect: `POST /api/login/refresh-token` with `{ refreshToken }`
 * answers `{ accessToken, refreshToken, expiresIn, tokenType }`, or 401
 * `{ code: '401', response: 'RefreshToken Expired' }`. A refresh token works once. The seed
 * has no sign-in; `POST /api/login` with `{ username, password }` is this fake's own.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { opaque, type FakeUser } from './accounts.js';
import type { FakeContext } from './context.js';
import { parseJsonObject, sendJson, type JsonValue } from './http.js';

interface JsonRefreshRecord {
  userId: number;
  expiresAt: number;
}

export interface JsonRefresh {
  /** `POST /api/login`. */
  login(res: ServerResponse, body: Buffer): void;
  /** `POST /api/login/refresh-token`. */
  refresh(req: IncomingMessage, res: ServerResponse, body: Buffer): Promise<void>;
}

export function createJsonRefresh(ctx: FakeContext): JsonRefresh {
  const { accounts, hooks, settings } = ctx;
  const refreshTokens = new Map<string, JsonRefreshRecord>();

  const newRefreshToken = (userId: number): string => {
    const token = opaque('rt_');
    refreshTokens.set(token, { userId, expiresAt: Date.now() + settings.refreshTokenTtlSeconds * 1000 });
    accounts.remember(token);
    return token;
  };

  const tokenPair = (user: FakeUser): JsonValue => {
    const ttl = settings.accessTokenTtlSeconds;
    return { accessToken: accounts.newAccessToken(user.id, ttl), refreshToken: newRefreshToken(user.id), expiresIn: ttl, tokenType: 'Bearer' };
  };

  return {
    login(res, body) {
      hooks.stats.jsonLogins++;
      const obj = parseJsonObject(body);
      if (obj === undefined || typeof obj['username'] !== 'string' || typeof obj['password'] !== 'string') {
        return sendJson(res, 400, { code: '400', response: 'Bad Request' });
      }
      const user = accounts.byEmail(obj['username']);
      if (user === undefined || user.password !== obj['password']) {
        return sendJson(res, 401, { code: '401', response: 'Invalid credentials' });
      }
      return sendJson(res, 200, tokenPair(user));
    },

    async refresh(req, res, body) {
      hooks.stats.jsonRefreshes++;
      const obj = parseJsonObject(body);
      if (obj === undefined) return sendJson(res, 400, { code: '400', response: 'Bad Request' });
      const token = typeof obj['refreshToken'] === 'string' ? obj['refreshToken'] : '';
      const gate = await hooks.refreshGate(req, res);
      if (gate === 'handled') return;
      const rec = refreshTokens.get(token);
      if (gate === 'invalid_grant' || rec === undefined || rec.expiresAt <= Date.now()) {
        refreshTokens.delete(token);
        return sendJson(res, 401, { code: '401', response: 'RefreshToken Expired' });
      }
      const user = accounts.byId(rec.userId);
      refreshTokens.delete(token);
      if (user === undefined) return sendJson(res, 401, { code: '401', response: 'RefreshToken Expired' });
      return sendJson(res, 200, tokenPair(user));
    },
  };
}
