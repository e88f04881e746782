import { classifyUpstreamError, isRecord, readJson, type UpstreamClient } from '../upstream/client.js';
import { positiveSeconds, unexpectedAnswer, type AuthDialect, type RefreshOutcome, type SessionUser, type TokenSet } from './dialect.js';

/** Claims of a JWT access token, read only to name the user; never trusted for access. */
function unverifiedClaims(token: string): Record<string, unknown> {
  const part = token.split('.')[1];
  if (!part) return {};
  try {
    const claims: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    return isRecord(claims) ? claims : {};
  } catch {
    return {};
  }
}

/** The generic JSON refresh API of seed 004 and the contract's `AUTH_MODE=json` paragraph. */
export function createJsonDialect(upstream: UpstreamClient, paths: { loginPath: string; refreshPath: string }): AuthDialect {
  const post = async (path: string, body: unknown, requestId: string | undefined) => {
    const res = await upstream.request({
      method: 'POST',
      path,
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify(body),
      requestId,
    });
    return { status: res.statusCode, json: await readJson(res.body) };
  };
  const toTokens = (json: unknown): TokenSet | null => {
    if (!isRecord(json) || typeof json.accessToken !== 'string' || json.accessToken === '') return null;
    return {
      accessToken: json.accessToken,
      refreshToken: typeof json.refreshToken === 'string' && json.refreshToken !== '' ? json.refreshToken : null,
      expiresInSeconds: positiveSeconds(json.expiresIn, 3600),
    };
  };

  return {
    async login(credentials, _clientId, requestId) {
      try {
        const { status, json } = await post(paths.loginPath, { username: credentials.email, password: credentials.password }, requestId);
        if (status === 200) {
          const tokens = toTokens(json);
          if (!tokens) return { kind: 'failed', failure: 'unavailable', cause: unexpectedAnswer(paths.loginPath, status) };
          const claims = unverifiedClaims(tokens.accessToken);
          const user: SessionUser = {
            id: typeof claims.sub === 'string' ? claims.sub : credentials.email,
            email: typeof claims.email === 'string' ? claims.email : credentials.email,
            fullName: typeof claims.name === 'string' ? claims.name : null,
          };
          return { kind: 'ok', tokens, user };
        }
        if (status === 400 || status === 401) {
          const message = isRecord(json) && typeof json.response === 'string' ? json.response : undefined;
          return { kind: 'refused', refusal: { kind: 'wrong_credentials', message } };
        }
        return { kind: 'failed', failure: 'unavailable', cause: unexpectedAnswer(paths.loginPath, status) };
      } catch (err) {
        return { kind: 'failed', failure: classifyUpstreamError(err), cause: err };
      }
    },

    async refresh(refreshToken, _clientId, requestId): Promise<RefreshOutcome> {
      try {
        const { status, json } = await post(paths.refreshPath, { refreshToken }, requestId);
        if (status === 200) {
          const tokens = toTokens(json);
          return tokens ? { kind: 'ok', tokens } : { kind: 'failed', failure: 'unavailable', cause: unexpectedAnswer(paths.refreshPath, status) };
        }
        if (status === 401) return { kind: 'refused' };
        return { kind: 'failed', failure: 'unavailable', cause: unexpectedAnswer(paths.refreshPath, status) };
      } catch (err) {
        return { kind: 'failed', failure: classifyUpstreamError(err), cause: err };
      }
    },
  };
}
