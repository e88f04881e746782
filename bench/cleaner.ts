/**
 * Micro benchmark of the body stages (src/proxy): `npm run build && node dist/bench/cleaner.js`.
 * Prints MB/s of the JSON cleaner's fast path and member path, of the secret scrubber, of
 * @streamparser/json's Tokenizer on the same bytes (what a tokenizer-based cleaner would
 * cost at least), then the body writer against a bare zlib pipe on 64 KB answers, and peak
 * RSS with 20 answers of 20 MB in flight.
 */
import { createBrotliCompress, gzipSync, brotliDecompressSync } from 'node:zlib';
import { Tokenizer } from '@streamparser/json';
import { createJsonCleaner } from '../src/proxy/json-cleaner.js';
import { createSecretScrubber, secretSet, type BodyStage } from '../src/proxy/secret-scrubber.js';
import { BROTLI_OPTIONS } from '../src/proxy/encoding.js';
import { variedJson } from './lib/body.js';
import { createBodyWriter, planResponse, type Headers, type ResponseSink } from '../src/proxy/response-body.js';

const ACCESS = `eyJhbGciOiJSUzI1NiJ9.${'eyJzdWIiOiIxMjMifQ'.repeat(40)}.c2lnbmF0dXJl`; // a 770-byte JWT-like token
const secrets = secretSet([ACCESS, 'opaque-refresh-token-0123456789']);
const CHUNK = 64 * 1024;

function doc(targetBytes: number, tokenEvery: number): Buffer {
  const items: string[] = [];
  let size = 2;
  for (let i = 0; size < targetBytes; i++) {
    const item = JSON.stringify(
      i % tokenEvery === tokenEvery - 1
        ? { id: i, name: `Item ${i}`, description: 'A desk by the window, with a view of the park.', AccessToken: 'x'.repeat(40), price: 12.5, tags: ['a', 'b'] }
        : { id: i, name: `Item ${i}`, description: 'A desk by the window, with a view of the park.', price: 12.5, tags: ['a', 'b'], ok: true },
    );
    items.push(item);
    size += item.length + 1;
  }
  return Buffer.from(`[${items.join(',')}]`);
}

function mbps(bytes: number, ms: number): string {
  return `${((bytes / (1 << 20)) / (ms / 1000)).toFixed(0)} MB/s`;
}

function timeStage(make: () => BodyStage, body: Buffer, rounds: number): number {
  const t0 = performance.now();
  for (let r = 0; r < rounds; r++) {
    const s = make();
    for (let at = 0; at < body.length; at += CHUNK) s.push(body.subarray(at, at + CHUNK));
    s.end();
  }
  return performance.now() - t0;
}

function stages() {
  const clean = doc(8 << 20, Number.MAX_SAFE_INTEGER);
  const sparse = doc(8 << 20, 50);
  const dense = doc(8 << 20, 1);
  const rounds = 3;
  const line = (name: string, make: () => BodyStage, body: Buffer) => {
    timeStage(make, body, 1); // warm up
    console.log(`${name.padEnd(44)} ${mbps(body.length * rounds, timeStage(make, body, rounds))}`);
  };
  line('json cleaner, no token field (fast path)', () => createJsonCleaner(), clean);
  line('json cleaner, token field in 1 item of 50', () => createJsonCleaner(), sparse);
  line('json cleaner, token field in every item', () => createJsonCleaner(), dense);
  line('secret scrubber, JSON without escapes', () => createSecretScrubber(secrets), clean);
  const escaped = Buffer.from(clean.toString().replace(/window/g, 'win\\u00e9ow\\/%20&#65;'));
  line('secret scrubber, escapes everywhere', () => createSecretScrubber(secrets), escaped);
  const tokenizerTime = (body: Buffer) => {
    const t0 = performance.now();
    for (let r = 0; r < rounds; r++) {
      const t = new Tokenizer({ stringBufferSize: 64 * 1024 });
      let n = 0;
      t.onToken = () => void n++;
      for (let at = 0; at < body.length; at += CHUNK) t.write(body.subarray(at, at + CHUNK));
    }
    return performance.now() - t0;
  };
  tokenizerTime(clean);
  console.log(`${'@streamparser/json Tokenizer, tokens only'.padEnd(44)} ${mbps(clean.length * rounds, tokenizerTime(clean))}`);
}

class CountingSink implements ResponseSink {
  bytes = 0;
  headers: Headers = {};
  chunks: Buffer[] = [];
  keep = false;
  constructor(private readonly done: () => void) {}
  writeHead(_s: number, h: Headers) {
    this.headers = h;
  }
  write(c: Buffer) {
    this.bytes += c.length;
    if (this.keep) this.chunks.push(c);
    return true;
  }
  end() {
    this.done();
  }
  once() {
    return this;
  }
}

/** One answer through the writer, fed in 16 KB chunks as undici would. */
function viaWriter(body: Buffer, headers: Headers, keep = false): Promise<CountingSink> {
  return new Promise((resolve) => {
    const plan = planResponse({ method: 'GET', status: 200, headers, acceptEncoding: 'br, gzip', secrets });
    if (plan.kind !== 'body') throw new Error(plan.kind);
    const sink: CountingSink = new CountingSink(() => resolve(sink));
    sink.keep = keep;
    let paused = false;
    let at = 0;
    const flow = {
      pause: () => void (paused = true),
      resume: () => {
        paused = false;
        setImmediate(feed);
      },
    };
    const w = createBodyWriter(plan, secrets, sink, flow, (e) => {
      throw e;
    });
    const feed = () => {
      while (!paused && at < body.length) {
        w.onData(body.subarray(at, at + 16384));
        at += 16384;
      }
      if (at >= body.length && !paused) {
        at = Infinity;
        w.onEnd();
      }
    };
    feed();
  });
}

/** The same answer through a bare brotli stream with the same settings (what a plain Node proxy does). */
function viaBareZlib(body: Buffer): Promise<number> {
  return new Promise((resolve) => {
    const z = createBrotliCompress(BROTLI_OPTIONS);
    let bytes = 0;
    z.on('data', (c: Buffer) => (bytes += c.length));
    z.on('end', () => resolve(bytes));
    // As `upstream.pipe(brotli).pipe(res)` would: wait for 'drain' when zlib says it is full.
    let at = 0;
    const feed = () => {
      while (at < body.length) {
        const ok = z.write(body.subarray(at, at + 16384));
        at += 16384;
        if (!ok) return void z.once('drain', feed);
      }
      z.end();
    };
    feed();
  });
}


async function throughput() {
  for (const [name, body] of [
    ['repetitive', doc(64 * 1024, Number.MAX_SAFE_INTEGER)],
    ['varied', variedJson(64 * 1024)],
  ] as const) await throughputOf(name, body);
}

async function throughputOf(name: string, body: Buffer) {
  const headers = { 'content-type': 'application/json', 'content-length': String(body.length) };
  const check = await viaWriter(body, headers, true);
  const back = brotliDecompressSync(Buffer.concat(check.chunks));
  if (!back.equals(body)) throw new Error(`round trip failed: ${back.length} of ${body.length} bytes, ${check.headers['content-encoding']}`);
  const run = async (one: () => Promise<unknown>, n: number, inFlight: number) => {
    const t0 = performance.now();
    let started = 0;
    const lane = async () => {
      while (started < n) {
        started++;
        await one();
      }
    };
    await Promise.all(Array.from({ length: inFlight }, lane));
    return n / ((performance.now() - t0) / 1000);
  };
  let writerBytes = 0;
  let bareBytes = 0;
  // Alternated, best of five: the machine is shared and a single run swings by 2x.
  let w = 0;
  let b = 0;
  for (let round = 0; round < 5; round++) {
    w = Math.max(w, await run(async () => (writerBytes = (await viaWriter(body, headers)).bytes), 1000, 8));
    b = Math.max(b, await run(async () => (bareBytes = await viaBareZlib(body)), 1000, 8));
  }
  console.log(`64 KB ${name} JSON to a "br, gzip" browser: writer ${w.toFixed(0)}/s, bare brotli stream ${b.toFixed(0)}/s (${(w / b).toFixed(2)}x); bytes ${writerBytes} vs ${bareBytes} (${((writerBytes / bareBytes - 1) * 100).toFixed(1)}%)`);
}

async function memory() {
  const raw = doc(20 << 20, 50);
  const gz = gzipSync(raw);
  let peak = 0;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
  const before = process.memoryUsage().rss;
  const t0 = performance.now();
  const sinks = await Promise.all(Array.from({ length: 20 }, () => viaWriter(gz, { 'content-type': 'application/json', 'content-encoding': 'gzip' })));
  clearInterval(timer);
  peak = Math.max(peak, process.memoryUsage().rss);
  console.log(
    `20 x 20 MB gzip JSON to br, all in flight: ${((performance.now() - t0) / 1000).toFixed(1)} s, rss before ${(before / 2 ** 20).toFixed(0)} MB, peak ${(peak / 2 ** 20).toFixed(0)} MB, out ${(sinks[0]?.bytes ?? 0) >> 10} KB each`,
  );
}

if (!process.argv.includes("--no-stages")) stages();
if (!process.argv.includes("--no-throughput")) await throughput();
if (!process.argv.includes("--no-memory")) await memory();
