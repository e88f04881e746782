import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import type { SessionTokens } from '../core/token-vault.js';
import { stripTokenFields } from '../core/token-fields.js';
import { classifyUpstreamError, failureToError } from '../upstream/client.js';
import { responseHeadersToReturn, type HeaderMap } from './header-rules.js';

/** JSON answers up to this size are inspected for token fields before they reach the browser. */
const JSON_SCAN_LIMIT = 8 << 20;

export interface ExchangeHooks {
  /** Time to upstream response headers (metrics, the request's access log line). */
  observeUpstream?: (seconds: number, req: IncomingMessage, status: number) => void;
  onStreamError?: (err: unknown, req: IncomingMessage) => void;
}

/** `rejected`: upstream answered 401 to a request we may replay, and nothing was written. */
export type Outcome = 'done' | 'rejected';

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
export class ProxyExchange implements Dispatcher.DispatchHandler {
  private mode: 'waiting' | 'ignore' | 'buffer' | 'stream' = 'waiting';
  private settled = false;
  private controller: Dispatcher.DispatchController | null = null;
  private status = 0;
  private headers: HeaderMap = {};
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
    private readonly deps: ExchangeHooks,
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
    this.deps.observeUpstream?.((performance.now() - this.started) / 1000, this.req, status);
    if (status === 401 && this.replayable) {
      this.mode = 'ignore';
      this.settle('rejected');
      return;
    }
    const headers = responseHeadersToReturn(upstreamHeaders);
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
      this.deps.onStreamError?.(err, this.req);
      this.res.destroy();
      this.settle('done');
      return;
    }
    this.settled = true;
    this.reject(failureToError(classifyUpstreamError(err), err));
  }
}
