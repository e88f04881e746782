/**
 * Seeds 002 and 003: `POST /api/token`, form-encoded only, with the password grant (and its
 * `totp` and `must_reset_password` answers) and the refresh_token grant. One live refresh
 * token per client_id: a new one for that client_id invalidates the earlier one, so a
 * refresh token works once.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { opaque, type FakeUser } from './accounts.js';
import type { FakeContext } from './context.js';
import { headerValue, mediaType, sendJson, type JsonValue } from './http.js';

interface NexudusRefreshRecord {
  clientId: string;
  userId: number;
  expiresAt: number;
}

export interface NexudusTokens {
  /** `POST /api/token`. */
  tokenEndpoint(req: IncomingMessage, res: ServerResponse, body: Buffer): Promise<void>;
  /** A new access token and the client_id's one live refresh token; `token` is the exchange endpoint's field name. */
  tokenPair(user: FakeUser, clientId: string, ttlSeconds: number, accessField: 'access_token' | 'token'): JsonValue;
  liveRefreshToken(clientId: string): string | undefined;
}

export function createNexudusTokens(ctx: FakeContext): NexudusTokens {
  const { accounts, hooks, settings } = ctx;
  const refreshTokens = new Map<string, NexudusRefreshRecord>();
  const liveByClient = new Map<string, string>();

  /** Seed 002: a new refresh token for a client_id invalidates every earlier one of that client_id. */
  const newRefreshToken = (clientId: string, userId: number): string => {
    const previous = liveByClient.get(clientId);
    if (previous !== undefined) refreshTokens.delete(previous);
    const token = opaque('rt_');
    refreshTokens.set(token, { clientId, userId, expiresAt: Date.now() + settings.refreshTokenTtlSeconds * 1000 });
    liveByClient.set(clientId, token);
    accounts.remember(token);
    return token;
  };

  const killClientRefresh = (clientId: string | undefined): void => {
    if (clientId === undefined) return;
    const token = liveByClient.get(clientId);
    if (token !== undefined) refreshTokens.delete(token);
    liveByClient.delete(clientId);
  };

  const tokenPair = (user: FakeUser, clientId: string, ttlSeconds: number, accessField: 'access_token' | 'token'): JsonValue => {
    const access = accounts.newAccessToken(user.id, ttlSeconds);
    const refresh = newRefreshToken(clientId, user.id);
    return { [accessField]: access, token_type: 'bearer', expires_in: ttlSeconds, refresh_token: refresh };
  };

  const passwordGrant = (req: IncomingMessage, res: ServerResponse, form: URLSearchParams): void => {
    hooks.stats.passwordGrants++;
    const username = form.get('username') ?? '';
    const password = form.get('password') ?? '';
    const user = accounts.byEmail(username);
    if (user === undefined || user.password !== password) {
      return sendJson(res, 400, { error: 'invalid_grant', error_description: 'The user name or password is incorrect.' });
    }
    // Second factor before the reset demand: the reset token is itself a credential.
    if (user.totp !== undefined && form.get('totp') !== user.totp) {
      return sendJson(res, 400, { error: 'two_factor_auth_check', error_description: 'Two-factor authentication code is missing or invalid.' });
    }
    if (user.mustResetPassword === true) {
      // Deliberately not in issuedTokens(): the BFF hands it to the browser by contract.
      return sendJson(res, 400, { error: 'must_reset_password', error_description: opaque('reset_') });
    }
    // Seed 002: without a client_id header the client id is the email.
    const clientId = headerValue(req, 'client_id') ?? user.email;
    return sendJson(res, 200, tokenPair(user, clientId, settings.accessTokenTtlSeconds, 'access_token'));
  };

  const refreshGrant = async (req: IncomingMessage, res: ServerResponse, form: URLSearchParams): Promise<void> => {
    hooks.stats.refreshGrants++;
    const clientId = headerValue(req, 'client_id');
    const gate = await hooks.refreshGate(req, res);
    if (gate === 'handled') return;
    if (gate === 'invalid_grant') {
      killClientRefresh(clientId);
      return sendJson(res, 400, { error: 'invalid_grant' });
    }
    // Checked after the delay, so two concurrent refreshes with one token race like they would upstream.
    const token = form.get('refresh_token') ?? '';
    const rec = refreshTokens.get(token);
    if (clientId === undefined || rec === undefined || rec.clientId !== clientId
      || liveByClient.get(clientId) !== token || rec.expiresAt <= Date.now()) {
      return sendJson(res, 400, { error: 'invalid_grant' });
    }
    const user = accounts.byId(rec.userId);
    if (user === undefined) return sendJson(res, 400, { error: 'invalid_grant' });
    return sendJson(res, 200, tokenPair(user, clientId, settings.accessTokenTtlSeconds, 'access_token'));
  };

  return {
    async tokenEndpoint(req, res, body) {
      // Seed 003: anything but a form body (a JSON one in particular) is unsupported_grant_type.
      if (mediaType(req) !== 'application/x-www-form-urlencoded') {
        return sendJson(res, 400, { error: 'unsupported_grant_type' });
      }
      const form = new URLSearchParams(body.toString('utf8'));
      const grant = form.get('grant_type');
      if (grant === 'password') return passwordGrant(req, res, form);
      if (grant === 'refresh_token') return refreshGrant(req, res, form);
      return sendJson(res, 400, { error: 'unsupported_grant_type' });
    },
    tokenPair,
    liveRefreshToken(clientId) {
      const token = liveByClient.get(clientId);
      if (token === undefined) return undefined;
      const rec = refreshTokens.get(token);
      return rec !== undefined && rec.expiresAt > Date.now() ? token : undefined;
    },
  };
}
