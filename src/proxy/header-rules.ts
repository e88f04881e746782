import type { IncomingHttpHeaders } from 'node:http';

/**
 * The proxy's header rules as pure functions (contract, `ANY /api/*`): which of the browser's
 * request headers reach upstream, and which of upstream's response headers reach the browser.
 * No I/O and no state, so the whole table is tested on its own (test/header-rules.test.ts).
 */

export type HeaderMap = Record<string, string | string[]>;

const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade'];
// Browser credentials and our own anti-forgery marker stay here; Host becomes the upstream's.
// Accept-Encoding and Range are the answer body's business: response-body.ts's
// applyBodyRequestRules sets the one and drops the other after these rules.
// Headers servers act on as if a trusted front end had set them: a path or method override
// (`X-Original-URL: /api/token` routes past our path checks), a client address, Nexudus's
// `client_id`. Ours to set, never the browser's.
const SERVER_DIRECTIVES = ['x-original-url', 'x-rewrite-url', 'x-http-method-override', 'x-http-method', 'x-method-override', 'forwarded', 'x-real-ip', 'client_id', 'cookie2'];
// The request id and trace context are cloakroom's to send: the browser's only once validated (below).
const OBSERVATION = ['x-request-id', 'traceparent', 'tracestate'];
const NEVER_FORWARDED = new Set([...HOP_BY_HOP, ...SERVER_DIRECTIVES, ...OBSERVATION, 'host', 'cookie', 'authorization', 'x-csrf', 'expect', 'content-length']);
/**
 * Any `X-Forwarded-*` (set below from what cloakroom knows), and any name with an underscore:
 * nginx and CGI-style servers fold `_` and `-` together, so `X_Forwarded_For` or `Client-Id`
 * spellings could stand in for a dropped header.
 */
const neverForwarded = (name: string) => NEVER_FORWARDED.has(name) || name.includes('_') || name.startsWith('x-forwarded-');

// CORS and HSTS are cloakroom's policy for its own origin, not the upstream's to set.
// X-Request-Id is the browser's request's, set by cloakroom: an upstream one would replace it.
const NEVER_RETURNED = new Set([...HOP_BY_HOP, 'set-cookie', 'set-cookie2', 'strict-transport-security', 'x-request-id']);
const neverReturned = (name: string) => NEVER_RETURNED.has(name) || name.startsWith('access-control-');

function connectionListed(value: string | string[] | undefined): string[] {
  if (!value) return [];
  return (Array.isArray(value) ? value.join(',') : value)
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
}

/** Copies headers minus `never` and minus whatever the message's own Connection header names. */
function filterHeaders(h: IncomingHttpHeaders, never: (name: string) => boolean): HeaderMap {
  const extra = connectionListed(h.connection);
  const out: HeaderMap = {};
  for (const name in h) {
    const value = h[name];
    if (value === undefined || never(name) || (extra.length > 0 && extra.includes(name))) continue;
    out[name] = value;
  }
  return out;
}

/** Who asked, as cloakroom decides it (TRUST_PROXY): sent upstream as `X-Forwarded-*`. */
export interface ForwardedFor {
  /** The client address. */
  for: string;
  /** `http` or `https`, as the browser sees cloakroom. */
  proto: string;
  /** The host the browser asked for. */
  host: string;
}

export interface ForwardOptions {
  /** The session's access token, sent as `Authorization: Bearer`. */
  accessToken: string;
  /** The body streams through unbuffered: its declared length is kept (a buffered one gets its own). */
  streamedBody: boolean;
  forwarded: ForwardedFor;
  /** The request's id (http/observe.ts: the browser's when valid, else a new one), sent as `X-Request-Id`. */
  requestId?: string;
  /**
   * Tracing on: the trace context is injected by src/tracing.ts, so the browser's is not copied.
   * Off: a browser `traceparent` of the W3C form is passed on (an upstream can still join the trace).
   */
  tracing?: boolean;
}

/** W3C Trace Context version 00 (`00-<32 hex>-<16 hex>-<2 hex>`), ids not all zero. */
const TRACEPARENT = /^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$/;
export function validTraceparent(value: string | string[] | undefined): value is string {
  return typeof value === 'string' && TRACEPARENT.test(value);
}

/** The headers sent upstream for a browser request with these headers (names lower-case, as Node gives them). */
export function requestHeadersToForward(incoming: IncomingHttpHeaders, opts: ForwardOptions): HeaderMap {
  const headers = filterHeaders(incoming, neverForwarded);
  headers.authorization = `Bearer ${opts.accessToken}`;
  headers['x-forwarded-for'] = opts.forwarded.for;
  headers['x-forwarded-proto'] = opts.forwarded.proto;
  if (opts.forwarded.host) headers['x-forwarded-host'] = opts.forwarded.host;
  if (opts.streamedBody && incoming['content-length'] !== undefined) headers['content-length'] = incoming['content-length'];
  if (opts.requestId !== undefined) headers['x-request-id'] = opts.requestId;
  if (!opts.tracing && validTraceparent(incoming.traceparent)) headers.traceparent = incoming.traceparent;
  return headers;
}

/** The headers the browser gets with an upstream answer carrying these. */
export function responseHeadersToReturn(upstream: IncomingHttpHeaders): HeaderMap {
  const out = filterHeaders(upstream, neverReturned);
  // Answers share the SPA's origin: never let a browser sniff an API answer into HTML.
  if (out['x-content-type-options'] === undefined) out['x-content-type-options'] = 'nosniff';
  return out;
}
