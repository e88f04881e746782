import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Request, Response, Router } from 'express';
import { parse as parseCookies } from 'cookie';
import * as oauth from 'openid-client';
import type { RedirectSignIn, SessionUser } from '../auth/dialect.js';
import { errors, refusalError } from '../errors.js';
import { escapeUrlUnsafeChars } from '../core/link-urls.js';
import { MAX_REDIRECT_LENGTH, resolveReturnTo } from '../core/redirects.js';
import type { SessionLifecycle, SessionStart } from '../core/session-lifecycle.js';
import type { TokenSealer } from '../core/token-crypto.js';
import type { Metrics } from '../metrics.js';
import type { OidcStore } from '../store/oidc-store.js';
import type { AntiForgeryRule } from './anti-forgery.js';
import { requestIdOf } from './observe.js';
import { failureToError } from '../upstream/client.js';

/** How long a started sign-in may take at the provider. */
const ATTEMPT_TTL_MS = 10 * 60_000;

/** Back-Channel Logout is called by the provider, server to server: it proves itself with a signed token. */
export const OIDC_ANTI_FORGERY: Readonly<Record<string, AntiForgeryRule>> = { '/backchannel-logout': 'provider-called' };

export interface OidcRouteDeps {
  flow: RedirectSignIn;
  oidcStore: OidcStore;
  sealer: TokenSealer;
  sessions: Pick<SessionLifecycle, 'end'>;
  metrics: Metrics;
  cookie: { name: string; secure: boolean };
  establishSession(req: Request, init: SessionStart & { user: SessionUser; remember: boolean }): Promise<void>;
}

interface Attempt {
  /** The browser it was started in (its binding cookie). */
  b: string;
  v: string;
  n: string;
  /** SHA-256 of the returnTo that travels in `state`. */
  rh?: string;
  /** returnTo itself: attempts stored before it moved into `state` (a rolling deploy). */
  r?: string;
}

/**
 * `state` is `<random>.<returnTo, base64url>`: the return target travels with the browser, so the
 * stored attempt stays a few hundred bytes whatever returnTo's length (3.2 KB each before). It
 * cannot be swapped: the attempt is found under a digest of the whole state and holds the
 * returnTo's digest too, and the target is validated again on the way back.
 */
const encodeState = (random: string, returnTo: string) => `${random}.${Buffer.from(returnTo, 'utf8').toString('base64url')}`;
const returnToOf = (state: string): string | null => {
  const dot = state.indexOf('.');
  return dot === -1 ? null : Buffer.from(state.slice(dot + 1), 'base64url').toString('utf8');
};
const sha256 = (v: string) => createHash('sha256').update(v).digest('base64url');
/** A random part, a dot, and the longest returnTo's UTF-8 (3 bytes a UTF-16 unit) in base64url. */
const MAX_STATE_LENGTH = 64 + Math.ceil((MAX_REDIRECT_LENGTH * 3 * 4) / 3);

/**
 * `GET /auth/login`, `GET /auth/callback`, `POST /auth/backchannel-logout` (AUTH_MODE=oidc).
 *
 * A started sign-in is kept server-side under a digest of its `state` (PKCE verifier, nonce, the
 * returnTo's digest; sealed like tokens, a few hundred bytes), single use, for ten minutes, and bound to the browser by a random id in a
 * short-lived cookie. Tabs share that id, so sign-ins started in several tabs each complete; a
 * callback in another browser, or a state used once already, answers 400 `invalid_state`.
 */
export function mountOidcRoutes(router: Router, deps: OidcRouteDeps): void {
  const { flow, oidcStore, sealer } = deps;
  // SameSite=Lax whatever COOKIE_SAMESITE says: the callback is a top-level navigation that
  // comes from the provider's site, and a Strict cookie would not come with it.
  const bindingCookie = `${deps.cookie.name}-login`;
  const bindingOptions = { httpOnly: true, path: '/', secure: deps.cookie.secure, sameSite: 'lax' as const, maxAge: ATTEMPT_TTL_MS };
  const attemptAad = (state: string) => `oidc-attempt:${state}`;
  const bindingOf = (req: Request): string | undefined => {
    const value = req.headers.cookie ? parseCookies(req.headers.cookie)[bindingCookie] : undefined;
    return value !== undefined && /^[A-Za-z0-9_-]{43}$/.test(value) ? value : undefined;
  };

  router.get('/login', async (req: Request, res: Response) => {
    const target = resolveReturnTo((req.query as Record<string, unknown>).returnTo);
    if (!target.ok) throw errors.invalidRedirect('returnTo');
    // Counted before anything is stored: the address as TRUST_PROXY lets Express read it.
    const wait = await oidcStore.countSignInStart(req.ip ?? 'unknown');
    if (wait > 0) {
      deps.metrics.logins.inc({ outcome: 'rate_limited' });
      throw errors.rateLimited(wait, 'Too many sign-ins started from this address; try again shortly.');
    }
    const binding = bindingOf(req) ?? randomBytes(32).toString('base64url');
    const state = encodeState(oauth.randomState(), target.path);
    const nonce = oauth.randomNonce();
    const verifier = oauth.randomPKCECodeVerifier();
    const url = await flow.authorizationUrl({ state, nonce, codeChallenge: await oauth.calculatePKCECodeChallenge(verifier) });
    const attempt: Attempt = { b: binding, v: verifier, n: nonce, rh: sha256(target.path) };
    await oidcStore.putAttempt(state, sealer.seal(JSON.stringify(attempt), attemptAad(state)), ATTEMPT_TTL_MS);
    res.cookie(bindingCookie, binding, bindingOptions);
    res.status(302).set('Location', url.toString()).end();
  });

  router.get('/callback', async (req: Request, res: Response) => {
    const state = (req.query as Record<string, unknown>).state;
    const binding = bindingOf(req);
    if (typeof state !== 'string' || state === '' || state.length > MAX_STATE_LENGTH || !binding) throw errors.invalidState();
    const sealed = await oidcStore.takeAttempt(state);
    const opened = sealed === null ? null : sealer.open(sealed, attemptAad(state));
    const attempt = opened === null ? null : (JSON.parse(opened) as Attempt);
    if (!attempt || attempt.b !== binding) throw errors.invalidState();
    const carried = attempt.rh === undefined ? (attempt.r ?? null) : returnToOf(state);
    if (carried === null || (attempt.rh !== undefined && sha256(carried) !== attempt.rh)) throw errors.invalidState();
    const returnTo = resolveReturnTo(carried);
    if (!returnTo.ok || carried === '') throw errors.invalidState();
    const q = req.originalUrl.indexOf('?');
    const outcome = await flow.completeSignIn(q === -1 ? '' : req.originalUrl.slice(q), { codeVerifier: attempt.v, state, nonce: attempt.n }, requestIdOf(req));
    if (outcome.kind === 'failed') throw failureToError(outcome.failure, outcome.cause);
    if (outcome.kind === 'refused') {
      const error = refusalError(outcome.refusal);
      deps.metrics.logins.inc({ outcome: error.code });
      throw error;
    }
    await deps.establishSession(req, {
      tokens: outcome.tokens,
      user: outcome.user,
      clientId: randomUUID(),
      remember: false,
      providerOwners: { sid: outcome.providerSid, sub: outcome.subject },
    });
    deps.metrics.logins.inc({ outcome: 'ok' });
    res.status(302).set('Location', escapeUrlUnsafeChars(returnTo.path)).end();
  });

  // No anti-forgery header here: the provider calls it, not a browser (OIDC_ANTI_FORGERY).
  router.post('/backchannel-logout', async (req: Request, res: Response) => {
    const token = (req.body as Record<string, unknown> | undefined)?.logout_token;
    if (typeof token !== 'string' || token === '' || token.length > 8192) throw errors.invalidRequest('logout_token is required (form field).');
    const claims = await flow.verifyLogoutToken(token);
    if (!claims) throw errors.invalidRequest('The logout token is not valid.');
    const sessions = claims.sid ? await oidcStore.takeSessions({ sid: claims.sid }) : await oidcStore.takeSessions({ sub: claims.sub ?? '' });
    for (const sid of sessions) await deps.sessions.end(sid);
    res.status(200).set('Cache-Control', 'no-store').end();
  });
}
