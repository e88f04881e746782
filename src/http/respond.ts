import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Logger } from '../logger.js';
import { AppError, StoreError, errors } from '../errors.js';
import { requestIdOf } from './observe.js';

/** Maps anything thrown to the contract's error; unknown errors become a bare server_error. */
export function toAppError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  if (err instanceof StoreError) return errors.storeUnavailable(err);
  // body-parser and http-errors carry `type`/`status`; their messages are safe, ours are clearer.
  if (typeof err === 'object' && err !== null) {
    const { type, status } = err as { type?: unknown; status?: unknown };
    if (type === 'entity.too.large' || status === 413) return errors.payloadTooLarge();
    if (typeof status === 'number' && status >= 400 && status < 500) {
      return errors.invalidRequest(type === 'entity.parse.failed' ? 'The request body is not valid JSON.' : 'The request is malformed.');
    }
  }
  return errors.serverError(err);
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
    // The contract's own 502/503/504 are expected trouble; anything unexposed is a bug.
    const level = e.expose ? 'warn' : 'error';
    logger[level]({ err: e.cause ?? e, code: e.code, requestId: requestIdOf(req), method: req.method, path: pathOf(req.url) }, 'request failed');
  }
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const shown = e.expose ? e : errors.serverError(e);
  // Also where nothing set it before (the raw proxy writes the id into its own heads).
  sendJson(res, shown.status, { error: shown.code, message: shown.message, ...shown.extra }, { ...shown.headers, 'x-request-id': requestIdOf(req) });
}

/** The path without its query: queries may carry one-time or exchange tokens, so logs never see them. */
export function pathOf(url: string | undefined): string {
  if (!url) return '';
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

/**
 * The same answer written straight to a socket, where no ServerResponse exists (a refused
 * CONNECT or WebSocket handshake): the catalogue's error, its headers, the request id, then close.
 * The id is one of our own or matched [A-Za-z0-9._:-]: nothing in it can break the header line.
 */
export function rawErrorResponse(err: AppError, requestId?: string): string {
  const e = err.expose ? err : errors.serverError(err);
  const body = JSON.stringify({ error: e.code, message: e.message, ...e.extra });
  const extra = Object.entries(e.headers)
    .filter(([name]) => name.toLowerCase() !== 'connection')
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
  const id = requestId ? `X-Request-Id: ${requestId}\r\n` : '';
  return `HTTP/1.1 ${e.status} ${STATUS_CODES[e.status] ?? 'Error'}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nCache-Control: no-store\r\n${extra}${id}Connection: close\r\n\r\n${body}`;
}
