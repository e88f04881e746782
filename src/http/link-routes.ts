import express, { type Request, type Response, type Router } from 'express';
import { asksForSignIn, errors, type AppError } from '../errors.js';
import type { LinkSigner } from '../core/link-signing.js';
import { buildLoginRedirect } from '../core/link-urls.js';
import { resolveReturnTo } from '../core/redirects.js';
import { validateDownloadPath, type DownloadPathMatcher } from '../core/upstream-paths.js';
import type { Metrics } from '../metrics.js';
import type { RouterAntiForgery } from './anti-forgery.js';
import { requestIdOf } from './observe.js';
import { toAppError } from './respond.js';

export interface LinkRouteDeps {
  signer: LinkSigner;
  downloadPaths: DownloadPathMatcher;
  readSessionId(cookieHeader: string | undefined): string | null;
  metrics: Metrics;
  /** Where a browser without a session is sent; absent: 401. */
  loginPageUrl?: string;
}

type LinkKind = 'download' | 'portal';
/** What the browser is answered with; errors are thrown instead. */
type LinkAnswer = { kind: 'signed'; location: string } | { kind: 'sign_in'; location: string };


/** The media token goes in as `t`; a `t` already in the path would be the one upstream reads first. */
function queryCarriesToken(path: string): boolean {
  const q = path.indexOf('?');
  return q !== -1 && new URLSearchParams(path.slice(q + 1)).has('t');
}

/**
 * `GET /links/download` and `GET /links/portal`: browser navigations (plain `<a href>`),
 * so no X-CSRF header. They answer a bare 302; the signed URL exists only in `Location`.
 */
export function createLinkRoutes(deps: LinkRouteDeps): { router: Router; antiForgery: RouterAntiForgery } {
  const router = express.Router();
  const { signer } = deps;

  /** Runs the signing; a browser without a live session is sent to sign in when a login page is configured. */
  const signOrSignIn = async (req: Request, sign: (sid: string) => Promise<string>): Promise<LinkAnswer> => {
    const sid = deps.readSessionId(req.headers.cookie);
    const signInOr = (err: AppError): LinkAnswer => {
      if (deps.loginPageUrl === undefined) throw err;
      // originalUrl is this link with its query, so the SPA can send the browser straight back to it.
      return { kind: 'sign_in', location: buildLoginRedirect(deps.loginPageUrl, req.originalUrl) };
    };
    if (!sid) return signInOr(errors.unauthenticated());
    try {
      return { kind: 'signed', location: await sign(sid) };
    } catch (err) {
      // Only "no live session" becomes a sign-in; every other failure keeps its answer.
      if (asksForSignIn(err)) return signInOr(err as AppError);
      throw err;
    }
  };

  /** The one place a link answer is written and counted. */
  const linkHandler = (kind: LinkKind, answer: (req: Request) => Promise<LinkAnswer>) => async (req: Request, res: Response) => {
    let result: LinkAnswer;
    try {
      result = await answer(req);
    } catch (err) {
      deps.metrics.links.inc({ kind, outcome: toAppError(err).status < 500 ? 'refused' : 'failed' });
      throw err;
    }
    deps.metrics.links.inc({ kind, outcome: result.kind === 'signed' ? 'issued' : 'refused' });
    // No res.redirect(): it writes an HTML body, and the signed URL must be in Location only.
    res
      .status(302)
      .set('Location', result.location)
      .set('Cache-Control', 'no-store')
      // The signed URL must not travel on as a Referer from the page it opens.
      .set('Referrer-Policy', 'no-referrer')
      .end();
  };

  router.get(
    '/download',
    linkHandler('download', async (req) => {
      // Read once: the query getter parses again on every access.
      const query = req.query as Record<string, unknown>;
      // Input first: a bad link is a 400 for everyone, signed in or not.
      const target = validateDownloadPath(query['path'], deps.downloadPaths);
      if (!target.ok || queryCarriesToken(target.path)) throw errors.invalidPath();
      return signOrSignIn(req, (sid) => signer.signDownloadLink(sid, target.path, requestIdOf(req)));
    }),
  );

  router.get(
    '/portal',
    linkHandler('portal', async (req) => {
      if (!signer.portalEnabled) throw errors.notFound();
      const query = req.query as Record<string, unknown>;
      // '' stands for "not given": the portal then lands on its own home page.
      const redirect = resolveReturnTo(query['redirectUrl'], '');
      if (!redirect.ok) throw errors.invalidRedirect('redirectUrl');
      return signOrSignIn(req, (sid) => signer.signPortalLink(sid, redirect.path, requestIdOf(req)));
    }),
  );

  // Plain <a href> navigations: a header cannot be added, and a GET changes nothing here.
  return { router, antiForgery: { rule: 'navigation' } };
}
