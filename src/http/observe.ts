import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { pathOf } from './respond.js';
import { routeLabel, type Route } from './route-table.js';

/**
 * Request observation: once the answer is sent, one count in `cloakroom_http_requests_total`
 * and one log line. Path only: queries can carry exchange tokens. The proxy logs at debug (volume).
 */
export function createRequestObserver(deps: { logger: Logger; metrics: Metrics }) {
  const { logger, metrics } = deps;
  return function observe(req: IncomingMessage, res: ServerResponse, url: string, route: Route<unknown> | undefined): void {
    const started = performance.now();
    res.once('finish', () => {
      metrics.requests.inc({ route: routeLabel(route, url), status: String(res.statusCode) });
      const level = route?.group === 'api' ? 'debug' : 'info';
      if (!logger.isLevelEnabled(level)) return;
      logger[level]({ method: req.method, path: pathOf(url), status: res.statusCode, ms: Math.round(performance.now() - started) }, 'request');
    });
  };
}
