import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { errors } from '../errors.js';

/** Bodies up to this size are kept so a request can be replayed after a refresh (contract: 1 MiB). */
export const REPLAY_LIMIT = 1 << 20;

/** `buffer` can be sent twice (replay after a refresh); `stream` only once. */
export type RequestBody = { kind: 'none' } | { kind: 'buffer'; data: Buffer } | { kind: 'stream'; data: Readable };

/** Keeps bodies up to REPLAY_LIMIT for a replay; anything larger streams through once. */
export function readRequestBody(req: IncomingMessage): Promise<RequestBody> {
  const declared = req.headers['content-length'];
  const chunked = req.headers['transfer-encoding'] !== undefined;
  if (!chunked && (declared === undefined || declared === '0')) return Promise.resolve({ kind: 'none' });
  if (!chunked && Number(declared) > REPLAY_LIMIT) return Promise.resolve({ kind: 'stream', data: req });
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      if (size > REPLAY_LIMIT) {
        req.pause();
        cleanup();
        async function* rest() {
          yield* chunks;
          for await (const c of req) yield c as Buffer;
        }
        resolve({ kind: 'stream', data: Readable.from(rest(), { objectMode: false }) });
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
