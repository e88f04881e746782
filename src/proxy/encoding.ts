import { constants, createBrotliCompress, createBrotliDecompress, createGunzip, createGzip, createInflate, type BrotliOptions, type ZlibOptions } from 'node:zlib';
import type { Transform } from 'node:stream';

/**
 * Content codings: what upstream sent (decoded always, so the body can be cleaned) and what
 * the browser gets (chosen from its Accept-Encoding). Only codings Node can decode on both
 * Node 20 and 22 are asked for and accepted: gzip, deflate, br.
 */
export type BrowserCoding = 'br' | 'gzip' | 'identity';
export type UpstreamCoding = 'gzip' | 'deflate' | 'br';

/**
 * Sent upstream instead of the browser's Accept-Encoding. Identity by default: cloakroom
 * compresses for the browser anyway, and an upstream answer it need not inflate first costs
 * less CPU. Anything upstream sends regardless (gzip, deflate, br, stacked) is still decoded.
 */
export const UPSTREAM_ACCEPT_ENCODING = 'identity';

/** Compressed only from this size on (contract: 1 KiB); smaller answers gain nothing. */
export const COMPRESS_MIN_BYTES = 1024;

/**
 * Speed over ratio: a proxy compresses every answer once, on the request path. A 256 KiB
 * window (brotli's default is 4 MiB) keeps each encoder to about 1 MB, so many large answers
 * in flight stay cheap; API answers repeat themselves at much shorter distances anyway.
 */
export const BROTLI_OPTIONS: BrotliOptions = { params: { [constants.BROTLI_PARAM_QUALITY]: 4, [constants.BROTLI_PARAM_LGWIN]: 18 } };
export const GZIP_OPTIONS: ZlibOptions = { level: 6 };

interface Offer {
  coding: string;
  q: number;
}

function parseAccept(header: string): Offer[] {
  const offers: Offer[] = [];
  for (const part of header.split(',')) {
    const [rawName, ...params] = part.split(';');
    const coding = (rawName ?? '').trim().toLowerCase();
    if (!coding) continue;
    let q = 1;
    for (const p of params) {
      const m = /^\s*q\s*=\s*([0-9.]+)\s*$/i.exec(p);
      if (m) q = Math.min(1, Number(m[1]));
    }
    offers.push({ coding, q: Number.isFinite(q) ? q : 0 });
  }
  return offers;
}

/**
 * The browser's coding for a compressible answer: the highest q among br and gzip (br on a
 * tie), else identity. `*` stands for any coding not named. identity is always possible,
 * even when refused (`identity;q=0`): RFC 9110 lets a server send it rather than a 406.
 */
export function chooseBrowserCoding(acceptEncoding: string | string[] | undefined): BrowserCoding {
  if (acceptEncoding === undefined) return 'identity';
  const offers = parseAccept(Array.isArray(acceptEncoding) ? acceptEncoding.join(',') : acceptEncoding);
  const star = offers.find((o) => o.coding === '*')?.q ?? 0;
  const qOf = (name: string) => {
    const named = offers.filter((o) => o.coding === name || (name === 'gzip' && o.coding === 'x-gzip'));
    return named.length > 0 ? Math.max(...named.map((o) => o.q)) : star;
  };
  const br = qOf('br');
  const gzip = qOf('gzip');
  if (br > 0 && br >= gzip) return 'br';
  if (gzip > 0) return 'gzip';
  return 'identity';
}

/**
 * Upstream's Content-Encoding as the list of decoders to apply, outermost first, or
 * 'unknown' for a coding that cannot be decoded (then the body cannot be checked for
 * tokens, so the caller answers 502 rather than pass it on).
 */
export function parseUpstreamCoding(header: string | string[] | undefined): UpstreamCoding[] | 'unknown' {
  if (header === undefined) return [];
  const list = (Array.isArray(header) ? header.join(',') : header)
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s && s !== 'identity');
  const out: UpstreamCoding[] = [];
  // Listed in the order applied; decoding undoes the last one first.
  for (const c of list.reverse()) {
    if (c === 'gzip' || c === 'x-gzip') out.push('gzip');
    else if (c === 'deflate') out.push('deflate');
    else if (c === 'br') out.push('br');
    else return 'unknown';
  }
  return out;
}

/**
 * A write to zlib beyond its buffer answers "full", and each such answer costs a trip
 * through the event loop before the next chunk: 64 KiB takes a usual upstream read whole.
 */
const STREAM_BUFFER = { writableHighWaterMark: 64 * 1024, readableHighWaterMark: 64 * 1024 };

export function createDecoder(coding: UpstreamCoding): Transform {
  // Lenient flushing: a body cut short still yields what it had (as browsers do).
  const lenient = { flush: constants.Z_SYNC_FLUSH, finishFlush: constants.Z_SYNC_FLUSH, ...STREAM_BUFFER };
  if (coding === 'gzip') return createGunzip(lenient);
  if (coding === 'deflate') return createInflate(lenient);
  return createBrotliDecompress({ flush: constants.BROTLI_OPERATION_FLUSH, finishFlush: constants.BROTLI_OPERATION_FLUSH, ...STREAM_BUFFER });
}

export function createEncoder(coding: Exclude<BrowserCoding, 'identity'>): Transform {
  return coding === 'br' ? createBrotliCompress({ ...BROTLI_OPTIONS, ...STREAM_BUFFER }) : createGzip({ ...GZIP_OPTIONS, ...STREAM_BUFFER });
}

export type BodyKind = 'json' | 'event-stream' | 'text' | 'other';

/** What a Content-Type means for cleaning and compressing. */
export function bodyKind(contentType: string | string[] | undefined): BodyKind {
  const t = (Array.isArray(contentType) ? contentType[0] : contentType)?.split(';')[0]?.trim().toLowerCase() ?? '';
  if (t === 'text/event-stream') return 'event-stream';
  // JSON, ndjson, JSON-seq and JSONP (javascript) all carry `"name":` members.
  if (/[/+](?:x-)?(?:json|ndjson|jsonl|json-seq)$/.test(t) || t === 'application/javascript' || t === 'text/javascript') return 'json';
  if (t.startsWith('text/') || /[/+]xml$/.test(t)) return 'text';
  return 'other';
}

export const isCompressible = (kind: BodyKind) => kind === 'json' || kind === 'text';
