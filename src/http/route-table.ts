import { pathOf } from './respond.js';

/** Route groups: what a request is for, as the metrics and the log level see it. */
export type RouteGroup = 'api' | 'auth' | 'links' | 'ops';

/**
 * One line of the route table: a prefix ending in '/' (`/auth/`) or whole paths (`/healthz`),
 * the group it belongs to and what answers it. app.ts dispatches on it and observe.ts labels by it.
 */
export interface Route<H> {
  group: RouteGroup;
  match: { prefix: string } | { paths: readonly string[] };
  handler: H;
}

/** The route a request URL (path and query) belongs to; prefixes are compared on the raw URL (no copy). */
export function findRoute<H>(routes: readonly Route<H>[], url: string): Route<H> | undefined {
  let path: string | undefined;
  for (const route of routes) {
    if ('prefix' in route.match) {
      if (url.startsWith(route.match.prefix)) return route;
    } else if (route.match.paths.includes((path ??= pathOf(url)))) {
      return route;
    }
  }
  return undefined;
}

/**
 * The `route` label values of the prefix groups: the routes their routers mount, and nothing a
 * request can add. `/auth/sessions/<id>` is one label; anything else under a prefix is `other`.
 * Kept beside the routers' paths on purpose: a route added without a label here is counted as
 * `other`, never as its raw path (contract: "`route` is a fixed route group, never a raw path").
 */
export const ROUTE_LABELS: Readonly<Partial<Record<RouteGroup, readonly string[]>>> = {
  auth: [
    '/auth/login',
    '/auth/callback',
    '/auth/session',
    '/auth/sessions',
    '/auth/logout',
    '/auth/exchange',
    '/auth/backchannel-logout',
    '/auth/client.js',
  ],
  links: ['/links/download', '/links/portal'],
};
const SUBPATH_LABELS = new Set(['/auth/sessions']);

/**
 * The metrics `route` label. Bounded: the proxy is one label whatever the upstream path, whole-path
 * routes keep their (fixed) path, prefix routes take one of ROUTE_LABELS, anything else is `other`
 * (30,000 scanned paths once made 30,000 series and a 46 MB /metrics).
 */
export function routeLabel(route: Route<unknown> | undefined, url: string): string {
  if (!route) return 'other';
  if (route.group === 'api') return '/api/*';
  const path = pathOf(url);
  if ('paths' in route.match) return path;
  const known = ROUTE_LABELS[route.group];
  if (!known) return 'other';
  // Express's default routing is lenient about one trailing slash: `/auth/login/` is /auth/login.
  const trimmed = path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
  if (known.includes(trimmed)) return trimmed;
  const parent = trimmed.slice(0, trimmed.lastIndexOf('/'));
  return SUBPATH_LABELS.has(parent) && known.includes(parent) ? parent : 'other';
}
