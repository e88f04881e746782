/**
 * Answer bodies on the wire (docs/performance.md, "Answer bodies on the wire"):
 *
 * (a) a 64 KB JSON answer to a browser accepting `br, gzip`, through cloakroom (cleaning,
 *     scrubbing, compressing) and through a bare Node proxy that only compresses, with the
 *     same zlib settings (bench/servers/bare-compress-proxy.ts): bytes on the wire, req/s
 *     and CPU per request, in interleaved rounds;
 * (b) 20 MB JSON answers of unknown length, 20 in flight, to the same browser: peak RSS of
 *     a fresh cloakroom process, and every byte decoded and searched for a token field or
 *     the bearer.
 *
 * Part of `npm run bench`; alone: `node dist/bench/phases/wire.js [--quick] [--rounds N]
 * [--seconds S] [--connections C] [--tool autocannon|wrk] [--wire-profile]`; `--wire-profile`
 * runs cloakroom's side of (a) under --cpu-prof and prints where its main thread went.
 */
import { mkdtempSync, readdirSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { constants, createBrotliDecompress } from 'node:zlib';
import { request } from 'undici';
import { formatProfile, summariseProfile } from '../lib/cpuprofile.js';
import { cloakroomEnv, signIn, startBed, stopBed, type Bed, type BenchTarget } from '../lib/bed.js';
import { parseArgs, type Options } from '../lib/options.js';
import { procMemory, startServer, type ServerChild } from '../lib/processes.js';
import { bars, fmt, log, table } from '../lib/report.js';
import { median } from '../lib/samples.js';
import { mb, sleep } from '../lib/units.js';
import { measure } from './throughput.js';

const ACCEPT = 'br, gzip';
const TOKEN_FIELD = /"(?:access_?token|refresh_?token|id_?token)"\s*:/i;
/** Any access token the bench upstream issues (`at_<generation>.<32 base64url>`): the session's own included. */
const BEARER = /at_\d+\.[A-Za-z0-9_-]{32}/;
const PEAK_RSS_TARGET_MB = 250;
// bed.ts's TOKEN_KEY (one repeated byte) is refused by today's config checks; a varied one here.
const KEY = { TOKEN_ENCRYPTION_KEY: Buffer.from(Array.from({ length: 32 }, (_, i) => (i * 37 + 11) & 0xff)).toString('base64') };

export interface WireSide {
  name: string;
  wireBytes: number;
  coding: string;
  rps: number;
  cpuUsPerReq: number;
  p99Us: number;
  errors: number;
}

export interface WireSummary {
  small: { body: number; sides: WireSide[]; rpsRatio: number; bytesRatio: number };
  large: { requests: number; inFlight: number; bytesEach: number; seconds: number; peakRssMb: number; hwmMb: number; tokenFieldsSeen: number; bearerSeen: number; failures: number };
  loadavg: number[];
}

/** One answer as the browser gets it: bytes on the wire and the decoded body. */
async function fetchOnce(t: BenchTarget): Promise<{ wire: Buffer; coding: string; decoded: Buffer }> {
  const res = await request(t.url, { headers: t.headers });
  const wire = Buffer.from(await res.body.arrayBuffer());
  if (res.statusCode !== 200) throw new Error(`${t.name}: ${res.statusCode} ${wire.toString('utf8').slice(0, 200)}`);
  const coding = String(res.headers['content-encoding'] ?? 'identity');
  const { brotliDecompressSync, gunzipSync } = await import('node:zlib');
  const decoded = coding === 'br' ? brotliDecompressSync(wire) : coding === 'gzip' ? gunzipSync(wire) : wire;
  return { wire, coding, decoded };
}

async function smallAnswers(bed: Bed, opts: Options, wireUp: ServerChild, bearer: string): Promise<WireSummary['small']> {
  const profiling = process.argv.includes('--wire-profile');
  const dirs = profiling ? [mkdtempSync(join(tmpdir(), 'bare-wire-prof-')), mkdtempSync(join(tmpdir(), 'cloakroom-wire-prof-'))] : [];
  const prof = (i: number) => (dirs[i] ? ['--cpu-prof', '--cpu-prof-dir', dirs[i]] : []);
  const bare = await startServer('bare-compress-proxy', 'bare-compress-proxy', { BENCH_UPSTREAM_URL: wireUp.url }, prof(0));
  bed.children.push(bare);
  const cloak = await startServer('cloakroom-wire', 'cloakroom', cloakroomEnv({ topology: bed.topology, upstream: wireUp }, KEY), prof(1));
  bed.children.push(cloak);
  const targets: BenchTarget[] = [
    { name: 'bare-compress-proxy', child: bare, url: `${bare.url}/api/wire/64k`, headers: { authorization: `Bearer ${bearer}`, 'accept-encoding': ACCEPT } },
    { name: 'cloakroom', child: cloak, url: `${cloak.url}/api/wire/64k`, headers: { cookie: await signIn(cloak), 'x-csrf': '1', 'accept-encoding': ACCEPT } },
  ];
  const direct = Buffer.from(await (await request(`${wireUp.url}/api/wire/64k`)).body.arrayBuffer());
  const shapes: { wireBytes: number; coding: string }[] = [];
  for (const t of targets) {
    const once = await fetchOnce(t);
    // Nothing to clean in this body: both must hand back upstream's bytes exactly.
    if (!once.decoded.equals(direct)) throw new Error(`${t.name}: the decoded 64 KB answer differs from upstream's`);
    shapes.push({ wireBytes: once.wire.length, coding: once.coding });
  }
  log(`\n== wire (a): a ${fmt(direct.length / 1024, 0)} KB JSON answer, Accept-Encoding "${ACCEPT}", ${opts.rounds} interleaved round(s) of ${opts.seconds} s, ${opts.connections} connections, ${opts.tool}`);
  for (const t of targets) await measure(bed, t, opts.tool, opts, opts.warmSeconds);
  const rounds = new Map<string, Awaited<ReturnType<typeof measure>>[]>(targets.map((t) => [t.name, []]));
  for (let r = 0; r < opts.rounds; r++) {
    for (const t of r % 2 === 0 ? targets : [...targets].reverse()) rounds.get(t.name)?.push(await measure(bed, t, opts.tool, opts, opts.seconds));
  }
  const sides: WireSide[] = targets.map((t, i) => {
    const rs = rounds.get(t.name) ?? [];
    return {
      name: t.name,
      wireBytes: shapes[i]?.wireBytes ?? Number.NaN,
      coding: shapes[i]?.coding ?? '?',
      rps: median(rs.map((x) => x.load.rps)),
      cpuUsPerReq: median(rs.map((x) => x.cpuUsPerReq)),
      p99Us: median(rs.map((x) => x.load.p99Us)),
      errors: rs.reduce((a, x) => a + x.load.errors + x.load.non2xx, 0),
    };
  });
  const served = [(await bare.stats()).requests, (await cloak.stats()).requests];
  await cloak.stop();
  await bare.stop();
  dirs.forEach((dir, i) => {
    const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
    if (file) log(`\nprofile of ${targets[i]?.name ?? '?'}: ${join(dir, file)}\n${formatProfile(summariseProfile(join(dir, file)), served[i])}`);
  });
  const [b, c] = sides as [WireSide, WireSide];
  return { body: direct.length, sides, rpsRatio: c.rps / b.rps, bytesRatio: c.wireBytes / b.wireBytes };
}

/** Reads one answer as a browser would, decoding it and searching every byte (with a seam) for what must not be there. */
function readLarge(url: string, headers: Record<string, string>): Promise<{ bytes: number; fields: number; bearer: number }> {
  return new Promise((resolve, reject) => {
    request(url, { headers }).then((res) => {
      if (res.statusCode !== 200 || res.headers['content-encoding'] !== 'br') {
        reject(new Error(`20 MB answer: ${res.statusCode}, coding ${String(res.headers['content-encoding'])}`));
        return;
      }
      const dec = createBrotliDecompress({ finishFlush: constants.BROTLI_OPERATION_FLUSH });
      let tail = '';
      let bytes = 0;
      let fields = 0;
      let seen = 0;
      dec.on('data', (c: Buffer) => {
        bytes += c.length;
        const text = tail + c.toString('latin1');
        if (TOKEN_FIELD.test(text)) fields++;
        if (BEARER.test(text)) seen++;
        tail = text.slice(-512);
      });
      dec.on('end', () => resolve({ bytes, fields, bearer: seen }));
      dec.on('error', reject);
      res.body.on('error', reject);
      res.body.pipe(dec);
    }, reject);
  });
}

async function largeAnswers(bed: Bed, opts: Options, wireUp: ServerChild): Promise<WireSummary['large']> {
  const inFlight = 20;
  const perWorker = opts.rounds >= 3 ? 3 : 1;
  const { large: bytesEach } = await wireUp.control<{ large: number }>('sizes');
  log(`\n== wire (b): ${inFlight} answers of ${fmt(bytesEach / 1e6, 1)} MB JSON (chunked, a token field and the bearer about every MiB) in flight, ${perWorker} each, Accept-Encoding "${ACCEPT}", a fresh cloakroom process`);
  const cloak = await startServer('cloakroom-wire-large', 'cloakroom', cloakroomEnv({ topology: bed.topology, upstream: wireUp }, KEY));
  bed.children.push(cloak);
  const headers = { cookie: await signIn(cloak), 'x-csrf': '1', 'accept-encoding': ACCEPT };
  let peak = 0;
  const timer = setInterval(() => {
    peak = Math.max(peak, procMemory(cloak.pid)?.rss ?? 0);
  }, 50);
  const started = performance.now();
  let fields = 0;
  let seen = 0;
  let failures = 0;
  let done = 0;
  try {
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        for (let i = 0; i < perWorker; i++) {
          try {
            const r = await readLarge(`${cloak.url}/api/wire/20m`, headers);
            fields += r.fields;
            seen += r.bearer;
            if (r.bytes < bytesEach) failures++;
            done++;
          } catch (err) {
            failures++;
            log(`  a 20 MB answer failed: ${err instanceof Error ? err.message : String(err)}`);
          }
        }
      }),
    );
  } finally {
    clearInterval(timer);
  }
  const seconds = (performance.now() - started) / 1000;
  await sleep(100);
  const hwm = procMemory(cloak.pid)?.hwm ?? Number.NaN;
  await cloak.stop();
  return { requests: done, inFlight, bytesEach, seconds, peakRssMb: mb(peak), hwmMb: mb(hwm), tokenFieldsSeen: fields, bearerSeen: seen, failures };
}

export function printWire(w: WireSummary): void {
  const { small, large } = w;
  log(`\n-- wire (a): ${fmt(small.body / 1024, 0)} KB JSON, "${ACCEPT}" (load average ${w.loadavg.map((x) => x.toFixed(2)).join(' ')})`);
  log(table(['target', 'coding', 'bytes on wire', 'req/s', 'CPU us/req', 'p99 ms', 'errors'], small.sides.map((s) => [s.name, s.coding, s.wireBytes, fmt(s.rps, 0), fmt(s.cpuUsPerReq, 0), fmt(s.p99Us / 1000, 1), s.errors])));
  log('\nreq/s');
  log(bars(small.sides.map((s) => [s.name, s.rps, fmt(s.rps, 0)])));
  log('CPU us per request');
  log(bars(small.sides.map((s) => [s.name, s.cpuUsPerReq, fmt(s.cpuUsPerReq, 0)])));
  log(`cloakroom / bare compressing proxy: ${fmt(small.rpsRatio, 2)}x req/s (target >= 0.80), ${fmt(small.bytesRatio, 3)}x bytes (target within 5%)`);
  log(`\n-- wire (b): ${large.requests} x ${fmt(large.bytesEach / 1e6, 1)} MB, ${large.inFlight} in flight, ${fmt(large.seconds, 1)} s (${fmt((large.requests * large.bytesEach) / 1e6 / large.seconds, 0)} MB/s decoded)`);
  log(`peak RSS ${fmt(large.peakRssMb, 0)} MB sampled, ${fmt(large.hwmMb, 0)} MB high-water mark (target <= ${PEAK_RSS_TARGET_MB}); token fields seen by the browser: ${large.tokenFieldsSeen}; bearer seen: ${large.bearerSeen}; failed answers: ${large.failures}`);
}

export async function wirePhase(bed: Bed, opts: Options): Promise<WireSummary> {
  const bearer = await bed.upstream.control<string>('bearer');
  const wireUp = await startServer('wire-upstream', 'wire-upstream', { BENCH_UPSTREAM_URL: bed.upstream.url });
  bed.children.push(wireUp);
  const small = await smallAnswers(bed, opts, wireUp, bearer);
  const large = await largeAnswers(bed, opts, wireUp);
  const summary: WireSummary = { small, large, loadavg: loadavg() };
  printWire(summary);
  log(`WIRE ${JSON.stringify(summary)}`);
  await wireUp.stop();
  return summary;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const opts = parseArgs(process.argv.slice(2));
  const bed = await startBed();
  try {
    log(`cloakroom bench, wire phase alone: node ${process.version}, load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
    await wirePhase(bed, opts);
  } finally {
    await stopBed(bed);
  }
  process.exit(0);
}
