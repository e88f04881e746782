import { Agent, errors as undiciErrors, type Dispatcher } from 'undici';
import { errors, type AppError } from '../errors.js';
import type { Tracing } from '../tracing.js';

/**
 * The one HTTP client for everything cloakroom sends upstream (proxy, token endpoints,
 * links): a keep-alive undici dispatcher with the configured timeout on headers and body.
 */
export interface UpstreamClient {
  readonly origin: string;
  /** Path prefix of UPSTREAM_URL (e.g. "/base"), prepended to every request path. */
  readonly basePath: string;
  readonly dispatcher: Dispatcher;
  readonly timeoutMs: number;
  request(opts: UpstreamRequest): Promise<Dispatcher.ResponseData>;
  /**
   * The same request with a raw handler: no Readable and no promise per answer (the proxy's
   * hot path). Only the headers timeout applies: an event stream may stay quiet for longer,
   * so the handler enforces the body timeout itself where it applies (proxy/exchange.ts).
   */
  dispatch(opts: Omit<UpstreamRequest, 'signal' | 'requestId'>, handler: Dispatcher.DispatchHandler): void;
  close(): Promise<void>;
}

export interface UpstreamRequest {
  method: Dispatcher.HttpMethod;
  /** Raw path and query, starting with "/"; the base path is prepended here. */
  path: string;
  headers?: Record<string, string | string[]>;
  body?: Dispatcher.DispatchOptions['body'];
  signal?: AbortSignal;
  /**
   * The browser request this call is made for (http/observe.ts `requestIdOf`), sent as
   * `X-Request-Id` (contract, Operations). `request` only: the proxy's `dispatch` writes its own.
   */
  requestId?: string;
}

/**
 * `tracing`: each `request` is an `upstream <METHOD>` client span under the current one (the
 * request's, or its refresh's), its `traceparent` sent upstream, as the proxy does for `dispatch`.
 */
export function createUpstreamClient(upstreamUrl: string, timeoutMs: number, extras: { dispatcher?: Dispatcher; tracing?: Pick<Tracing, 'startUpstream'> | undefined } = {}): UpstreamClient {
  const { dispatcher, tracing } = extras;
  const url = new URL(upstreamUrl);
  const basePath = url.pathname.replace(/\/+$/, '');
  const agent =
    dispatcher ??
    new Agent({ connections: 256, pipelining: 1, keepAliveTimeout: 10_000, headersTimeout: timeoutMs, bodyTimeout: timeoutMs, connect: { timeout: Math.min(timeoutMs, 10_000) } });
  // Origin, base path and the timeouts are ours; method, path, headers and body are the caller's.
  const options = (opts: Omit<UpstreamRequest, 'signal' | 'requestId'>): Dispatcher.DispatchOptions => ({
    origin: url.origin,
    method: opts.method,
    path: basePath + opts.path,
    headers: opts.headers ?? {},
    body: opts.body ?? null,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
  });
  return {
    origin: url.origin,
    basePath,
    dispatcher: agent,
    timeoutMs,
    request: (opts) => {
      const headers = { ...opts.headers };
      if (opts.requestId !== undefined) headers['x-request-id'] = opts.requestId;
      const span = tracing?.startUpstream(opts.method, headers);
      const sent = agent.request({ ...options({ ...opts, headers }), ...(opts.signal ? { signal: opts.signal } : {}) });
      if (!span) return sent;
      return sent.then(
        (res) => {
          span.end({ status: res.statusCode });
          return res;
        },
        (error: unknown) => {
          span.end({ error });
          throw error;
        },
      );
    },
    dispatch: (opts, handler) => {
      const o = options(opts);
      o.bodyTimeout = 0;
      agent.dispatch(o, handler);
    },
    close: () => agent.close(),
  };
}

export type UpstreamFailure = 'timeout' | 'unavailable';

/** Translates a transport error from undici into the contract's two failure kinds. */
export function classifyUpstreamError(err: unknown): UpstreamFailure {
  if (
    err instanceof undiciErrors.HeadersTimeoutError ||
    err instanceof undiciErrors.BodyTimeoutError ||
    err instanceof undiciErrors.ConnectTimeoutError
  ) {
    return 'timeout';
  }
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  if (code === 'ETIMEDOUT' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') {
    return 'timeout';
  }
  return 'unavailable';
}

export function failureToError(kind: UpstreamFailure, cause?: unknown): AppError {
  return kind === 'timeout' ? errors.upstreamTimeout(cause) : errors.upstreamUnavailable(cause);
}

/** Reads a small JSON answer; null when the body is not JSON (garbage is a failure, not a crash). */
export async function readJson(body: Dispatcher.ResponseData['body'], limit = 1 << 20): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > limit) {
      body.destroy();
      return null;
    }
    chunks.push(buf);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    return null;
  }
}

export const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
