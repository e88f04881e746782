import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../logger.js';
import { AppError, StoreError, errors } from '../errors.js';

/** Maps anything thrown to the contract's error; unknown errors become a bare server_error. */
export function toAppError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  if (err instanceof StoreError) return errors.storeUnavailable(err);
  // body-parser and http-errors carry `type`/`status`; their messages are safe, ours are clearer.
  if (typeof err === 'object' && err !== null) {
    const { type, status } = err as { type?: unknown; status?: unknown };
    if (type === 'entity.too.large' || status === 413) return new AppError(413, 'payload_too_large', 'The request body is too large.');
    if (typeof status === 'number' && status >= 400 && status < 500) {
      return new AppError(400, 'invalid_request', type === 'entity.parse.failed' ? 'The request body is not valid JSON.' : 'The request is malformed.');
    }
  }
  return new AppError(500, 'server_error', 'An internal error occurred.', { cause: err });
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(payload),
    'cache-control': 'no-store',
  });
  res.end(payload);
}

/** The one place an error becomes a response: `{error, message}` and nothing internal. */
export function sendError(req: IncomingMessage, res: ServerResponse, err: unknown, logger: Logger): void {
  const e = toAppError(err);
  if (e.status >= 500) {
    const level = e.code === 'server_error' ? 'error' : 'warn';
    logger[level]({ err: e.cause ?? e, code: e.code, method: req.method, path: pathOf(req.url) }, 'request failed');
  }
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = e.expose ? { error: e.code, message: e.message, ...e.extra } : { error: 'server_error', message: 'An internal error occurred.' };
  sendJson(res, e.expose ? e.status : 500, body, e.headers);
}

/** The path without its query: queries may carry one-time or exchange tokens, so logs never see them. */
export function pathOf(url: string | undefined): string {
  if (!url) return '';
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}
