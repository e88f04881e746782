import { createServer, STATUS_CODES, type RequestListener, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { errors, type AppError } from '../errors.js';
import { sendJson } from './respond.js';

/** Request line plus headers; larger gets 431 (Node's default is 16 KiB too, stated here on purpose). */
export const MAX_HEADER_BYTES = 16 * 1024;

/** An answer written straight to the socket (no ServerResponse exists yet): the catalogue's error, then close. */
function rawErrorResponse(e: AppError): string {
  const body = JSON.stringify({ error: e.code, message: e.message });
  const extra = Object.entries(e.headers).filter(([name]) => name.toLowerCase() !== 'connection').map(([name, value]) => `${name}: ${value}\r\n`).join('');
  return `HTTP/1.1 ${e.status} ${STATUS_CODES[e.status] ?? 'Error'}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nCache-Control: no-store\r\n${extra}Connection: close\r\n\r\n${body}`;
}

/** A catalogue error through a ServerResponse (the contract's body and headers). */
function answer(res: Parameters<RequestListener>[1], e: AppError, headers: Record<string, string> = {}): void {
  sendJson(res, e.status, { error: e.code, message: e.message }, { ...e.headers, ...headers });
}

/**
 * The HTTP server used by main.ts and the tests alike. Requests Node's parser refuses before
 * any handler runs (oversized headers or URL, malformed syntax) still get the contract's JSON.
 */
export function createCloakroomServer(handler: RequestListener): Server {
  // Node answers a missing Host and an unknown Expect itself, with an empty body: ours are JSON.
  const server = createServer({ maxHeaderSize: MAX_HEADER_BYTES, requestTimeout: 5 * 60_000, headersTimeout: 30_000, requireHostHeader: false }, (req, res) => {
    if (req.headers.host === undefined && req.httpVersionMajor === 1 && req.httpVersionMinor >= 1) {
      answer(res, errors.invalidRequest('The Host header is required.'), { connection: 'close' });
      return;
    }
    handler(req, res);
  });
  server.keepAliveTimeout = 65_000;
  server.on('checkExpectation', (_req, res) => {
    answer(res, errors.expectationFailed());
  });
  // Without a listener Node drops CONNECT without a word; this is no forward proxy.
  server.on('connect', (_req, socket: Duplex) => {
    // Node has taken its own error listener off this socket: a reset must not become an uncaught error.
    socket.on('error', () => socket.destroy());
    socket.end(rawErrorResponse(errors.methodNotAllowed('CONNECT')));
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (!socket.writable || (err.code === 'ECONNRESET')) {
      socket.destroy();
      return;
    }
    const refusal =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? errors.headersTooLarge()
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? errors.requestTimeout()
          : errors.invalidRequest('The request is malformed.');
    socket.end(rawErrorResponse(refusal));
  });
  return server;
}
