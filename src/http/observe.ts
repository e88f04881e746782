import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { pathOf } from './respond.js';
import { routeLabel, type Route } from './route-table.js';

/** Contract: a browser's `X-Request-Id` is kept when it is 1 to 128 of these characters. */
const VALID_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The id for a request with this `X-Request-Id` header: its own when valid, else a new one. */
export function chooseRequestId(header: string | string[] | undefined): string {
  // Node joins repeated headers with ", ": two ids are no valid id.
  return typeof header === 'string' && VALID_REQUEST_ID.test(header) ? header : randomUUID();
}

const REQUEST_ID = Symbol('cloakroom.requestId');
const WATCHED = Symbol('cloakroom.watched');
interface Watched {
  [WATCHED]?: { req: IncomingMessage; url: string; route: Route<unknown> | undefined; started: number } | undefined;
}
const UPSTREAM_SECONDS = Symbol('cloakroom.upstreamSeconds');
interface Observed {
  [REQUEST_ID]?: string;
  [UPSTREAM_SECONDS]?: number;
}

/** The request's id, chosen once (the first caller decides) and kept on the request. */
export function requestIdOf(req: IncomingMessage): string {
  const o = req as IncomingMessage & Observed;
  return (o[REQUEST_ID] ??= chooseRequestId(req.headers['x-request-id']));
}

/** Time to upstream headers of the request's last upstream exchange, for its access log line. */
export function noteUpstreamSeconds(req: IncomingMessage, seconds: number): void {
  (req as IncomingMessage & Observed)[UPSTREAM_SECONDS] = seconds;
}

/**
 * Request observation. Before anything is answered: the request id, as `X-Request-Id` on every
 * answer. Once the answer is sent: one count in `cloakroom_http_requests_total`, one observation
 * of `cloakroom_http_request_duration_seconds`, and (ACCESS_LOG) one info line. Path only:
 * queries can carry exchange tokens.
 */
export function createRequestObserver(deps: { logger: Logger; metrics: Metrics; accessLog?: boolean }) {
  const { logger, metrics } = deps;
  const accessLog = deps.accessLog ?? true;
  // Access lines hold only fields built here (a validated id, the route group, the method, the
  // path without its query, numbers): the redaction list has nothing to find in them, and its
  // wildcard paths cost about 6 µs a line (docs/performance.md), so their logger skips it.
  const accessLogger = logger.child({}, { redact: { paths: [] } });
  // One listener shared by every response, reading what it needs off the response: no closure
  // and no once-wrapper per request.
  function onFinish(this: ServerResponse & Watched): void {
    const watched = this[WATCHED];
    if (watched === undefined) return;
    this[WATCHED] = undefined;
    const { req, url, route, started } = watched;
    const seconds = (performance.now() - started) / 1000;
    const label = routeLabel(route, url);
    metrics.requests.inc({ route: label, status: String(this.statusCode) });
    metrics.requestDuration.observe({ route: label }, seconds);
    if (!accessLog || !accessLogger.isLevelEnabled('info')) return;
    const upstream = (req as IncomingMessage & Observed)[UPSTREAM_SECONDS];
    accessLogger.info(
      {
        requestId: requestIdOf(req),
        route: label,
        method: req.method,
        path: pathOf(url),
        status: this.statusCode,
        ms: Math.round(seconds * 10_000) / 10,
        ...(upstream !== undefined ? { upstreamMs: Math.round(upstream * 10_000) / 10 } : {}),
      },
      'request',
    );
  }
  /**
   * `idInHead`: the route writes `X-Request-Id` into the head it writes itself (the raw proxy,
   * whose every answer and error goes through proxy/exchange.ts or respond.ts sendError). A header
   * set here beforehand sends Node's writeHead down its slow path, one setHeader per header.
   */
  return function observe(req: IncomingMessage, res: ServerResponse, url: string, route: Route<unknown> | undefined, idInHead = false): void {
    const started = performance.now();
    if (!idInHead) res.setHeader('x-request-id', requestIdOf(req));
    (res as ServerResponse & Watched)[WATCHED] = { req, url, route, started };
    res.on('finish', onFinish);
  };
}
