import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Dispatcher } from 'undici';
import { errors } from '../errors.js';
import type { TokenAccess } from '../core/token-access.js';
import type { SessionTokens } from '../core/token-vault.js';
import { canonicalApiPath, hasDotDotSegment, isForbiddenApiPath } from '../core/upstream-paths.js';
import { classifyUpstreamError, failureToError, type UpstreamClient } from '../upstream/client.js';
import { stripTokenFields } from '../core/token-fields.js';

/** Bodies up to this size are kept so a request can be replayed after a refresh (contract: 1 MiB). */
export const REPLAY_LIMIT = 1 << 20;
/** JSON answers up to this size are inspected for token fields before they reach the browser. */
const JSON_SCAN_LIMIT = 8 << 20;

const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade'];
// Browser credentials and our own anti-forgery marker stay here; Host becomes the upstream's.
// Accept-Encoding is dropped so answers arrive uncompressed and can be checked for token fields.
const NEVER_FORWARDED = new Set([...HOP_BY_HOP, 'host', 'cookie', 'authorization', 'x-csrf', 'expect', 'accept-encoding', 'content-length']);
const NEVER_RETURNED = new Set([...HOP_BY_HOP, 'set-cookie', 'set-cookie2']);

function connectionListed(value: string | string[] | undefined): string[] {
  if (!value) return [];
  return (Array.isArray(value) ? value.join(',') : value)
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
}

/** Copies headers minus `never` and minus whatever the message's own Connection header names. */
function filterHeaders(h: IncomingHttpHeaders | Dispatcher.ResponseData['headers'], never: ReadonlySet<string>): Record<string, string | string[]> {
  const extra = connectionListed(h.connection);
  const out: Record<string, string | string[]> = {};
  for (const name in h) {
    const value = h[name];
    if (value === undefined || never.has(name) || (extra.length > 0 && extra.includes(name))) continue;
    out[name] = value;
  }
  return out;
}

function returnedResponseHeaders(h: Dispatcher.ResponseData['headers']): Record<string, string | string[]> {
  const out = filterHeaders(h, NEVER_RETURNED);
  // Answers share the SPA's origin: never let a browser sniff an API answer into HTML.
  if (out['x-content-type-options'] === undefined) out['x-content-type-options'] = 'nosniff';
  return out;
}

/**
 * Reads at most `limit` bytes. `rest` is set when the body is longer: what was read is kept
 * in `head`, and `rest` goes on reading the same body, so nothing is lost or read twice.
 */
async function readUpTo(body: Dispatcher.ResponseData['body'], limit: number): Promise<{ head: Buffer[]; size: number; rest?: AsyncIterator<Buffer> }> {
  const it = body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const head: Buffer[] = [];
  let size = 0;
  for (let next = await it.next(); !next.done; next = await it.next()) {
    head.push(next.value);
    size += next.value.length;
    if (size > limit) return { head, size, rest: it };
  }
  return { head, size };
}

type Body = { kind: 'none' } | { kind: 'buffer'; data: Buffer } | { kind: 'stream'; data: Readable };

/** Keeps bodies up to REPLAY_LIMIT for a replay; anything larger streams through once. */
function readBody(req: IncomingMessage): Promise<Body> {
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

export interface ApiProxyDeps {
  upstream: UpstreamClient;
  tokens: TokenAccess;
  readSessionId(cookieHeader: string | undefined): string | null;
  observeUpstream?: (seconds: number) => void;
  onStreamError?: (err: unknown) => void;
}

/**
 * `ANY /api/*`: a raw Node handler, no framework on the hot path (see docs/performance.md).
 * Steady state sends no Redis command: the token record comes from the tracked cache
 * (store/tracked-token-store.ts), else from one GET.
 */
export function createApiProxy(deps: ApiProxyDeps) {
  const { upstream } = deps;

  const send = async (req: IncomingMessage, body: Body, tokens: SessionTokens) => {
    const headers = filterHeaders(req.headers, NEVER_FORWARDED);
    headers.authorization = `Bearer ${tokens.accessToken}`;
    if (body.kind === 'stream' && req.headers['content-length'] !== undefined) headers['content-length'] = req.headers['content-length'];
    const started = performance.now();
    try {
      const response = await upstream.request({
        method: (req.method ?? 'GET') as Dispatcher.HttpMethod,
        path: req.url ?? '/',
        headers,
        body: body.kind === 'none' ? null : body.data,
      });
      deps.observeUpstream?.((performance.now() - started) / 1000);
      return response;
    } catch (err) {
      throw failureToError(classifyUpstreamError(err), err);
    }
  };

  return async function proxyApiRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const rawUrl = req.url ?? '/';
    const q = rawUrl.indexOf('?');
    const rawPath = q === -1 ? rawUrl : rawUrl.slice(0, q);
    if (hasDotDotSegment(rawPath) || canonicalApiPath(rawPath) === null) throw errors.invalidPath();
    if (isForbiddenApiPath(rawPath)) throw errors.forbiddenPath();

    const sid = deps.readSessionId(req.headers.cookie);
    if (!sid) throw errors.unauthenticated();
    let tokens = await deps.tokens.currentTokens(sid);

    // No AbortController per request (measurable on this path): a browser that goes away
    // while we wait for headers costs one upstream answer, and a streamed body is torn
    // down by pipeline() when the browser's socket closes.
    const body = await readBody(req);
    let response = await send(req, body, tokens);
    if (response.statusCode === 401 && body.kind !== 'stream') {
      // The access token may have been revoked early: refresh once, replay once.
      response.body.resume();
      tokens = await deps.tokens.tokensAfterRejection(sid, tokens);
      response = await send(req, body, tokens);
    }
    await writeResponse(req, res, response, tokens, deps.onStreamError);
  };
}

const isJson = (type: string | string[] | undefined) => typeof type === 'string' && /[/+]json\b/i.test(type);

async function writeResponse(
  req: IncomingMessage,
  res: ServerResponse,
  response: Dispatcher.ResponseData,
  tokens: SessionTokens,
  onStreamError?: (err: unknown) => void,
): Promise<void> {
  const headers = returnedResponseHeaders(response.headers);
  const status = response.statusCode;
  if (req.method === 'HEAD' || status === 204 || status === 304) {
    response.body.resume();
    res.writeHead(status, headers);
    res.end();
    return;
  }
  const declared = Number(response.headers['content-length'] ?? NaN);
  const encoded = response.headers['content-encoding'] !== undefined && response.headers['content-encoding'] !== 'identity';
  let source: Readable = response.body;
  if (isJson(response.headers['content-type']) && !encoded && !(declared > JSON_SCAN_LIMIT)) {
    let read: Awaited<ReturnType<typeof readUpTo>>;
    try {
      read = await readUpTo(response.body, JSON_SCAN_LIMIT);
    } catch (err) {
      throw failureToError(classifyUpstreamError(err), err);
    }
    if (!read.rest) {
      const buffered = Buffer.concat(read.head, read.size);
      const cleaned = stripTokenFields(buffered, [tokens.accessToken, tokens.refreshToken ?? '']);
      if (cleaned !== buffered) {
        headers['content-length'] = String(cleaned.length);
        delete headers.etag;
      }
      res.writeHead(status, headers);
      res.end(cleaned);
      return;
    }
    // Longer than the limit without saying so up front: streamed unchanged, like a declared one.
    const { head, rest } = read;
    source = Readable.from(
      (async function* () {
        yield* head;
        for (let next = await rest.next(); !next.done; next = await rest.next()) yield next.value;
      })(),
      { objectMode: false },
    );
  }
  res.writeHead(status, headers);
  try {
    await pipeline(source, res);
  } catch (err) {
    // Headers are out: all we can do is cut the connection so the browser sees a broken body.
    onStreamError?.(err);
    res.destroy();
  }
}
