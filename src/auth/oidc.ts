import { AsyncLocalStorage } from 'node:async_hooks';
import * as client from 'openid-client';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { isLoopbackHost, type OidcConfig } from '../config.js';
import { failureToError, type UpstreamFailure } from '../upstream/client.js';
import type { AuthDialect, RedirectSignIn, RefreshOutcome, SignInRefusal, TokenSet } from './dialect.js';

const LOGOUT_EVENT = 'http://schemas.openid.net/event/backchannel-logout';

/** Transport trouble (provider down, slow, garbage) versus a refusal the user must see. */
function failureOf(err: unknown): UpstreamFailure {
  const name = (err as { name?: string } | null)?.name;
  const cause = (err as { cause?: { name?: string } } | null)?.cause?.name;
  return name === 'TimeoutError' || cause === 'TimeoutError' || name === 'AbortError' ? 'timeout' : 'unavailable';
}

// What openid-client reports when the provider's answer is broken rather than a refusal.
const BROKEN_ANSWER = new Set(['OAUTH_RESPONSE_IS_NOT_CONFORM', 'OAUTH_RESPONSE_IS_NOT_JSON', 'OAUTH_PARSE_ERROR']);

/**
 * A refusal the browser should see (the provider said no, or its ID token did not validate)
 * or null for trouble on the way (provider down, 5xx, garbage): 502/504, as in the other modes.
 */
function refusalOf(err: unknown): SignInRefusal | null {
  if (err instanceof client.ResponseBodyError && (err.status >= 500 || err.error === 'server_error' || err.error === 'temporarily_unavailable')) return null;
  if (err instanceof client.ResponseBodyError || err instanceof client.AuthorizationResponseError) {
    return { kind: 'provider_refused', message: err.error_description ?? `The provider refused the sign-in (${err.error}).` };
  }
  if (err instanceof client.ClientError && !BROKEN_ANSWER.has(err.code ?? '')) {
    return { kind: 'provider_refused', message: 'The provider’s answer did not validate.' };
  }
  return null;
}

/**
 * `AUTH_MODE=oidc`: authorization code + PKCE (S256), state and nonce, on openid-client.
 * The provider's metadata is discovered on first use and kept; a failed discovery is tried
 * again by the next request (502 until then), so cloakroom starts while the provider is down.
 */
export function createOidcDialect(cfg: OidcConfig, timeoutMs: number): AuthDialect {
  const issuer = new URL(cfg.issuer);
  let configuration: Promise<client.Configuration> | null = null;
  let jwks: ReturnType<typeof createRemoteJWKSet> | null = null;
  // openid-client takes one fetch per Configuration and no headers per call: the browser
  // request a call is made for reaches that fetch through this dialect's own async context.
  const onBehalfOf = new AsyncLocalStorage<string | undefined>();
  const fetchWithRequestId: client.CustomFetch = (url, options) => {
    const requestId = onBehalfOf.getStore();
    return fetch(url, requestId === undefined ? options : { ...options, headers: { ...options.headers, 'x-request-id': requestId } });
  };

  const discovered = (): Promise<client.Configuration> => {
    configuration ??= client
      .discovery(
        issuer,
        cfg.clientId,
        undefined,
        // client_secret_basic: the one method RFC 6749 says every provider must support.
        cfg.clientSecret ? client.ClientSecretBasic(cfg.clientSecret) : client.None(),
        // Config allows http only on a loopback host (development and tests).
        { timeout: Math.ceil(timeoutMs / 1000), ...(issuer.protocol === 'http:' && isLoopbackHost(issuer.hostname) ? { execute: [client.allowInsecureRequests] } : {}) },
      )
      .then((c) => {
        c.timeout = Math.ceil(timeoutMs / 1000);
        c[client.customFetch] = fetchWithRequestId;
        return c;
      })
      .catch((err: unknown) => {
        configuration = null;
        throw err;
      });
    return configuration;
  };

  /** The provider's metadata, or the contract's 502/504 while it cannot be had. */
  const discoveredOrFail = async (): Promise<client.Configuration> => {
    try {
      return await discovered();
    } catch (err) {
      throw failureToError(failureOf(err), err);
    }
  };

  const tokenSet = (t: client.TokenEndpointResponse): TokenSet => ({
    accessToken: t.access_token,
    refreshToken: typeof t.refresh_token === 'string' && t.refresh_token !== '' ? t.refresh_token : null,
    expiresInSeconds: typeof t.expires_in === 'number' && t.expires_in > 0 ? t.expires_in : 300,
    ...(typeof t.id_token === 'string' ? { idToken: t.id_token } : {}),
  });

  const redirectSignIn: RedirectSignIn = {
    async authorizationUrl({ state, nonce, codeChallenge }) {
      const c = await discoveredOrFail();
      return client.buildAuthorizationUrl(c, {
        redirect_uri: cfg.redirectUri,
        scope: cfg.scopes,
        response_type: 'code',
        code_challenge: codeChallenge,
        code_challenge_method: 'S256',
        state,
        nonce,
      });
    },

    async completeSignIn(callbackQuery, checks, requestId) {
      let c: client.Configuration;
      try {
        c = await discovered();
      } catch (err) {
        return { kind: 'failed', failure: failureOf(err), cause: err };
      }
      const current = new URL(cfg.redirectUri);
      current.search = callbackQuery;
      let tokens: client.TokenEndpointResponse & client.TokenEndpointResponseHelpers;
      try {
        const grant = { pkceCodeVerifier: checks.codeVerifier, expectedState: checks.state, expectedNonce: checks.nonce, idTokenExpected: true };
        tokens = await onBehalfOf.run(requestId, () => client.authorizationCodeGrant(c, current, grant));
      } catch (err) {
        // An ID token that fails validation (signature, nonce, audience) is a refused sign-in too.
        const refusal = refusalOf(err);
        return refusal ? { kind: 'refused', refusal } : { kind: 'failed', failure: failureOf(err), cause: err };
      }
      const claims = tokens.claims();
      if (!claims) return { kind: 'refused', refusal: { kind: 'provider_refused', message: 'The provider sent no ID token.' } };
      let email = typeof claims.email === 'string' ? claims.email : null;
      let name = typeof claims.name === 'string' ? claims.name : null;
      if ((email === null || name === null) && c.serverMetadata().userinfo_endpoint) {
        try {
          const info = await onBehalfOf.run(requestId, () => client.fetchUserInfo(c, tokens.access_token, claims.sub));
          email ??= typeof info.email === 'string' ? info.email : null;
          name ??= typeof info.name === 'string' ? info.name : null;
        } catch (err) {
          // A userinfo refusal leaves the claims as the ID token had them; trouble is trouble.
          if (!refusalOf(err)) return { kind: 'failed', failure: failureOf(err), cause: err };
        }
      }
      return {
        kind: 'ok',
        tokens: tokenSet(tokens),
        user: { id: claims.sub, email, fullName: name },
        subject: claims.sub,
        providerSid: typeof claims.sid === 'string' ? claims.sid : undefined,
      };
    },

    async endSessionUrl(idToken) {
      const c = await discoveredOrFail();
      if (!c.serverMetadata().end_session_endpoint) return null;
      return client
        .buildEndSessionUrl(c, {
          ...(idToken ? { id_token_hint: idToken } : {}),
          ...(cfg.postLogoutRedirectUri ? { post_logout_redirect_uri: cfg.postLogoutRedirectUri } : {}),
        })
        .toString();
    },

    async verifyLogoutToken(jwt) {
      const c = await discoveredOrFail();
      const meta = c.serverMetadata();
      if (!meta.jwks_uri) return null;
      jwks ??= createRemoteJWKSet(new URL(meta.jwks_uri));
      try {
        // jose never accepts alg "none" here; iss, aud, exp (when present) and iat are checked.
        const { payload } = await jwtVerify(jwt, jwks, { issuer: meta.issuer, audience: cfg.clientId, requiredClaims: ['iat'] });
        const events = payload['events'];
        if (typeof events !== 'object' || events === null || typeof (events as Record<string, unknown>)[LOGOUT_EVENT] !== 'object') return null;
        if (payload['nonce'] !== undefined) return null;
        const sid = typeof payload['sid'] === 'string' && payload['sid'] !== '' ? payload['sid'] : undefined;
        const sub = typeof payload.sub === 'string' && payload.sub !== '' ? payload.sub : undefined;
        if (!sid && !sub) return null;
        return { ...(sid ? { sid } : {}), ...(sub ? { sub } : {}) };
      } catch {
        return null;
      }
    },
  };

  return {
    redirectSignIn,

    async refresh(refreshToken, _clientId, requestId): Promise<RefreshOutcome> {
      try {
        const c = await discovered();
        return { kind: 'ok', tokens: tokenSet(await onBehalfOf.run(requestId, () => client.refreshTokenGrant(c, refreshToken))) };
      } catch (err) {
        // Like the other modes: only a refused grant or client ends the session.
        if (err instanceof client.ResponseBodyError && (err.error === 'invalid_grant' || err.error === 'invalid_client')) return { kind: 'refused' };
        return { kind: 'failed', failure: failureOf(err), cause: err };
      }
    },
  };
}
