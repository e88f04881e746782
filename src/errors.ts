import type { SignInRefusal } from './auth/dialect.js';

/**
 * The one error type of cloakroom. `expose` follows node-oidc-provider: details reach the
 * browser only for client errors; anything else is answered as a generic server_error.
 */
export class AppError extends Error {
  readonly status: number;
  readonly code: string;
  readonly expose: boolean;
  readonly headers: Readonly<Record<string, string>>;
  readonly extra: Readonly<Record<string, unknown>>;

  constructor(
    status: number,
    code: string,
    message: string,
    opts: { headers?: Record<string, string>; extra?: Record<string, unknown>; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'AppError';
    this.status = status;
    this.code = code;
    // 502/503/504 are contract answers with fixed codes, so they are exposed too.
    this.expose = status < 500 || status === 502 || status === 503 || status === 504;
    this.headers = opts.headers ?? {};
    this.extra = opts.extra ?? {};
  }
}

/**
 * Every error code of the contract is built here and nowhere else: callers pick an entry,
 * they never spell a code.
 */
export const errors = {
  invalidRequest: (message: string) => new AppError(400, 'invalid_request', message),
  csrfRequired: () => new AppError(403, 'csrf_required', 'The X-CSRF: 1 header is required.'),
  originNotAllowed: () => new AppError(403, 'origin_not_allowed', 'This origin may not call cloakroom.'),
  unauthenticated: () => new AppError(401, 'unauthenticated', 'Sign in first.'),
  sessionExpired: () => new AppError(401, 'session_expired', 'The session has ended; sign in again.'),
  storeUnavailable: (cause?: unknown) =>
    new AppError(503, 'session_store_unavailable', 'The session store is unavailable; try again shortly.', {
      headers: { 'Retry-After': '1' },
      cause,
    }),
  upstreamUnavailable: (cause?: unknown) =>
    new AppError(502, 'upstream_unavailable', 'The upstream API could not be reached.', { cause }),
  upstreamTimeout: (cause?: unknown) =>
    new AppError(504, 'upstream_timeout', 'The upstream API did not answer in time.', { cause }),
  forbiddenPath: () => new AppError(403, 'forbidden_path', 'This upstream path is not available through cloakroom.'),
  invalidPath: () => new AppError(400, 'invalid_path', 'The path is not allowed.'),
  invalidRedirect: (param: 'returnTo' | 'redirectUrl') => new AppError(400, 'invalid_redirect', `${param} must be a local path such as /en/invoices.`),
  notFound: () => new AppError(404, 'not_found', 'No such route.'),
  methodNotAllowed: (method: string) => new AppError(405, 'method_not_allowed', `${method} is not supported.`, { headers: { Allow: 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS' } }),
  invalidState: () => new AppError(400, 'invalid_state', 'This sign-in was not started here, or it was already completed. Start again.'),
  /** Node's parser and request timer refuse these before any handler runs (http/server.ts). */
  expectationFailed: () => new AppError(417, 'expectation_failed', 'Only Expect: 100-continue is supported.'),
  headersTooLarge: () => new AppError(431, 'headers_too_large', 'The request line or headers are too large.'),
  requestTimeout: (message = 'The request took too long to arrive.') =>
    new AppError(408, 'request_timeout', message, { headers: { Connection: 'close' } }),
  payloadTooLarge: () => new AppError(413, 'payload_too_large', 'The request body is too large.'),
  rateLimited: (retryAfterSeconds: number, message = 'Too many failed sign-in attempts; try again later.') =>
    new AppError(429, 'rate_limited', message, {
      headers: { 'Retry-After': String(retryAfterSeconds) },
    }),
  tokenUnavailable: (cause?: unknown) =>
    new AppError(502, 'token_unavailable', 'The portal sign-in token could not be obtained; try again.', cause === undefined ? {} : { cause }),
  shuttingDown: () => new AppError(503, 'shutting_down', 'This instance is shutting down.'),
  /** Anything not foreseen: the browser sees a bare server_error, the log sees the cause. */
  /** A WebSocket past WEBSOCKET_MAX_PER_SESSION (per instance). */
  tooManyWebSockets: (max: number) =>
    new AppError(429, 'rate_limited', `This session already has ${max} open WebSockets; close one first.`, { headers: { 'Retry-After': '5' } }),
  /** This instance is at WEBSOCKET_MAX_OPEN, or shutting down. */
  websocketsUnavailable: () =>
    new AppError(503, 'websockets_unavailable', 'This instance has as many WebSockets open as it may; try again shortly.', { headers: { 'Retry-After': '5' } }),
  /** Upstream answered the WebSocket handshake with a refusal: its status, our body. */
  upstreamRefused: (status: number) =>
    new AppError(status >= 400 && status <= 599 ? status : 502, 'upstream_refused', `The upstream API refused the WebSocket (status ${status}).`),
  serverError: (cause: unknown) => new AppError(500, 'server_error', 'An internal error occurred.', { cause }),
} as const;

/** The two answers that mean "no live session": link navigations turn them into a sign-in. */
export function asksForSignIn(err: unknown): boolean {
  return err instanceof AppError && (err.code === 'unauthenticated' || err.code === 'session_expired');
}

/**
 * The one translation of a refused sign-in (see `SignInRefusal`) into the contract's answer.
 * Upstream's own wording, when it sent one, is the message (contract: `error_description`).
 */
export function refusalError(refusal: SignInRefusal): AppError {
  switch (refusal.kind) {
    case 'wrong_credentials':
      return new AppError(401, 'invalid_grant', refusal.message ?? 'The user name or password is incorrect.');
    case 'two_factor_required':
      return new AppError(401, 'two_factor_required', refusal.message ?? 'A two-factor code is required.');
    case 'must_reset_password':
      return new AppError(403, 'must_reset_password', 'The password must be reset before signing in.', { extra: { resetToken: refusal.resetToken } });
    case 'link_invalid':
      return new AppError(401, 'invalid_grant', 'The sign-in link is invalid or has expired.');
    case 'provider_refused':
      return new AppError(401, 'invalid_grant', refusal.message);
  }
}

/** Marks an error raised by the session store (Redis), so the error handler can answer 503. */
export class StoreError extends Error {
  constructor(cause: unknown) {
    super('session store failure', { cause });
    this.name = 'StoreError';
  }
}
