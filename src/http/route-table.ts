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
 * The metrics `route` label. Bounded: the proxy is one label whatever the upstream path, named
 * routes keep their path, anything else is `other` (a scanner cannot grow the series).
 */
export function routeLabel(route: Route<unknown> | undefined, url: string): string {
  if (!route) return 'other';
  if (route.group === 'api') return '/api/*';
  const path = pathOf(url);
  if ('paths' in route.match) return path;
  return /^\/[a-z]+\/[a-z-]+$/.test(path) ? path : 'other';
}
