import { randomUUID } from 'node:crypto';
import express, { type Request, type Response, type Router } from 'express';
import type { AuthDialect, Credentials } from '../auth/dialect.js';
import { errors, refusalError } from '../errors.js';
import type { IdleToucher } from '../core/idle-touch.js';
import type { LoginThrottle } from '../core/login-throttle.js';
import { resolveReturnTo } from '../core/redirects.js';
import { escapeUrlUnsafeChars } from '../core/link-urls.js';
import type { SessionLifecycle } from '../core/session-lifecycle.js';
import type { TokenVault } from '../core/token-vault.js';
import { failureToError } from '../upstream/client.js';
import type { Metrics } from '../metrics.js';
import type { AuthMode } from '../config.js';
import { isHandleShape, sessionOwner } from '../store/keys.js';
import { listedSession } from '../store/session-index.js';
import type { RouterAntiForgery } from './anti-forgery.js';
import { requestIdOf } from './observe.js';
import { mountOidcRoutes, OIDC_ANTI_FORGERY, type OidcRouteDeps } from './oidc-routes.js';
import '../session-data.js';

export interface AuthRouteDeps {
  dialect: AuthDialect;
  vault: TokenVault;
  sessions: SessionLifecycle;
  toucher: IdleToucher;
  throttle: LoginThrottle;
  metrics: Metrics;
  clock: () => number;
  cookie: { name: string; secure: boolean; sameSite: 'lax' | 'strict' };
  /** A user's sessions are those of the same user id in the same mode. */
  authMode: AuthMode;
  /** Where a dialect that signs in by redirect (oidc) keeps its sign-ins in flight. */
  redirectSignIn?: Pick<OidcRouteDeps, 'oidcStore' | 'sealer'>;
}

const regenerate = (req: Request) => new Promise<void>((resolve, reject) => req.session.regenerate((err: unknown) => (err ? reject(err) : resolve())));
const save = (req: Request) => new Promise<void>((resolve, reject) => req.session.save((err: unknown) => (err ? reject(err) : resolve())));
const destroy = (req: Request) => new Promise<void>((resolve, reject) => req.session.destroy((err: unknown) => (err ? reject(err) : resolve())));

function parseCredentials(body: unknown, form: boolean): Credentials & { remember: boolean } {
  if (typeof body !== 'object' || body === null) throw errors.invalidRequest('Send email and password as JSON or a form.');
  const { email, password, totp, remember } = body as Record<string, unknown>;
  if (typeof email !== 'string' || email.trim() === '' || email.length > 320) throw errors.invalidRequest('email must be a non-empty string.');
  if (typeof password !== 'string' || password === '' || password.length > 1024) throw errors.invalidRequest('password must be a non-empty string.');
  if (totp !== undefined && (typeof totp !== 'string' || totp.length > 32)) throw errors.invalidRequest('totp must be a string.');
  let rememberMe = false;
  if (remember !== undefined) {
    // A form can only send text; JSON must send a real boolean.
    if (typeof remember === 'boolean') rememberMe = remember;
    else if (form && typeof remember === 'string' && ['true', 'false', 'on', '1', '0'].includes(remember)) rememberMe = ['true', 'on', '1'].includes(remember);
    else throw errors.invalidRequest('remember must be a boolean.');
  }
  return { email: email.trim(), password, ...(totp !== undefined && totp !== '' ? { totp } : {}), remember: rememberMe };
}

export function createAuthRoutes(deps: AuthRouteDeps): { router: Router; antiForgery: RouterAntiForgery } {
  const router = express.Router();
  const { vault, sessions, clock } = deps;

  /** A new session id for every sign-in (no fixation); whatever the old one held is deleted. */
  const establishSession: OidcRouteDeps['establishSession'] = async (req, { user, remember, ...start }) => {
    if (req.session.user) await sessions.end(req.sessionID);
    await regenerate(req);
    const device = { owner: sessionOwner(deps.authMode, user.id), userAgent: req.get('user-agent') ?? '' };
    const { createdAt } = await sessions.start(req.sessionID, { ...start, device });
    req.session.user = user;
    req.session.createdAt = createdAt;
    if (remember) req.session.cookie.maxAge = sessions.timeouts.absoluteMs;
    await save(req);
  };

  const flow = deps.dialect.redirectSignIn;
  if (flow) {
    if (!deps.redirectSignIn) throw new Error('a redirect sign-in dialect needs its oidcStore and sealer');
    const { metrics, cookie } = deps;
    mountOidcRoutes(router, { ...deps.redirectSignIn, flow, sessions, metrics, cookie, establishSession });
  }

  router.post('/login', async (req: Request, res: Response) => {
    // oidc mode signs in with GET /auth/login (a redirect to the provider).
    const login = deps.dialect.login?.bind(deps.dialect);
    if (!login) throw errors.notFound();
    const form = req.is('application/x-www-form-urlencoded') === 'application/x-www-form-urlencoded';
    const credentials = parseCredentials(req.body, form);
    const address = req.ip ?? 'unknown';
    const verdict = await deps.throttle.reserve(credentials.email, address);
    if (!verdict.allowed) {
      deps.metrics.logins.inc({ outcome: 'rate_limited' });
      throw errors.rateLimited(verdict.retryAfterSeconds);
    }
    // Each session gets its own upstream client_id: one refresh token per client_id upstream.
    const clientId = randomUUID();
    const outcome = await login(credentials, clientId, requestIdOf(req));
    if (outcome.kind === 'failed') {
      await deps.throttle.release(credentials.email, address);
      throw failureToError(outcome.failure, outcome.cause);
    }
    if (outcome.kind === 'refused') {
      // The reserved attempt stays counted, except for a password that was right (must reset).
      if (outcome.refusal.kind === 'must_reset_password') await deps.throttle.release(credentials.email, address);
      const error = refusalError(outcome.refusal);
      deps.metrics.logins.inc({ outcome: error.code });
      throw error;
    }
    await establishSession(req, { tokens: outcome.tokens, user: outcome.user, clientId, remember: credentials.remember });
    await deps.throttle.recordSuccess(credentials.email, address);
    deps.metrics.logins.inc({ outcome: 'ok' });
    res.status(200).json({ authenticated: true, user: outcome.user });
  });

  router.get('/session', async (req: Request, res: Response) => {
    const user = req.session.user;
    // Opened, not just read: tokens no configured key opens are an ended session, as on /api.
    const record = user ? await vault.read(req.sessionID) : null;
    if (!user || !record || record.absoluteExpiresAt <= clock()) {
      res.status(200).json({ authenticated: false });
      return;
    }
    const endsAt = await deps.toucher.touchNow(req.sessionID, record.absoluteExpiresAt);
    res.status(200).json({ authenticated: true, user, expiresAt: new Date(endsAt).toISOString() });
  });

  const clearCookie = (res: Response) => res.clearCookie(deps.cookie.name, { path: '/', httpOnly: true, secure: deps.cookie.secure, sameSite: deps.cookie.sameSite });
  const ownerOf = (req: Request) => (req.session.user ? sessionOwner(deps.authMode, req.session.user.id) : null);

  router.post('/logout', async (req: Request, res: Response) => {
    let logoutUrl: string | null = null;
    const everywhere = typeof req.body === 'object' && req.body !== null && (req.body as Record<string, unknown>).everywhere === true;
    const owner = ownerOf(req);
    if (owner) {
      // oidc: the provider's logout URL, with this session's ID token as the hint. The local
      // logout never waits on the provider: without its metadata the answer is still 204.
      if (flow) {
        const record = await vault.read(req.sessionID);
        logoutUrl = record ? await flow.endSessionUrl(record.idToken).catch(() => null) : null;
      }
      // Every other session of the user, on every instance; this one last (it may predate the index).
      if (everywhere) await sessions.endAllOwned(owner);
      await sessions.end(req.sessionID);
      await destroy(req);
    }
    clearCookie(res);
    if (logoutUrl) res.status(200).json({ logoutUrl });
    else res.status(204).end();
  });

  /** The signed-in user's owner key, or 401: the tokens must still open, as for /auth/session. */
  const signedInOwner = async (req: Request): Promise<string> => {
    const owner = ownerOf(req);
    const record = owner ? await vault.read(req.sessionID) : null;
    if (!owner || !record || record.absoluteExpiresAt <= clock()) throw errors.unauthenticated();
    return owner;
  };

  router.get('/sessions', async (req: Request, res: Response) => {
    const owner = await signedInOwner(req);
    const entries = await sessions.listOwned(owner);
    res.status(200).json({ sessions: entries.map((e) => listedSession(e, req.sessionID)) });
  });

  router.delete('/sessions/:id', async (req: Request, res: Response) => {
    const owner = await signedInOwner(req);
    const handle = String(req.params.id ?? '');
    // Someone else's handle answers exactly as an unknown one: nothing tells them apart.
    const ended = isHandleShape(handle) ? await sessions.endOwned(owner, handle) : null;
    if (!ended) throw errors.notFound();
    if (ended === req.sessionID) {
      await destroy(req);
      clearCookie(res);
    }
    res.status(204).end();
  });

  router.get('/exchange', async (req: Request, res: Response) => {
    // An upstream without an exchange endpoint (json mode) has no such route at all.
    if (!deps.dialect.exchange) throw errors.notFound();
    const query = req.query as Record<string, unknown>;
    const target = resolveReturnTo(query.returnTo);
    if (!target.ok) throw errors.invalidRedirect('returnTo');
    if (typeof query.t !== 'string' || query.t === '' || query.t.length > 8192) throw errors.invalidRequest('t must be the sign-in token.');
    const clientId = randomUUID();
    const outcome = await deps.dialect.exchange(query.t, clientId, requestIdOf(req));
    if (outcome.kind === 'failed') throw failureToError(outcome.failure, outcome.cause);
    if (outcome.kind === 'refused') throw refusalError(outcome.refusal);
    await establishSession(req, { tokens: outcome.tokens, user: outcome.user, clientId, remember: false });
    res.status(302).set('Location', escapeUrlUnsafeChars(target.path)).end();
  });

  return { router, antiForgery: { rule: 'unsafe-methods', ...(flow ? { except: OIDC_ANTI_FORGERY } : {}) } };
}
