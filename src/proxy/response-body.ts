import type { Transform } from 'node:stream';
import { createJsonCleaner } from './json-cleaner.js';
import { createSecretScrubber, type BodyStage, type SecretSet } from './secret-scrubber.js';
import { createSseFramer } from './sse.js';
import { dropHeadersWithSecrets } from './token-headers.js';
import {
  bodyKind,
  chooseBrowserCoding,
  COMPRESS_MIN_BYTES,
  createDecoder,
  createEncoder,
  isCompressible,
  parseUpstreamCoding,
  type BodyKind,
  type BrowserCoding,
  type UpstreamCoding,
} from './encoding.js';

/**
 * What the proxy does with one upstream answer, decided from its status and headers alone
 * (undici's onResponseStart), and the writer that carries its body to the browser
 * (onResponseData / onResponseEnd), cleaned, decoded and re-encoded on the way.
 */

export type Headers = Record<string, string | string[]>;

export interface ResponseStart {
  method: string;
  status: number;
  /** Upstream's headers after the general rules (hop-by-hop, Set-Cookie, CORS...): copied, not changed. */
  headers: Headers;
  /** The browser's Accept-Encoding. */
  acceptEncoding: string | string[] | undefined;
  secrets: SecretSet;
}

export type BodyPlan = {
  kind: 'body';
  status: number;
  /** Final except Content-Encoding, which the writer sets once it has decided. */
  headers: Headers;
  decode: UpstreamCoding[];
  stage: 'json' | 'event-stream' | 'scrub';
  /** `decide`: compress if the first COMPRESS_MIN_BYTES bytes arrive, else identity. */
  encode: BrowserCoding | 'decide';
  browserCoding: BrowserCoding;
};

export type ResponsePlan =
  /** Upstream used a coding cloakroom cannot decode, so cannot check: answer 502. */
  | { kind: 'refuse'; reason: 'unknown_content_encoding' }
  | { kind: 'no-body'; status: number; headers: Headers }
  | BodyPlan;

const DIGESTS = ['content-md5', 'digest', 'content-digest', 'repr-digest'];

function weakenEtag(headers: Headers): void {
  const etag = headers.etag;
  // Another coding is another representation: a strong validator would lie about the bytes.
  if (typeof etag === 'string' && !etag.startsWith('W/')) headers.etag = `W/${etag}`;
}

function appendVary(headers: Headers, name: string): void {
  const v = headers.vary;
  if (v === undefined) {
    headers.vary = name;
    return;
  }
  const list = (Array.isArray(v) ? v.join(',') : (v ?? '')).split(',').map((s) => s.trim()).filter(Boolean);
  if (list.some((s) => s === '*' || s.toLowerCase() === name.toLowerCase())) return;
  headers.vary = [...list, name].join(', ');
}

/**
 * A copy that takes new properties cheaply. V8 (Node 20) makes an object from `{ ...src }`
 * whose first added property costs about 0.6 µs (measured: spread then two additions 1.2 µs,
 * a loop copy then the same additions 0.1 µs), and every answer adds Vary and X-Request-Id.
 */
export function copyHeaders(src: Headers): Headers {
  const out: Headers = {};
  for (const name in src) out[name] = src[name] as string | string[];
  return out;
}

export function planResponse(start: ResponseStart): ResponsePlan {
  const headers = copyHeaders(start.headers);
  dropHeadersWithSecrets(headers, start.secrets);
  // Range is never forwarded (docs/design.md "Partial answers"), so none is offered either.
  delete headers['accept-ranges'];
  const kind: BodyKind = bodyKind(headers['content-type']);
  const coding = parseUpstreamCoding(headers['content-encoding']);
  const noBody = start.method === 'HEAD' || start.status === 204 || start.status === 304 || start.status < 200;
  const compressible = isCompressible(kind);
  if (compressible) appendVary(headers, 'Accept-Encoding');
  const changesBytes = compressible || (coding !== 'unknown' && coding.length > 0);
  if (changesBytes || start.status === 304) weakenEtag(headers);

  if (noBody) {
    if (changesBytes || coding === 'unknown') {
      delete headers['content-encoding'];
      delete headers['content-length'];
    }
    return { kind: 'no-body', status: start.status, headers };
  }
  if (coding === 'unknown') return { kind: 'refuse', reason: 'unknown_content_encoding' };
  delete headers['content-encoding'];
  for (const d of DIGESTS) delete headers[d];

  const browserCoding = chooseBrowserCoding(start.acceptEncoding);
  let encode: BrowserCoding | 'decide' = 'identity';
  if (kind === 'event-stream') {
    // Never compressed nor buffered: tell a buffering reverse proxy in front (nginx) the same.
    headers['x-accel-buffering'] = 'no';
  } else if (compressible && browserCoding !== 'identity') {
    const declared = coding.length === 0 ? Number(headers['content-length'] ?? NaN) : NaN;
    encode = Number.isFinite(declared) ? (declared >= COMPRESS_MIN_BYTES ? browserCoding : 'identity') : 'decide';
  }
  // Cleaning keeps lengths (blanks, padded redactions); only a change of coding loses it.
  if (coding.length > 0 || encode !== 'identity') delete headers['content-length'];
  const stage = kind === 'json' ? 'json' : kind === 'event-stream' ? 'event-stream' : 'scrub';
  return { kind: 'body', status: start.status, headers, decode: coding, stage, encode, browserCoding };
}

function chain(first: BodyStage, second: BodyStage): BodyStage {
  return {
    push: (chunk) => first.push(chunk).flatMap((c) => second.push(c)),
    end: () => [...first.end().flatMap((c) => second.push(c)), ...second.end()],
    get buffered() {
      return first.buffered + second.buffered;
    },
  };
}

export function createBodyStage(stage: BodyPlan['stage'], secrets: SecretSet): BodyStage {
  if (stage === 'event-stream') return createSseFramer(secrets);
  const scrubber = createSecretScrubber(secrets);
  return stage === 'json' ? chain(createJsonCleaner(), scrubber) : scrubber;
}

/** Bytes gathered for one zlib write at most (the encoders' own buffer size, encoding.ts). */
const ENCODER_BATCH = 64 * 1024;

/** The browser's response, as much of `ServerResponse` as the writer uses. */
export interface ResponseSink {
  writeHead(status: number, headers: Headers): unknown;
  write(chunk: Buffer): boolean;
  end(): unknown;
  once(event: 'drain', listener: () => void): unknown;
}

/** Upstream's read side: undici's DispatchController. */
export interface UpstreamFlow {
  pause(): void;
  resume(): void;
}

export interface BodyWriter {
  /** undici onResponseData: synchronous; backpressure goes through `flow.pause()`. */
  onData(chunk: Buffer): void;
  /** undici onResponseEnd. */
  onEnd(): void;
  /** Upstream failed mid-body, or the browser left: frees the zlib streams. */
  abort(): void;
  /** Bytes held by cloakroom's own stages (not zlib's or the sockets'). */
  readonly buffered: number;
}

/**
 * Carries one body. `onFailure` is called once if a coding turns out corrupt mid-body (the
 * caller then cuts the browser's connection, as for an upstream that breaks off).
 *
 * Backpressure: a full browser socket pauses the encoder, a full encoder pauses the decoder
 * or upstream, a full decoder pauses upstream (undici's controller), each resumed on 'drain'.
 * A compressed answer is flushed whenever upstream has nothing more for now (one setImmediate
 * after the last chunk), so a slow stream reaches the browser as it comes, not at the end.
 */
export function createBodyWriter(plan: BodyPlan, secrets: SecretSet, sink: ResponseSink, flow: UpstreamFlow, onFailure: (err: Error) => void): BodyWriter {
  const stage = createBodyStage(plan.stage, secrets);
  const decoders: Transform[] = plan.decode.map(createDecoder);
  const firstDecoder = decoders[0];
  const lastDecoder = decoders[decoders.length - 1];
  let encoder: Transform | null = null;
  let mode: BrowserCoding | 'decide' = plan.encode;
  let firstBytes: Buffer[] = [];
  let headSize = 0;
  let failed = false;
  let ended = false;
  let flushQueued = false;
  let queued: Buffer[] = [];
  let queuedSize = 0;

  const pauses = new Set<string>();
  const pause = (why: string) => {
    if (pauses.size === 0) flow.pause();
    pauses.add(why);
  };
  const resume = (why: string) => {
    if (pauses.delete(why) && pauses.size === 0) flow.resume();
  };
  // Whatever feeds the stage: the last decoder, or upstream itself.
  let sourcePaused = false;
  const pauseSource = () => {
    if (sourcePaused) return;
    sourcePaused = true;
    if (lastDecoder) lastDecoder.pause();
    else pause('downstream');
  };
  const resumeSource = () => {
    if (!sourcePaused) return;
    sourcePaused = false;
    if (lastDecoder) lastDecoder.resume();
    else resume('downstream');
  };

  const fail = (err: Error) => {
    if (failed) return;
    failed = true;
    for (const d of decoders) d.destroy();
    encoder?.destroy();
    onFailure(err);
  };

  // The head goes out with the first bytes of body (an event stream's at once): until then a
  // stalled or broken upstream can still be answered with a clean 502/504 by the caller.
  let head: Headers | null = null;
  const writeHead = () => {
    if (head === null) return;
    sink.writeHead(plan.status, head);
    head = null;
  };
  const sinkWrite = (c: Buffer): boolean => {
    writeHead();
    return sink.write(c);
  };
  const sinkEnd = () => {
    writeHead();
    sink.end();
  };

  const start = (coding: BrowserCoding) => {
    mode = coding;
    const headers = copyHeaders(plan.headers);
    if (coding !== 'identity') {
      headers['content-encoding'] = coding;
      const enc = createEncoder(coding);
      encoder = enc;
      let sinkFull = false;
      enc.on('data', (c: Buffer) => {
        if (sinkWrite(c) || sinkFull) return;
        sinkFull = true;
        enc.pause();
        sink.once('drain', () => {
          sinkFull = false;
          enc.resume();
        });
      });
      enc.on('drain', resumeSource);
      enc.on('end', sinkEnd);
      enc.on('error', fail);
    }
    head = headers;
    if (plan.stage === 'event-stream') writeHead();
  };

  let sinkWaiting = false;
  const send = (c: Buffer) => {
    if (failed || c.length === 0) return;
    if (mode === 'decide') {
      firstBytes.push(c);
      headSize += c.length;
      if (headSize < COMPRESS_MIN_BYTES) return;
      start(plan.browserCoding);
      const h = firstBytes;
      firstBytes = [];
      headSize = 0;
      for (const x of h) send(x);
      return;
    }
    if (encoder) {
      // Gathered until upstream has nothing more for now (or 64 KiB): each zlib write is a
      // trip to the thread pool, and the stages' held-back tails would each cost one more.
      queued.push(c);
      queuedSize += c.length;
      if (queuedSize >= ENCODER_BATCH) writeQueued();
      if (!flushQueued) {
        flushQueued = true;
        setImmediate(flushEncoder);
      }
      return;
    }
    if (!sinkWrite(c) && !sinkWaiting) {
      sinkWaiting = true;
      pauseSource();
      sink.once('drain', () => {
        sinkWaiting = false;
        resumeSource();
      });
    }
  };
  // The stages hand back a held-back tail and the bulk as two pieces: one socket write per
  // upstream chunk; toward an encoder the pieces are gathered anyway (writeQueued), once.
  const sendAll = (outs: Buffer[]) => {
    if (outs.length === 1 || (encoder && mode !== 'decide')) for (const o of outs) send(o);
    else if (outs.length > 1) send(Buffer.concat(outs));
  };
  const writeQueued = () => {
    if (queued.length === 0 || !encoder) return;
    const one = queued.length === 1 ? (queued[0] as Buffer) : Buffer.concat(queued, queuedSize);
    queued = [];
    queuedSize = 0;
    if (!encoder.write(one)) pauseSource();
  };
  const flushEncoder = () => {
    flushQueued = false;
    const enc = encoder as (Transform & { flush?: (cb?: () => void) => void }) | null;
    if (!enc || ended || failed) return;
    writeQueued();
    // Paused for backpressure means more is coming, not that upstream went quiet.
    if (!sourcePaused && pauses.size === 0) enc.flush?.();
  };

  const finish = () => {
    if (failed) return;
    sendAll(stage.end());
    if (mode === 'decide') {
      // Ended below the threshold: not worth compressing.
      start(headSize >= COMPRESS_MIN_BYTES ? plan.browserCoding : 'identity');
      const h = firstBytes;
      firstBytes = [];
      for (const x of h) send(x);
    }
    ended = true;
    if (encoder) {
      writeQueued();
      (encoder as Transform).end();
    } else sinkEnd();
  };

  if (firstDecoder && lastDecoder) {
    for (let i = 0; i + 1 < decoders.length; i++) (decoders[i] as Transform).pipe(decoders[i + 1] as Transform);
    for (const d of decoders) d.on('error', fail);
    firstDecoder.on('drain', () => resume('decoder'));
    lastDecoder.on('data', (c: Buffer) => sendAll(stage.push(c)));
    lastDecoder.on('end', finish);
  }
  if (mode !== 'decide') start(mode);

  return {
    onData(chunk) {
      if (failed) return;
      if (firstDecoder) {
        if (!firstDecoder.write(chunk)) pause('decoder');
        return;
      }
      sendAll(stage.push(chunk));
    },
    onEnd() {
      if (failed) return;
      if (firstDecoder) firstDecoder.end();
      else finish();
    },
    abort() {
      failed = true;
      for (const d of decoders) d.destroy();
      encoder?.destroy();
    },
    get buffered() {
      return stage.buffered + headSize;
    },
  };
}

/**
 * Request headers toward upstream, as the cleaning needs them (call after the general
 * header rules): no partial answers (a token must never be put together from pieces the
 * browser chose), and only codings cloakroom can decode (see encoding.ts).
 */
export function applyBodyRequestRules(headers: Headers, upstreamAcceptEncoding: string): void {
  delete headers.range;
  delete headers['if-range'];
  headers['accept-encoding'] = upstreamAcceptEncoding;
}
