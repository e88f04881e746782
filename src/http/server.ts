import { createServer, ServerResponse, type IncomingMessage, type RequestListener, type Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { errors, type AppError } from '../errors.js';
import { requestIdOf } from './observe.js';
import { rawErrorResponse, sendJson } from './respond.js';

/** Request line plus headers; larger gets 431 (Node's default is 16 KiB too, stated here on purpose). */
export const MAX_HEADER_BYTES = 16 * 1024;

/** A catalogue error through a ServerResponse (the contract's body and headers). */
function answer(res: Parameters<RequestListener>[1], e: AppError, headers: Record<string, string> = {}): void {
  sendJson(res, e.status, { error: e.code, message: e.message }, { ...e.headers, ...headers });
}

/**
 * The HTTP server used by main.ts and the tests alike. Requests Node's parser refuses before
 * any handler runs (oversized headers or URL, malformed syntax) still get the contract's JSON.
 */
export type UpgradeListener = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

/** The requests the WebSocket proxy takes; any other upgrade is answered as plain HTTP. */
export function isApiWebSocket(req: IncomingMessage): boolean {
  return req.headers.upgrade?.toLowerCase() === 'websocket' && (req.url ?? '').startsWith('/api/');
}

/**
 * With an 'upgrade' listener Node hands it every request that asks for one (curl's h2c too),
 * so those that are not our WebSocket are served by the ordinary handler, unupgraded.
 */
function serveWithoutUpgrade(req: IncomingMessage, socket: Duplex, handler: RequestListener): void {
  // Node stopped parsing at the headers: a body would never reach the handler.
  const te = req.headers['transfer-encoding'];
  const length = req.headers['content-length'];
  if (te !== undefined || (length !== undefined && length !== '0')) {
    socket.end(rawErrorResponse(errors.invalidRequest('An upgrade request may not carry a body.')));
    return;
  }
  const res = new ServerResponse(req);
  res.shouldKeepAlive = false;
  res.assignSocket(socket as Socket);
  res.once('finish', () => {
    res.detachSocket(socket as Socket);
    socket.end();
  });
  handler(req, res);
}

export function createCloakroomServer(handler: RequestListener, upgrade?: UpgradeListener): Server {
  // Node answers a missing Host and an unknown Expect itself, with an empty body: ours are JSON.
  const server = createServer({ maxHeaderSize: MAX_HEADER_BYTES, requestTimeout: 5 * 60_000, headersTimeout: 30_000, requireHostHeader: false }, (req, res) => {
    if (req.headers.host === undefined && req.httpVersionMajor === 1 && req.httpVersionMinor >= 1) {
      answer(res, errors.invalidRequest('The Host header is required.'), { connection: 'close', 'x-request-id': requestIdOf(req) });
      return;
    }
    handler(req, res);
  });
  server.keepAliveTimeout = 65_000;
  server.on('checkExpectation', (req, res) => {
    answer(res, errors.expectationFailed(), { 'x-request-id': requestIdOf(req) });
  });
  // Without a listener Node drops CONNECT without a word; this is no forward proxy.
  server.on('connect', (req: IncomingMessage, socket: Duplex) => {
    // Node has taken its own error listener off this socket: a reset must not become an uncaught error.
    socket.on('error', () => socket.destroy());
    socket.end(rawErrorResponse(errors.methodNotAllowed('CONNECT'), requestIdOf(req)));
  });
  if (upgrade) {
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      socket.on('error', () => socket.destroy());
      if (isApiWebSocket(req)) upgrade(req, socket, head);
      else serveWithoutUpgrade(req, socket, handler);
    });
  }
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
