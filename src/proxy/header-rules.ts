import type { IncomingHttpHeaders } from 'node:http';

/**
 * The proxy's header rules as pure functions (contract, `ANY /api/*`): which of the browser's
 * request headers reach upstream, and which of upstream's response headers reach the browser.
 * No I/O and no state, so the whole table is tested on its own (test/header-rules.test.ts).
 */

export type HeaderMap = Record<string, string | string[]>;

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
function filterHeaders(h: IncomingHttpHeaders, never: ReadonlySet<string>): HeaderMap {
  const extra = connectionListed(h.connection);
  const out: HeaderMap = {};
  for (const name in h) {
    const value = h[name];
    if (value === undefined || never.has(name) || (extra.length > 0 && extra.includes(name))) continue;
    out[name] = value;
  }
  return out;
}

export interface ForwardOptions {
  /** The session's access token, sent as `Authorization: Bearer`. */
  accessToken: string;
  /** The body streams through unbuffered: its declared length is kept (a buffered one gets its own). */
  streamedBody: boolean;
}

/** The headers sent upstream for a browser request with these headers (names lower-case, as Node gives them). */
export function requestHeadersToForward(incoming: IncomingHttpHeaders, opts: ForwardOptions): HeaderMap {
  const headers = filterHeaders(incoming, NEVER_FORWARDED);
  headers.authorization = `Bearer ${opts.accessToken}`;
  if (opts.streamedBody && incoming['content-length'] !== undefined) headers['content-length'] = incoming['content-length'];
  return headers;
}

/** The headers the browser gets with an upstream answer carrying these. */
export function responseHeadersToReturn(upstream: IncomingHttpHeaders): HeaderMap {
  const out = filterHeaders(upstream, NEVER_RETURNED);
  // Answers share the SPA's origin: never let a browser sniff an API answer into HTML.
  if (out['x-content-type-options'] === undefined) out['x-content-type-options'] = 'nosniff';
  return out;
}
