import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { errors as undiciErrors, type Dispatcher } from 'undici';
import { errors } from '../errors.js';
import { classifyUpstreamError, failureToError } from '../upstream/client.js';
import { responseHeadersToReturn } from './header-rules.js';
import { cleanJson } from './json-cleaner.js';
import { createBodyWriter, planResponse, type BodyPlan, type BodyWriter } from './response-body.js';
import { scrubSecrets, type SecretSet } from './secret-scrubber.js';

/**
 * An uncoded answer that declares at most this many bytes and is not to be compressed is taken
 * whole and cleaned in one pass, then written with its head in one go: most API answers are
 * small, and the streaming stages' fixed cost per answer doubled the proxy's CPU on them.
 */
const WHOLE_ANSWER_LIMIT = 64 << 10;

export interface ExchangeHooks {
  /** Time to upstream response headers (metrics, the request's access log line). */
  observeUpstream?: (seconds: number, req: IncomingMessage, status: number) => void;
  onStreamError?: (err: unknown, req: IncomingMessage) => void;
}

/** `rejected`: upstream answered 401 to a request we may replay, and nothing was written. */
export type Outcome = 'done' | 'rejected';

export interface ExchangeRequest {
  method: string;
  /** The browser's Accept-Encoding (upstream is asked for identity; see encoding.ts). */
  acceptEncoding: string | string[] | undefined;
  /** The session's own tokens, never to reach the browser (secret-scrubber.ts). */
  secrets: SecretSet;
  /** Upstream silent this long mid-body (not paused by us, not an event stream): 504 or a cut body. */
  bodyTimeoutMs: number;
  replayable: boolean;
  /** The request's `X-Request-Id`, written into the head of the answer (http/observe.ts `idInHead`). */
  requestId?: string;
}

/**
 * One upstream exchange written straight into the browser's response, on undici's handler
 * interface rather than `request()`: no Readable body, no async iteration and no promise per
 * chunk (with the other changes of that series, CPU per request went from 1.6x the bare
 * proxy's to about 1.2x; docs/performance.md). undici hands 1xx answers to such a handler too.
 *
 * - 401 on a replayable request: nothing is written; the caller refreshes and replays.
 * - The answer's fate is planned from its status and headers (response-body.ts): refused
 *   (a coding that cannot be checked: 502), headers only (HEAD, 204, 304), or a body carried
 *   chunk by chunk through decoding, token-field and secret removal and the browser's coding.
 * - Backpressure: the writer pauses upstream while the browser's socket (or zlib) is full; a
 *   browser that goes away aborts the upstream request.
 * - Body inactivity: undici's own bodyTimeout is off for the proxy (client.ts) because an
 *   open event stream may rightly stay quiet for longer than UPSTREAM_TIMEOUT; this handler
 *   enforces it for every other answer, and not while it has paused upstream itself.
 *
 * A failure before anything was written rejects with the contract's 502/504 (the writer
 * sends its head with the first body bytes, so a stall right after upstream's headers is
 * still a clean 504); after that, all that can be done is to cut the browser's connection.
 */
export class ProxyExchange implements Dispatcher.DispatchHandler {
  private mode: 'waiting' | 'ignore' | 'body' | 'whole' = 'waiting';
  private whole: { plan: BodyPlan; chunks: Buffer[]; size: number } | null = null;
  private settled = false;
  private controller: Dispatcher.DispatchController | null = null;
  private body: BodyWriter | null = null;
  private readonly started = performance.now();
  // Body inactivity, without touching a timer per chunk: a chunk only stamps the time.
  private lastData = 0;
  private upstreamPaused = false;
  private idleTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly opts: ExchangeRequest,
    private readonly resolve: (outcome: Outcome) => void,
    private readonly reject: (err: unknown) => void,
    private readonly deps: ExchangeHooks,
  ) {}

  private settle(outcome: Outcome): void {
    this.stopIdleTimer();
    if (this.settled) return;
    this.settled = true;
    this.resolve(outcome);
  }

  private fail(err: unknown): void {
    this.stopIdleTimer();
    if (this.settled) return;
    this.settled = true;
    this.reject(err);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
  }

  onResponseStart(controller: Dispatcher.DispatchController, status: number, upstreamHeaders: IncomingHttpHeaders): void {
    // 102 Processing, 103 Early Hints: undici hands them to a raw handler too; the answer follows.
    if (status < 200) return;
    this.deps.observeUpstream?.((performance.now() - this.started) / 1000, this.req, status);
    if (status === 401 && this.opts.replayable) {
      this.mode = 'ignore';
      this.settle('rejected');
      return;
    }
    const { secrets } = this.opts;
    const plan = planResponse({ method: this.req.method ?? 'GET', status, headers: responseHeadersToReturn(upstreamHeaders), acceptEncoding: this.opts.acceptEncoding, secrets });
    if (plan.kind === 'refuse') {
      // A coding cloakroom cannot decode is a body it cannot check: nothing of it goes out.
      this.mode = 'ignore';
      const err = new Error(`upstream answered in a content coding cloakroom cannot check (${plan.reason})`);
      this.fail(errors.upstreamUnavailable(err));
      controller.abort(err);
      return;
    }
    if (this.opts.requestId !== undefined) plan.headers['x-request-id'] = this.opts.requestId;
    if (plan.kind === 'no-body') {
      this.mode = 'ignore';
      this.res.writeHead(plan.status, plan.headers);
      this.res.end();
      this.settle('done');
      return;
    }
    const declared = Number(plan.headers['content-length'] ?? NaN);
    if (plan.decode.length === 0 && plan.encode === 'identity' && plan.stage !== 'event-stream' && declared <= WHOLE_ANSWER_LIMIT) {
      this.mode = 'whole';
      this.whole = { plan, chunks: [], size: 0 };
      // A small answer has usually arrived whole in the same read as its head, and then it is
      // written before this microtask runs: the idle timer is only made for one still arriving.
      if (this.opts.bodyTimeoutMs > 0) {
        queueMicrotask(() => {
          if (!this.settled && this.mode === 'whole') this.startIdleTimer();
        });
      }
      return;
    }
    this.mode = 'body';
    // The writer pauses and resumes upstream through this, so the idle check knows who is waiting.
    const flow = {
      pause: () => {
        this.upstreamPaused = true;
        controller.pause();
      },
      resume: () => {
        this.upstreamPaused = false;
        this.lastData = performance.now();
        controller.resume();
      },
    };
    this.body = createBodyWriter(plan, secrets, this.res, flow, (err) => this.failMidBody(err));
    // The browser went away mid-answer: stop reading from upstream.
    this.res.once('close', () => {
      if (this.res.writableFinished) return;
      this.body?.abort();
      this.controller?.abort(new Error('the browser closed the connection'));
    });
    if (plan.stage !== 'event-stream' && this.opts.bodyTimeoutMs > 0) this.startIdleTimer();
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.mode === 'whole' && this.whole) {
      this.lastData = performance.now();
      this.whole.chunks.push(chunk);
      this.whole.size += chunk.length;
      // Longer than it said: a broken upstream, answered like one that breaks off.
      if (this.whole.size > WHOLE_ANSWER_LIMIT) {
        this.mode = 'ignore';
        this.whole = null;
        this.failMidBody(new Error('upstream sent more than its Content-Length'));
      }
      return;
    }
    if (this.mode !== 'body') return;
    this.lastData = performance.now();
    this.body?.onData(chunk);
  }

  onResponseEnd(): void {
    if (this.mode === 'whole' && this.whole) {
      const { plan, chunks, size } = this.whole;
      this.whole = null;
      const raw = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
      const out = scrubSecrets(plan.stage === 'json' ? cleanJson(raw) : raw, this.opts.secrets);
      plan.headers['content-length'] = String(out.length);
      this.res.writeHead(plan.status, plan.headers);
      this.res.end(out);
    }
    if (this.mode === 'body') this.body?.onEnd();
    this.settle('done');
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    this.body?.abort();
    if (this.settled) return;
    if (this.res.headersSent) {
      // Headers are out: all we can do is cut the connection so the browser sees a broken body.
      this.deps.onStreamError?.(err, this.req);
      this.res.destroy();
      this.settle('done');
      return;
    }
    this.fail(failureToError(classifyUpstreamError(err), err));
  }

  /** A coding turned out corrupt mid-body: like an upstream that breaks off. */
  private failMidBody(err: Error): void {
    this.controller?.abort(err);
    if (this.settled) {
      this.res.destroy();
      return;
    }
    if (this.res.headersSent) {
      this.deps.onStreamError?.(err, this.req);
      this.res.destroy();
      this.settle('done');
      return;
    }
    this.fail(errors.upstreamUnavailable(err));
  }

  private startIdleTimer(): void {
    const limit = this.opts.bodyTimeoutMs;
    this.lastData = performance.now();
    const check = () => {
      this.idleTimer = null;
      if (this.settled) return;
      const idle = performance.now() - this.lastData;
      if (this.upstreamPaused || idle < limit) {
        this.idleTimer = setTimeout(check, this.upstreamPaused ? limit : limit - idle);
        this.idleTimer.unref();
        return;
      }
      this.controller?.abort(new undiciErrors.BodyTimeoutError());
    };
    this.idleTimer = setTimeout(check, limit);
    this.idleTimer.unref();
  }

  private stopIdleTimer(): void {
    if (this.idleTimer === null) return;
    clearTimeout(this.idleTimer);
    this.idleTimer = null;
  }
}
