import { classifyUpstreamError, isRecord, readJson, type UpstreamClient } from '../upstream/client.js';
import { positiveSeconds, unexpectedAnswer, type AuthDialect, type LoginOutcome, type RefreshOutcome, type SessionUser, type TokenSet } from './dialect.js';

const FORM = 'application/x-www-form-urlencoded';

/** Nexudus token endpoint (seeds 002/003): form-encoded grants, `client_id` as a header. */
export function createNexudusDialect(upstream: UpstreamClient, opts: { exchangeValidMinutes: number }): AuthDialect {
  const tokenRequest = async (form: URLSearchParams, clientId: string, requestId: string | undefined) => {
    const res = await upstream.request({
      method: 'POST',
      path: '/api/token',
      headers: { 'content-type': FORM, accept: 'application/json', client_id: clientId },
      body: form.toString(),
      requestId,
    });
    return { status: res.statusCode, json: await readJson(res.body) };
  };

  const toTokens = (json: unknown): TokenSet | null => {
    if (!isRecord(json) || typeof json.access_token !== 'string' || json.access_token === '') return null;
    return {
      accessToken: json.access_token,
      refreshToken: typeof json.refresh_token === 'string' && json.refresh_token !== '' ? json.refresh_token : null,
      expiresInSeconds: positiveSeconds(json.expires_in, 3600),
    };
  };

  /** The user, or the status of an answer that is not one. */
  const fetchUser = async (accessToken: string, requestId: string | undefined): Promise<SessionUser | number> => {
    const res = await upstream.request({
      method: 'GET',
      path: '/api/auth/me',
      headers: { accept: 'application/json', authorization: `Bearer ${accessToken}` },
      requestId,
    });
    const me = await readJson(res.body);
    if (res.statusCode !== 200 || !isRecord(me)) return res.statusCode;
    // Only named profile fields are kept: the answer also carries AccessToken.
    return {
      id: String(me.Id ?? me.UniqueId ?? me.Email ?? ''),
      email: typeof me.Email === 'string' ? me.Email : null,
      fullName: typeof me.FullName === 'string' ? me.FullName : null,
    };
  };

  const completeLogin = async (tokens: TokenSet, requestId: string | undefined): Promise<LoginOutcome> => {
    const user = await fetchUser(tokens.accessToken, requestId);
    if (typeof user === 'number') return { kind: 'failed', failure: 'unavailable', cause: unexpectedAnswer('/api/auth/me', user) };
    return { kind: 'ok', tokens, user };
  };

  return {
    async login(credentials, clientId, requestId) {
      const form = new URLSearchParams({ grant_type: 'password', username: credentials.email, password: credentials.password });
      if (credentials.totp !== undefined) form.set('totp', credentials.totp);
      try {
        const { status, json } = await tokenRequest(form, clientId, requestId);
        if (status === 200) {
          const tokens = toTokens(json);
          return tokens ? await completeLogin(tokens, requestId) : { kind: 'failed', failure: 'unavailable', cause: unexpectedAnswer('/api/token', status) };
        }
        if (status >= 400 && status < 500 && isRecord(json)) {
          const description = typeof json.error_description === 'string' ? json.error_description : undefined;
          switch (json.error) {
            case 'invalid_grant':
              return { kind: 'refused', refusal: { kind: 'wrong_credentials', message: description } };
            case 'two_factor_auth_check':
              return { kind: 'refused', refusal: { kind: 'two_factor_required', message: description } };
            case 'must_reset_password':
              return { kind: 'refused', refusal: { kind: 'must_reset_password', resetToken: description ?? null } };
          }
        }
        return { kind: 'failed', failure: 'unavailable', cause: unexpectedAnswer('/api/token', status) };
      } catch (err) {
        return { kind: 'failed', failure: classifyUpstreamError(err), cause: err };
      }
    },

    async refresh(refreshToken, clientId, requestId): Promise<RefreshOutcome> {
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken });
      try {
        const { status, json } = await tokenRequest(form, clientId, requestId);
        if (status === 200) {
          const tokens = toTokens(json);
          return tokens ? { kind: 'ok', tokens } : { kind: 'failed', failure: 'unavailable', cause: unexpectedAnswer('/api/token', status) };
        }
        // Like oauth2-proxy: only a refusal of the grant or the client ends the session.
        if (status === 400 || status === 401) {
          if (isRecord(json) && (json.error === 'invalid_grant' || json.error === 'invalid_client')) return { kind: 'refused' };
        }
        return { kind: 'failed', failure: 'unavailable', cause: unexpectedAnswer('/api/token', status) };
      } catch (err) {
        return { kind: 'failed', failure: classifyUpstreamError(err), cause: err };
      }
    },

    async exchange(jwt, clientId, requestId) {
      const query = new URLSearchParams({ token: jwt, validForInMinutes: String(opts.exchangeValidMinutes) });
      try {
        const res = await upstream.request({
          method: 'POST',
          path: `/api/sys/users/exchange?${query.toString()}`,
          headers: { accept: 'application/json', client_id: clientId },
          requestId,
        });
        const json = await readJson(res.body);
        if (res.statusCode === 200 && isRecord(json) && typeof json.token === 'string' && json.token !== '') {
          return await completeLogin({
            accessToken: json.token,
            refreshToken: typeof json.refresh_token === 'string' && json.refresh_token !== '' ? json.refresh_token : null,
            expiresInSeconds: positiveSeconds(json.expires_in, opts.exchangeValidMinutes * 60),
          }, requestId);
        }
        if (res.statusCode >= 400 && res.statusCode < 500) {
          return { kind: 'refused', refusal: { kind: 'link_invalid' } };
        }
        return { kind: 'failed', failure: 'unavailable', cause: unexpectedAnswer('/api/sys/users/exchange', res.statusCode) };
      } catch (err) {
        return { kind: 'failed', failure: classifyUpstreamError(err), cause: err };
      }
    },
  };
}
