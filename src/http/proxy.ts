import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
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

type PathVerdict = 'ok' | 'invalid' | 'forbidden';
const verdicts = new Map<string, PathVerdict>();

/**
 * The path checks (every decoding stage, canonical form) are a pure function of the raw path
 * and an SPA asks for the same few paths again and again, so verdicts are remembered: at most
 * 4096 paths of up to 256 characters (about 1 MB), forgotten all at once when full.
 */
export function pathVerdict(rawPath: string): PathVerdict {
  const known = verdicts.get(rawPath);
  if (known !== undefined) return known;
  const verdict: PathVerdict =
    hasDotDotSegment(rawPath) || canonicalApiPath(rawPath) === null ? 'invalid' : isForbiddenApiPath(rawPath) ? 'forbidden' : 'ok';
  if (rawPath.length <= 256) {
    if (verdicts.size >= 4096) verdicts.clear();
    verdicts.set(rawPath, verdict);
  }
  return verdict;
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

  const exchange = (req: IncomingMessage, res: ServerResponse, body: Body, tokens: SessionTokens, replayable: boolean): Promise<Outcome> => {
    const headers = filterHeaders(req.headers, NEVER_FORWARDED);
    headers.authorization = `Bearer ${tokens.accessToken}`;
    if (body.kind === 'stream' && req.headers['content-length'] !== undefined) headers['content-length'] = req.headers['content-length'];
    return new Promise<Outcome>((resolve, reject) => {
      upstream.dispatch(
        { method: (req.method ?? 'GET') as Dispatcher.HttpMethod, path: req.url ?? '/', headers, body: body.kind === 'none' ? null : body.data },
        new ProxyExchange(req, res, tokens, replayable, resolve, reject, deps),
      );
    });
  };

  return async function proxyApiRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const rawUrl = req.url ?? '/';
    const q = rawUrl.indexOf('?');
    const verdict = pathVerdict(q === -1 ? rawUrl : rawUrl.slice(0, q));
    if (verdict === 'invalid') throw errors.invalidPath();
    if (verdict === 'forbidden') throw errors.forbiddenPath();

    const sid = deps.readSessionId(req.headers.cookie);
    if (!sid) throw errors.unauthenticated();
    const tokens = await deps.tokens.currentTokens(sid);

    const body = await readBody(req);
    if ((await exchange(req, res, body, tokens, body.kind !== 'stream')) === 'rejected') {
      // The access token may have been revoked early: refresh once, replay once.
      const fresh = await deps.tokens.tokensAfterRejection(sid, tokens);
      await exchange(req, res, body, fresh, false);
    }
  };
}

/** `rejected`: upstream answered 401 to a request we may replay, and nothing was written. */
type Outcome = 'done' | 'rejected';

const isJson = (type: string | string[] | undefined) => typeof type === 'string' && /[/+]json\b/i.test(type);

/**
 * One upstream exchange written straight into the browser's response, on undici's handler
 * interface rather than `request()`: no Readable body, no async iteration and no promise per
 * chunk (with the other changes of that series, CPU per request went from 1.6x the bare
 * proxy's to about 1.2x; docs/performance.md). undici hands 1xx answers to such a handler too.
 *
 * - 401 on a replayable request: nothing is written; the caller refreshes and replays.
 * - HEAD, 204, 304: headers only.
 * - Uncompressed JSON up to JSON_SCAN_LIMIT: buffered, cleaned of token fields, sent whole.
 *   A longer one (chunked, so not known up front) is streamed on unchanged, buffered part first.
 * - Anything else streams with backpressure (pause while the browser's socket is full); a
 *   browser that goes away aborts the upstream request.
 *
 * A failure before anything was written rejects with the contract's 502/504; after that, all
 * that can be done is to cut the browser's connection so it sees a broken body.
 */
class ProxyExchange implements Dispatcher.DispatchHandler {
  private mode: 'waiting' | 'ignore' | 'buffer' | 'stream' = 'waiting';
  private settled = false;
  private controller: Dispatcher.DispatchController | null = null;
  private status = 0;
  private headers: Record<string, string | string[]> = {};
  private chunks: Buffer[] = [];
  private size = 0;
  private paused = false;
  private readonly started = performance.now();

  constructor(
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly tokens: SessionTokens,
    private readonly replayable: boolean,
    private readonly resolve: (outcome: Outcome) => void,
    private readonly reject: (err: unknown) => void,
    private readonly deps: Pick<ApiProxyDeps, 'observeUpstream' | 'onStreamError'>,
  ) {}

  private settle(outcome: Outcome): void {
    if (this.settled) return;
    this.settled = true;
    this.resolve(outcome);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
  }

  onResponseStart(_controller: Dispatcher.DispatchController, status: number, upstreamHeaders: IncomingHttpHeaders): void {
    // 102 Processing, 103 Early Hints: undici hands them to a raw handler too; the answer follows.
    if (status < 200) return;
    this.deps.observeUpstream?.((performance.now() - this.started) / 1000);
    if (status === 401 && this.replayable) {
      this.mode = 'ignore';
      this.settle('rejected');
      return;
    }
    const headers = returnedResponseHeaders(upstreamHeaders);
    this.status = status;
    this.headers = headers;
    if (this.req.method === 'HEAD' || status === 204 || status === 304) {
      this.mode = 'ignore';
      this.res.writeHead(status, headers);
      this.res.end();
      this.settle('done');
      return;
    }
    const declared = Number(upstreamHeaders['content-length'] ?? NaN);
    const encoding = upstreamHeaders['content-encoding'];
    const encoded = encoding !== undefined && encoding !== 'identity';
    if (isJson(upstreamHeaders['content-type']) && !encoded && !(declared > JSON_SCAN_LIMIT)) {
      this.mode = 'buffer';
      return;
    }
    this.startStreaming();
  }

  private startStreaming(): void {
    this.mode = 'stream';
    this.res.writeHead(this.status, this.headers);
    // The browser went away mid-answer: stop reading from upstream.
    this.res.once('close', () => {
      if (!this.res.writableFinished) this.controller?.abort(new Error('the browser closed the connection'));
    });
  }

  private write(chunk: Buffer): void {
    // Paused once per full socket: the head of an overlong JSON answer is written in one go,
    // and one 'drain' listener per write would pile up (MaxListenersExceededWarning).
    if (this.res.write(chunk) || this.paused) return;
    this.paused = true;
    this.controller?.pause();
    this.res.once('drain', () => {
      this.paused = false;
      this.controller?.resume();
    });
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.mode === 'buffer') {
      this.chunks.push(chunk);
      this.size += chunk.length;
      if (this.size <= JSON_SCAN_LIMIT) return;
      // Longer than the limit without saying so up front: streamed unchanged, like a declared one.
      this.startStreaming();
      const head = this.chunks;
      this.chunks = [];
      for (const c of head) this.write(c);
    } else if (this.mode === 'stream') {
      this.write(chunk);
    }
  }

  onResponseEnd(): void {
    if (this.mode === 'buffer') {
      const buffered = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks, this.size);
      this.chunks = [];
      const cleaned = stripTokenFields(buffered, [this.tokens.accessToken, this.tokens.refreshToken ?? '']);
      if (cleaned !== buffered) delete this.headers.etag;
      // Always a length: a chunked upstream answer becomes a plain one once it is whole.
      this.headers['content-length'] = String(cleaned.length);
      this.res.writeHead(this.status, this.headers);
      this.res.end(cleaned);
    } else if (this.mode === 'stream') {
      this.res.end();
    }
    this.settle('done');
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    if (this.settled) return;
    if (this.mode === 'stream' || this.res.headersSent) {
      // Headers are out: all we can do is cut the connection so the browser sees a broken body.
      this.deps.onStreamError?.(err);
      this.res.destroy();
      this.settle('done');
      return;
    }
    this.settled = true;
    this.reject(failureToError(classifyUpstreamError(err), err));
  }
}
