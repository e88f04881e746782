import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import helmet from 'helmet';
import type { Logger } from '../logger.js';
import { errors } from '../errors.js';

/**
 * helmet's default policy, written out so that it can follow COOKIE_SECURE: with
 * `upgrade-insecure-requests` a browser rewrites every subresource to https, which breaks an
 * SPA served over plain http anywhere but on loopback.
 */
const BASE_POLICY = [
  "default-src 'self'",
  "base-uri 'self'",
  "font-src 'self' https: data:",
  "form-action 'self'",
  "frame-ancestors 'self'",
  "img-src 'self' data:",
  "object-src 'none'",
  "script-src 'self'",
  "script-src-attr 'none'",
  "style-src 'self' https: 'unsafe-inline'",
];

/** The Content-Security-Policy of the SPA's pages: CONTENT_SECURITY_POLICY when set, else the default above. */
export function spaContentSecurityPolicy(opts: { cookieSecure: boolean; override?: string }): string {
  if (opts.override !== undefined) return opts.override;
  return [...BASE_POLICY, ...(opts.cookieSecure ? ['upgrade-insecure-requests'] : [])].join('; ');
}

/**
 * A file name with a content hash (`app.3f2a9c1b.js`, Vite's `index-BXk3j2Qa.js`): such a name
 * changes with its content, so it may be cached for good. The hash needs a digit or mixed case,
 * so that a plain word (`logo.original.png`) is not taken for one.
 */
export function isHashedAssetName(name: string): boolean {
  const m = /[.-]([A-Za-z0-9_]{8,})\.[A-Za-z0-9]+$/.exec(name);
  if (!m?.[1]) return false;
  const hash = m[1];
  return /\d/.test(hash) || (/[a-z]/.test(hash) && /[A-Z]/.test(hash));
}

interface NavigationHints {
  method: string;
  path: string;
  accept: string | undefined;
  secFetchDest: string | undefined;
  secFetchMode: string | undefined;
}

/**
 * Whether a request that matched no file is a browser navigation to one of the SPA's own
 * routes. A missing script, image or favicon (sent with `Accept: *\/*`) must stay a 404, or the
 * browser gets index.html where it expected JavaScript.
 */
export function isSpaNavigation(h: NavigationHints): boolean {
  if (h.method !== 'GET' && h.method !== 'HEAD') return false;
  if (/^\/(api|auth|links)(\/|$)/.test(h.path)) return false;
  const last = h.path.slice(h.path.lastIndexOf('/') + 1);
  if (last.includes('.')) return false;
  if (!/(^|[\s,])text\/html\s*(;|,|$)/i.test(h.accept ?? '')) return false;
  if (h.secFetchDest !== undefined && h.secFetchDest !== 'document') return false;
  if (h.secFetchMode !== undefined && h.secFetchMode !== 'navigate') return false;
  return true;
}

export interface StaticRoutesOptions {
  root: string;
  cookieSecure: boolean;
  contentSecurityPolicy?: string;
}

/** STATIC_DIR: the SPA's built files from the same origin, so cookies and /api calls are same-origin. */
export function createStaticRoutes(opts: StaticRoutesOptions): Router {
  const root = path.resolve(opts.root);
  const indexFile = path.join(root, 'index.html');
  const policy = spaContentSecurityPolicy({
    cookieSecure: opts.cookieSecure,
    ...(opts.contentSecurityPolicy !== undefined ? { override: opts.contentSecurityPolicy } : {}),
  });
  const router = express.Router();
  router.use(
    // HSTS is only honoured over https, and on http it would only mislead: it follows the cookie too.
    helmet({ contentSecurityPolicy: false, strictTransportSecurity: opts.cookieSecure }),
    (_req: Request, res: Response, next: NextFunction) => {
      res.set('Content-Security-Policy', policy);
      next();
    },
  );
  router.use(
    express.static(root, {
      index: 'index.html',
      fallthrough: true,
      setHeaders: (res, file) => {
        const name = path.basename(file);
        // index.html names the hashed files of the current build: it must be asked for again each time.
        if (name === 'index.html') res.setHeader('Cache-Control', 'no-cache');
        else if (isHashedAssetName(name)) res.setHeader('Cache-Control', 'public, max-age=31536000, immutable');
      },
    }),
  );
  router.get('/*splat', (req: Request, res: Response, next: NextFunction) => {
    const navigation = isSpaNavigation({
      method: req.method,
      path: req.path,
      accept: req.get('accept'),
      secFetchDest: req.get('sec-fetch-dest'),
      secFetchMode: req.get('sec-fetch-mode'),
    });
    if (!navigation) return next();
    res.set('Cache-Control', 'no-cache');
    res.sendFile(indexFile);
  });
  return router;
}

/** Where the browser client lives: packages/client/index.js, above this module in source and in dist. */
function findClientScript(): string | null {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, 'packages', 'client', 'index.js');
    if (existsSync(candidate)) return candidate;
    const parent = path.dirname(dir);
    if (parent === dir) return null;
    dir = parent;
  }
}

/**
 * `GET /auth/client.js`: the browser client, the same file as the package. Read once at start;
 * `no-cache` so that an upgraded cloakroom is picked up on the next page load (revalidated by ETag).
 */
export function createClientScriptRoute(deps: { logger: Logger; file?: string }): Router {
  const file = deps.file ?? findClientScript();
  const source = file ? readFileSync(file) : null;
  if (!source) deps.logger.warn('packages/client/index.js not found: GET /auth/client.js answers 404');
  const router = express.Router();
  router.get('/auth/client.js', (req: Request, res: Response, next: NextFunction) => {
    if (!source) return next(errors.notFound());
    res.set({
      'Content-Type': 'text/javascript; charset=utf-8',
      'Cache-Control': 'no-cache',
      'X-Content-Type-Options': 'nosniff',
      'Cross-Origin-Resource-Policy': 'same-origin',
    });
    res.send(source);
  });
  return router;
}
