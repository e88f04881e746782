import type { IncomingMessage } from 'node:http';
import { PassThrough, type Readable } from 'node:stream';
import { errors } from '../errors.js';

/** Bodies up to this size are kept so a request can be replayed after a refresh (contract: 1 MiB). */
export const REPLAY_LIMIT = 1 << 20;

/**
 * A request body that sends nothing for this long is given up on (docs/design.md, "Slow
 * request bodies"): a connection must not be held for minutes by a trickle that stopped.
 */
export const BODY_IDLE_TIMEOUT_MS = 15_000;

/** `buffer` can be sent twice (replay after a refresh); `stream` only once. */
export type RequestBody = { kind: 'none' } | { kind: 'buffer'; data: Buffer } | { kind: 'stream'; data: Readable };

const bodyIdle = () => errors.requestTimeout('The request body stopped arriving.');

/**
 * The body of a streamed request, with the same idle bound: the browser's connection is cut
 * when it sends nothing for `idleMs` while the upstream side is ready for more (a pause that
 * upstream's backpressure causes does not count), which aborts the upstream request too.
 */
function idleBoundStream(req: IncomingMessage, head: Buffer[], idleMs: number): Readable {
  const out = new PassThrough();
  for (const chunk of head) out.write(chunk);
  const timer = setTimeout(function onIdle() {
    if (req.readableFlowing === false && !out.destroyed) {
      timer.refresh();
      return;
    }
    req.destroy();
    out.destroy(new Error('the request body stopped arriving'));
  }, idleMs);
  const stop = () => clearTimeout(timer);
  req.on('data', () => timer.refresh());
  req.once('end', stop);
  req.once('close', stop);
  out.once('close', stop);
  req.pipe(out);
  return out;
}

export const NO_BODY: RequestBody = Object.freeze({ kind: 'none' });

/** Neither a length nor a chunked body: nothing to read (GET, HEAD, DELETE as browsers send them). */
export function hasNoBody(req: IncomingMessage): boolean {
  const declared = req.headers['content-length'];
  return req.headers['transfer-encoding'] === undefined && (declared === undefined || declared === '0');
}

/** Keeps bodies up to REPLAY_LIMIT for a replay; anything larger streams through once. */
export function readRequestBody(req: IncomingMessage, idleMs = BODY_IDLE_TIMEOUT_MS): Promise<RequestBody> {
  const declared = req.headers['content-length'];
  const chunked = req.headers['transfer-encoding'] !== undefined;
  if (hasNoBody(req)) return Promise.resolve(NO_BODY);
  if (!chunked && Number(declared) > REPLAY_LIMIT) return Promise.resolve({ kind: 'stream', data: idleBoundStream(req, [], idleMs) });
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    // One timer re-armed per chunk (`refresh()`), not a new one per chunk.
    const timer = setTimeout(() => {
      cleanup();
      reject(bodyIdle());
    }, idleMs);
    const cleanup = () => {
      clearTimeout(timer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    const onData = (chunk: Buffer) => {
      timer.refresh();
      chunks.push(chunk);
      size += chunk.length;
      if (size > REPLAY_LIMIT) {
        req.pause();
        cleanup();
        resolve({ kind: 'stream', data: idleBoundStream(req, chunks, idleMs) });
      }
    };
    const onEnd = () => {
      cleanup();
      resolve({ kind: 'buffer', data: Buffer.concat(chunks, size) });
    };
    const onError = (err: Error) => {
      cleanup();
      reject(errors.invalidRequest(`The request body could not be read: ${err.message}`));
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}
