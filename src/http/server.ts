import { createServer, type IncomingMessage, type RequestListener, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { requestIdOf } from './observe.js';
import { sendJson } from './respond.js';

/** Request line plus headers; larger gets 431 (Node's default is 16 KiB too, stated here on purpose). */
export const MAX_HEADER_BYTES = 16 * 1024;

function rawJsonResponse(status: number, reason: string, code: string, message: string, requestId?: string): string {
  const body = JSON.stringify({ error: code, message });
  // The id is one of our own or matched [A-Za-z0-9._:-]: nothing in it can break the header line.
  const id = requestId ? `X-Request-Id: ${requestId}\r\n` : '';
  return `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nCache-Control: no-store\r\n${id}Connection: close\r\n\r\n${body}`;
}

/**
 * The HTTP server used by main.ts and the tests alike. Requests Node's parser refuses before
 * any handler runs (oversized headers or URL, malformed syntax) still get the contract's JSON.
 */
export function createCloakroomServer(handler: RequestListener): Server {
  // Node answers a missing Host and an unknown Expect itself, with an empty body: ours are JSON.
  const server = createServer({ maxHeaderSize: MAX_HEADER_BYTES, requestTimeout: 5 * 60_000, headersTimeout: 30_000, requireHostHeader: false }, (req, res) => {
    if (req.headers.host === undefined && req.httpVersionMajor === 1 && req.httpVersionMinor >= 1) {
      sendJson(res, 400, { error: 'invalid_request', message: 'The Host header is required.' }, { connection: 'close', 'x-request-id': requestIdOf(req) });
      return;
    }
    handler(req, res);
  });
  server.keepAliveTimeout = 65_000;
  server.on('checkExpectation', (req, res) => {
    sendJson(res, 417, { error: 'expectation_failed', message: 'Only Expect: 100-continue is supported.' }, { 'x-request-id': requestIdOf(req) });
  });
  // Without a listener Node drops CONNECT without a word; this is no forward proxy.
  server.on('connect', (req: IncomingMessage, socket: Duplex) => {
    // Node has taken its own error listener off this socket: a reset must not become an uncaught error.
    socket.on('error', () => socket.destroy());
    socket.end(rawJsonResponse(405, 'Method Not Allowed', 'method_not_allowed', 'CONNECT is not supported.', requestIdOf(req)));
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (!socket.writable || (err.code === 'ECONNRESET')) {
      socket.destroy();
      return;
    }
    const response =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? rawJsonResponse(431, 'Request Header Fields Too Large', 'headers_too_large', 'The request line or headers are too large.')
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? rawJsonResponse(408, 'Request Timeout', 'request_timeout', 'The request took too long to arrive.')
          : rawJsonResponse(400, 'Bad Request', 'invalid_request', 'The request is malformed.');
    socket.end(response);
  });
  return server;
}
