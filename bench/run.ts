/**
 * `npm run bench`: cloakroom's `/api/*` path against a bare Node proxy (the ceiling for any
 * Node hop), the upstream itself and a hand-assembled express-session BFF, side by side in
 * one run (issue #5). Every server is its own child process; the load generator runs here.
 *
 *   node dist/bench/run.js [--rounds 3] [--seconds 10] [--connections 50] [--rate 1000]
 *                          [--paced-rounds 4] [--paced-seconds 3] [--rss-requests 200000]
 *                          [--storm 500] [--storm-trials 9] [--storm-warmup 60] [--storm-warmup-trials 5] [--refresh-delay 50]
 *                          [--tool autocannon|wrk] [--quick] [--experiments]
 *                          [--targets a,b,...]   (throughput phase only, for A/B runs)
 *                          [--storm-only]        (the refresh storm alone)
 *                          [--storm-profile]     (CPU profile of one storm instance)
 *                          [--profile [cloakroom|bare-proxy|reference-bff|cloakroom-memory]]
 *
 * See docs/performance.md for the method and the results.
 *
 * Prints a table and, last, one line `BENCH {...}` for machines. Figures, not pass/fail:
 * the exit code is non-zero only when the bench itself could not run.
 */
import { mkdtempSync, readdirSync } from 'node:fs';
import { cpus, loadavg, totalmem, tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { oneKilobyteJson } from './lib/body.js';
import { formatProfile, summariseProfile } from './lib/cpuprofile.js';
import { BurstClient, closedLoop, paced, wrkAvailable, type BurstResult, type LoadResult, type PacedResult, type Target, type Tool } from './lib/loadgen.js';
import { procMemory, startRedis, startServer, type RedisServer, type ServerChild } from './lib/processes.js';
import type { ChildStats, UpstreamCounters } from './lib/protocol.js';
import { RedisProbe, diffCounts, type CommandCounts } from './lib/redis-stats.js';
import { Samples, median } from './lib/samples.js';

// ---------------------------------------------------------------- options

function parseArgs(argv: string[]) {
  const get = (name: string): string | undefined => {
    const i = argv.indexOf(`--${name}`);
    if (i === -1) return undefined;
    const v = argv[i + 1];
    return v !== undefined && !v.startsWith('--') ? v : '';
  };
  const num = (name: string, fallback: number) => {
    const v = get(name);
    return v === undefined || v === '' ? fallback : Number(v);
  };
  const quick = argv.includes('--quick');
  const toolArg = get('tool') ?? process.env['BENCH_TOOL'];
  const tool: Tool = toolArg === 'autocannon' || toolArg === 'wrk' ? toolArg : wrkAvailable() ? 'wrk' : 'autocannon';
  if (tool === 'wrk' && !wrkAvailable()) throw new Error('--tool wrk, but wrk is not installed');
  const profile = get('profile');
  return {
    tool,
    rounds: num('rounds', quick ? 1 : 3),
    seconds: num('seconds', quick ? 3 : 10),
    warmSeconds: quick ? 1 : 2,
    connections: num('connections', 50),
    rate: num('rate', 1000),
    // Short interleaved rounds: a noisy neighbour's burst then lands on every target alike.
    pacedSeconds: num('paced-seconds', 3),
    pacedRounds: num('paced-rounds', quick ? 1 : 4),
    rssRequests: num('rss-requests', quick ? 40_000 : 200_000),
    stormSize: num('storm', 500),
    stormTrials: num('storm-trials', quick ? 3 : 9),
    stormWarmup: num('storm-warmup', quick ? 20 : 60),
    stormWarmupTrials: Math.max(1, num('storm-warmup-trials', quick ? 1 : 5)),
    refreshDelayMs: num('refresh-delay', 50),
    profile: profile === undefined ? null : profile === '' ? 'cloakroom' : profile,
    /** Adds cloakroom variants that src does not ship (e.g. ioredis auto-pipelining) to the throughput table. */
    experiments: argv.includes('--experiments'),
    targets: get('targets')?.split(',').filter(Boolean) ?? null,
    stormOnly: argv.includes('--storm-only'),
    /** CPU profile of the first storm instance (`--storm-only --storm-profile`), for work on the refresh path. */
    stormProfile: argv.includes('--storm-profile'),
  };
}

type Options = ReturnType<typeof parseArgs>;

const SESSION_SECRET = 'bench-session-secret-0123456789-abcdefghijklmnop';
const TOKEN_KEY = Buffer.alloc(32, 11).toString('base64');
const DEMO = { email: 'demo@example.com', password: 'demo-password' };
const BODY = oneKilobyteJson();

const log = (line = '') => process.stdout.write(`${line}\n`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const mb = (bytes: number) => bytes / (1024 * 1024);
const ms = (us: number) => us / 1000;
const round = (x: number, digits: number) => (Number.isFinite(x) ? Number(x.toFixed(digits)) : null);

// ---------------------------------------------------------------- setup

interface Bed {
  redis: RedisServer;
  probe: RedisProbe;
  upstream: ServerChild;
  children: ServerChild[];
}

function cloakroomEnv(bed: Pick<Bed, 'redis' | 'upstream'>, extra: Record<string, string> = {}): Record<string, string> {
  return {
    BENCH_CLOAKROOM_ENV: JSON.stringify({
      UPSTREAM_URL: bed.upstream.url,
      REDIS_URL: bed.redis.url,
      SESSION_SECRET,
      TOKEN_ENCRYPTION_KEY: TOKEN_KEY,
      AUTH_MODE: 'nexudus',
      LOG_LEVEL: 'warn',
      NODE_ENV: 'production',
      COOKIE_SECURE: 'false',
      UPSTREAM_TIMEOUT: '10',
      ...extra,
    }),
  };
}

/** Signs in like a browser (X-CSRF: 1) and returns the `name=value` cookie pair. */
async function signIn(child: ServerChild, csrf = true): Promise<string> {
  const res = await request(`${child.url}/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(csrf ? { 'x-csrf': '1' } : {}) },
    body: JSON.stringify(DEMO),
  });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`${child.name}: sign-in answered ${res.statusCode}: ${text}\n${child.output().join('\n')}`);
  const setCookie = res.headers['set-cookie'];
  const first = (Array.isArray(setCookie) ? setCookie[0] : setCookie)?.split(';')[0];
  if (!first) throw new Error(`${child.name}: sign-in set no cookie`);
  return first;
}

/** One request through the target must come back 200 with the upstream's exact 1 KB body. */
async function checkTarget(t: Target): Promise<void> {
  const res = await request(t.url, { headers: t.headers });
  const body = Buffer.from(await res.body.arrayBuffer());
  if (res.statusCode !== 200 || !body.equals(BODY)) {
    throw new Error(`${t.name}: GET ${t.url} answered ${res.statusCode} with ${body.length} bytes: ${body.toString('utf8').slice(0, 200)}`);
  }
}

// ---------------------------------------------------------------- measurements

interface BenchTarget extends Target {
  child: ServerChild;
}

interface RoundResult {
  load: LoadResult;
  /** Requests the server counted in the round. */
  served: number;
  cpuUsPerReq: number;
  redisPerReq: number;
  redisByCommand: CommandCounts;
  rss: number;
}

async function measure(bed: Bed, t: BenchTarget, tool: Tool, opts: Options, seconds: number): Promise<RoundResult> {
  const [s0, r0] = await Promise.all([t.child.stats(), bed.probe.counts()]);
  const load = await closedLoop(tool, t, { connections: opts.connections, seconds });
  // Requests still in flight when the generator stopped finish on the server first.
  await sleep(250);
  const [s1, r1] = await Promise.all([t.child.stats(), bed.probe.counts()]);
  const cpuUs = s1.cpuUserUs + s1.cpuSystemUs - s0.cpuUserUs - s0.cpuSystemUs;
  const redis = diffCounts(r0, r1);
  // Per request as the server counted them: the generator stops with up to one request per
  // connection in flight, which the server still serves (and charges CPU and Redis for).
  const requests = Math.max(1, s1.requests - s0.requests);
  return {
    load,
    served: requests,
    cpuUsPerReq: cpuUs / requests,
    redisPerReq: redis.total / requests,
    redisByCommand: redis.byCommand,
    rss: procMemory(t.child.pid)?.rss ?? s1.rss,
  };
}

interface Summary {
  name: string;
  rps: number;
  p50Us: number;
  p99Us: number;
  ratio: number;
  cpuUsPerReq: number;
  redisPerReq: number;
  redisByCommand: CommandCounts;
  rssMb: number;
  peakMb: number;
  errors: number;
}

function summarise(name: string, rounds: RoundResult[], bareRounds: RoundResult[], peak: number): Summary {
  const ratios = rounds.map((r, i) => r.load.rps / (bareRounds[i]?.load.rps ?? Number.NaN));
  const byCommand: CommandCounts = {};
  let requests = 0;
  for (const r of rounds) {
    requests += r.served;
    for (const [k, v] of Object.entries(r.redisByCommand)) byCommand[k] = (byCommand[k] ?? 0) + v;
  }
  for (const k of Object.keys(byCommand)) byCommand[k] = (byCommand[k] ?? 0) / Math.max(1, requests);
  return {
    name,
    rps: median(rounds.map((r) => r.load.rps)),
    p50Us: median(rounds.map((r) => r.load.p50Us)),
    p99Us: median(rounds.map((r) => r.load.p99Us)),
    ratio: median(ratios),
    cpuUsPerReq: median(rounds.map((r) => r.cpuUsPerReq)),
    redisPerReq: median(rounds.map((r) => r.redisPerReq)),
    redisByCommand: byCommand,
    rssMb: mb(Math.max(...rounds.map((r) => r.rss))),
    peakMb: mb(peak),
    errors: rounds.reduce((a, r) => a + r.load.errors + r.load.non2xx, 0),
  };
}

function table(headers: string[], rows: (string | number)[][]): string {
  const cells = rows.map((r) => r.map(String));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(line)].join('\n');
}

/** A Unicode bar chart: one row per label, bars scaled to the largest value. */
function bars(rows: readonly [string, number, string][], width = 40): string {
  const max = Math.max(...rows.map((r) => r[1]).filter(Number.isFinite));
  const labelWidth = Math.max(...rows.map((r) => r[0].length));
  const eighths = ['', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
  return rows
    .map(([label, value, text]) => {
      const cells = Number.isFinite(value) && max > 0 ? (value / max) * width : 0;
      const bar = '█'.repeat(Math.floor(cells)) + (eighths[Math.round((cells % 1) * 8) % 8] ?? '');
      return `${label.padEnd(labelWidth)}  ${bar.padEnd(width + 1)} ${text}`;
    })
    .join('\n');
}

const fmt = (x: number, digits = 1) => (Number.isFinite(x) ? x.toFixed(digits) : 'n/a');

// ---------------------------------------------------------------- phases

async function throughputPhase(bed: Bed, targets: BenchTarget[], opts: Options) {
  log(`\n== throughput: ${opts.rounds} interleaved round(s) x ${opts.seconds} s per target, ${opts.connections} keep-alive connections, ${opts.tool}`);
  for (const t of targets) await closedLoop(opts.tool, t, { connections: opts.connections, seconds: opts.warmSeconds });
  const results = new Map<string, RoundResult[]>(targets.map((t) => [t.name, []]));
  for (let r = 0; r < opts.rounds; r++) {
    // Rotate the order each round so no target always runs first (or hottest).
    const order = targets.map((_, i) => targets[(i + r) % targets.length] as BenchTarget);
    const line: string[] = [];
    for (const t of order) {
      const res = await measure(bed, t, opts.tool, opts, opts.seconds);
      results.get(t.name)?.push(res);
      line.push(`${t.name} ${fmt(res.load.rps, 0)}/s`);
    }
    log(`  round ${r + 1}: ${line.join(', ')}`);
  }
  // Index r of every target's list is round r: the ratios are same-round ratios.
  const bare = results.get('bare-proxy') ?? [];
  return targets.map((t) => summarise(t.name, results.get(t.name) ?? [], bare, procMemory(t.child.pid)?.hwm ?? Number.NaN));
}

interface PacedSummary {
  name: string;
  p50Us: number;
  p99Us: number;
  p999Us: number;
  maxUs: number;
  achievedRps: number;
  failed: number;
  maxRssMb: number;
  maxLagMs: number;
}

async function pacedPhase(targets: BenchTarget[], opts: Options): Promise<PacedSummary[]> {
  log(`\n== latency at a steady ${opts.rate} req/s: ${opts.pacedRounds} interleaved round(s) x ${opts.pacedSeconds} s per target (open loop)`);
  const merged = new Map<string, { samples: Samples; runs: PacedResult[]; maxRss: number }>(targets.map((t) => [t.name, { samples: new Samples(), runs: [], maxRss: 0 }]));
  for (const t of targets) await paced(t, { rate: opts.rate, seconds: 2 });
  for (let r = 0; r < opts.pacedRounds; r++) {
    for (let i = 0; i < targets.length; i++) {
      const t = targets[(i + r) % targets.length] as BenchTarget;
      const m = merged.get(t.name);
      if (!m) continue;
      const sampleRss = () => {
        m.maxRss = Math.max(m.maxRss, procMemory(t.child.pid)?.rss ?? 0);
      };
      const res = await paced(t, { rate: opts.rate, seconds: opts.pacedSeconds, onTick: sampleRss });
      sampleRss();
      m.samples.merge(res.samples);
      m.runs.push(res);
    }
  }
  return targets.map((t) => {
    const m = merged.get(t.name) as { samples: Samples; runs: PacedResult[]; maxRss: number };
    return {
      name: t.name,
      p50Us: m.samples.percentile(50),
      p99Us: m.samples.percentile(99),
      p999Us: m.samples.percentile(99.9),
      maxUs: m.samples.max(),
      achievedRps: median(m.runs.map((x) => x.achievedRps)),
      failed: m.runs.reduce((a, x) => a + x.failed, 0),
      maxRssMb: mb(m.maxRss),
      maxLagMs: Math.max(...m.runs.map((x) => x.maxLagUs)) / 1000,
    };
  });
}

interface RssSummary {
  requests: number;
  rps: number;
  /** The checkpoint (a quarter of the run: request 50,000 of 200,000). */
  checkpoint: number;
  /** RSS after a full GC with the load paused, at the checkpoint and at the end. */
  gcCheckpointMb: number;
  gcEndMb: number;
  growthPct: number;
  /** Live JS heap after that GC: a leak shows here first. */
  heapCheckpointMb: number;
  heapEndMb: number;
  /** Mean RSS under load over the 5% of requests before the checkpoint and before the end. */
  loadCheckpointMb: number;
  loadEndMb: number;
  loadGrowthPct: number;
  maxMb: number;
  hwmMb: number;
}

/**
 * 200,000 requests at a fresh process, paused at the 50,000th: RSS under load follows the old
 * generation's sawtooth (+-20% between two major GCs), so the growth figure compares RSS after
 * a full GC at both points (the process runs with --expose-gc; the bench calls gc() over IPC).
 */
async function rssPhase(bed: Bed, opts: Options): Promise<RssSummary> {
  const checkpoint = Math.round(opts.rssRequests / 4);
  log(`\n== memory: ${opts.rssRequests} requests at a fresh cloakroom process (${opts.connections} connections, autocannon), full GC at request ${checkpoint} and at the end`);
  const child = await startServer('cloakroom-rss', 'cloakroom', cloakroomEnv(bed), ['--expose-gc']);
  bed.children.push(child);
  const cookie = await signIn(child);
  const target: Target = { name: 'cloakroom-rss', url: `${child.url}/api/data`, headers: { cookie, 'x-csrf': '1' } };
  await checkTarget(target);
  const points: { completed: number; rss: number }[] = [];
  let done = 0;
  let completed = 0;
  const timer = setInterval(() => {
    const m = procMemory(child.pid);
    if (m) points.push({ completed: done + completed, rss: m.rss });
  }, 100);
  const leg = async (amount: number) => {
    completed = 0;
    const load = await closedLoop('autocannon', target, {
      connections: opts.connections,
      amount,
      progressEvery: 250,
      onProgress: (c) => {
        completed = c;
      },
    });
    done += load.requests;
    completed = 0;
    await sleep(300);
    const after = await child.control<ChildStats>('gc');
    return { load, rss: procMemory(child.pid)?.rss ?? after.rss, heap: after.heapUsed };
  };
  const first = await leg(checkpoint);
  const second = await leg(opts.rssRequests - checkpoint);
  clearInterval(timer);
  const hwm = procMemory(child.pid)?.hwm ?? Number.NaN;
  await child.stop();
  const total = done;
  const window = Math.round(total / 20);
  const mean = (lo: number, hi: number) => {
    const xs = points.filter((p) => p.completed >= lo && p.completed <= hi).map((p) => p.rss);
    return xs.length ? xs.reduce((x, y) => x + y, 0) / xs.length : Number.NaN;
  };
  const loadCheckpoint = mean(checkpoint - window, checkpoint);
  const loadEnd = mean(total - window, total);
  const seconds = first.load.seconds + second.load.seconds;
  return {
    requests: total,
    rps: (first.load.ok + second.load.ok) / seconds,
    checkpoint,
    gcCheckpointMb: mb(first.rss),
    gcEndMb: mb(second.rss),
    growthPct: (100 * (second.rss - first.rss)) / first.rss,
    heapCheckpointMb: mb(first.heap),
    heapEndMb: mb(second.heap),
    loadCheckpointMb: mb(loadCheckpoint),
    loadEndMb: mb(loadEnd),
    loadGrowthPct: (100 * (loadEnd - loadCheckpoint)) / loadCheckpoint,
    maxMb: mb(Math.max(...points.map((p) => p.rss))),
    hwmMb: mb(hwm),
  };
}

interface BurstStats {
  /** Redis commands sent during the burst, by command (median per burst). */
  redisPerBurst: Record<string, number>;
  /** The same, per process (median ms per burst). */
  cpuByProcessMs: Record<string, number>;
  /** Time in GC pauses over the burst, by server process (median over trials). */
  gcByProcessMs: Record<string, number>;
  /** CPU of every process in the burst (servers, upstream, load generator), median ms per burst. */
  cpuMs: number;
  /** Per trial. */
  p99Ms: number[];
  /** Median over trials. */
  p50Ms: number;
  medianP99Ms: number;
  worstP99Ms: number;
  maxMs: number;
  ok: number;
  total: number;
  statuses: Record<string, number>;
}

interface StormSummary {
  size: number;
  trials: number;
  warmupBursts: number;
  warmupTrials: number;
  refreshDelayMs: number;
  /** Upstream refresh grants per trial (each must be 1) and refresh tokens presented twice. */
  expiredRefreshes: number[];
  expiredReuse: number;
  /** When the one refresh grant reached upstream, and when upstream answered it, from the burst's start (median ms). */
  refreshSentMs: number;
  refreshAnsweredMs: number;
  /** When the first request of a burst reached upstream, through cloakroom (fresh token) and through the bare proxy. */
  firstCallMs: number;
  bareFirstCallMs: number;
  expired: BurstStats;
  /** The unmeasured first storm trial, right after start-up: what a cold process does. */
  coldTrialP99Ms: number;
  baseline: BurstStats;
  /** The same burst through two bare proxy processes (as the two instances): the floor for any Node hop here. */
  bare: BurstStats;
  /** The bare proxy holding the burst for the refresh time, then sending it all: the storm's floor on this machine. */
  bareHeld: BurstStats;
  /** The same, but the hold starts after one Redis round trip and ends with another: the floor for any BFF that must ask shared state before it refreshes. */
  bareAsked: BurstStats;
  /** When the first of the two bare proxies got its Redis answer and began to hold (median, ms after the burst began). */
  bareAskedWaitFromMs: number;
  revokedRefreshes: number[];
  revoked: BurstStats;
}

function burstStats(results: BurstResult[]): BurstStats {
  const statuses: Record<string, number> = {};
  for (const r of results) for (const [k, v] of Object.entries(r.statuses)) statuses[k] = (statuses[k] ?? 0) + v;
  const p99 = results.map((r) => ms(r.samples.percentile(99)));
  return {
    p99Ms: p99,
    p50Ms: median(results.map((r) => ms(r.samples.percentile(50)))),
    medianP99Ms: median(p99),
    worstP99Ms: Math.max(...p99),
    maxMs: Math.max(...results.map((r) => ms(r.samples.max()))),
    cpuMs: median(results.map((r) => r.cpuMs ?? NaN)),
    redisPerBurst: Object.fromEntries(
      [...new Set(results.flatMap((r) => Object.keys(r.redisByCommand ?? {})))].sort().map((k) => [k, median(results.map((r) => r.redisByCommand?.[k] ?? 0))]),
    ),
    cpuByProcessMs: Object.fromEntries(Object.keys(results[0]?.cpuByProcess ?? {}).map((k) => [k, median(results.map((r) => r.cpuByProcess?.[k] ?? NaN))])),
    gcByProcessMs: Object.fromEntries(Object.keys(results[0]?.gcByProcess ?? {}).map((k) => [k, median(results.map((r) => r.gcByProcess?.[k] ?? NaN))])),
    ok: results.reduce((a, r) => a + r.ok, 0),
    total: results.reduce((a, r) => a + r.samples.count + Object.entries(r.statuses).filter(([k]) => k.startsWith('error')).reduce((x, [, v]) => x + v, 0), 0),
    statuses,
  };
}

/**
 * Two cloakroom processes share Redis and secrets. Each trial signs in a new session whose
 * access token lives one second (REFRESH_SKEW=0), lets it expire, then sends `stormSize`
 * requests at once, half to each instance, over connections opened beforehand. The upstream
 * counts refresh grants (must be 1 per trial), answers each after `refreshDelayMs`, and notes
 * when the grant arrived. Each trial then sends the same burst on the now fresh token, and the
 * same burst through the bare proxy, so a machine that speeds up or slows down during the run
 * moves all three alike. Every path is warmed up first (`--storm-warmup` bursts and one
 * unmeasured storm trial, reported as the cold trial): the figures are those of a process
 * that has been serving for a while, as one in production has.
 */
async function stormPhase(bed: Bed, opts: Options, bareTarget: BenchTarget): Promise<StormSummary> {
  log(`\n== refresh storm: ${opts.stormTrials} trial(s) of ${opts.stormSize} concurrent requests on one expired session across two instances (upstream refresh takes ${opts.refreshDelayMs} ms), after ${opts.stormWarmup} warm-up bursts and ${opts.stormWarmupTrials} warm-up trial(s)`);
  // BENCH_AUTOPIPELINE=1 in the bench's own environment: the storm instances coalesce Redis
  // commands as cloakroom once did (the A/B of docs/performance.md, "auto-pipelining").
  const env = { ...cloakroomEnv(bed, { REFRESH_SKEW: '0' }), ...(process.env['BENCH_AUTOPIPELINE'] === '1' ? { BENCH_AUTOPIPELINE: '1' } : {}) };
  const profileDir = opts.stormProfile ? mkdtempSync(join(tmpdir(), 'cloakroom-storm-prof-')) : null;
  const [a, b] = await Promise.all([
    startServer('storm-a', 'cloakroom', env, profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : []),
    startServer('storm-b', 'cloakroom', env, profileDir ? ['--cpu-prof', '--cpu-prof-dir', join(profileDir, 'b')] : []),
  ]);
  bed.children.push(a, b);
  await bed.upstream.control('configure', { accessTtlSeconds: 3600, refreshDelayMs: opts.refreshDelayMs });
  const targets = (cookie: string): Target[] => [a, b].map((c) => ({ name: c.name, url: `${c.url}/api/data`, headers: { cookie, 'x-csrf': '1' } }));
  const half = Math.ceil(opts.stormSize / 2);
  const warmCookie = await signIn(a);
  for (const t of targets(warmCookie)) await checkTarget(t);
  const client = new BurstClient(targets(warmCookie), half);
  // Two bare proxies too, like the two cloakroom instances: the storm's setup without cloakroom.
  const bareB = await startServer('bare-proxy-b', 'bare-proxy', { BENCH_UPSTREAM_URL: bed.upstream.url, BENCH_REDIS_URL: bed.redis.url });
  bed.children.push(bareB);
  const bareTargetB: BenchTarget = { ...bareTarget, name: bareB.name, child: bareB, url: `${bareB.url}${new URL(bareTarget.url).pathname}` };
  const bareClient = new BurstClient([bareTarget, bareTargetB], half);
  const bares2 = [bareTarget.child, bareB];
  // Opens every connection first, so the storms measure requests, not TCP handshakes.
  for (let i = 0; i < opts.stormWarmup; i++) {
    await client.fire(opts.stormSize);
    await bareClient.fire(opts.stormSize);
  }
  // CPU of every process taking part, so a burst's cost is known, not only its latency.
  const withCpu = async (children: ServerChild[], fire: () => Promise<BurstResult>): Promise<BurstResult> => {
    const before = await Promise.all(children.map((c) => c.stats()));
    const redisBefore = await bed.probe.counts();
    const own = process.cpuUsage();
    const result = await fire();
    const mine = process.cpuUsage(own);
    const after = await Promise.all(children.map((c) => c.stats()));
    const { byCommand } = diffCounts(redisBefore, await bed.probe.counts());
    delete byCommand['info'];
    const each = after.map((x, i) => (x.cpuUserUs + x.cpuSystemUs - (before[i]?.cpuUserUs ?? 0) - (before[i]?.cpuSystemUs ?? 0)) / 1000);
    const cpuByProcess: Record<string, number> = { 'load generator': (mine.user + mine.system) / 1000 };
    children.forEach((c, i) => (cpuByProcess[c.name] = each[i] ?? NaN));
    const gcByProcess: Record<string, number> = {};
    children.forEach((c, i) => (gcByProcess[c.name] = (after[i]?.gcMs ?? NaN) - (before[i]?.gcMs ?? NaN)));
    return { ...result, cpuMs: Object.values(cpuByProcess).reduce((x, y) => x + y, 0), cpuByProcess, gcByProcess, redisByCommand: byCommand };
  };

  const storms: BurstResult[] = [];
  const baselines: BurstResult[] = [];
  const bares: BurstResult[] = [];
  const refreshes: number[] = [];
  const sent: number[] = [];
  const answered: number[] = [];
  const firstCalls: number[] = [];
  const bareFirstCalls: number[] = [];
  const bareHeld: BurstResult[] = [];
  const bareAsked: BurstResult[] = [];
  const askedWaits: number[] = [];
  let coldTrialP99Ms = NaN;
  let reuse = 0;
  for (let i = 1 - opts.stormWarmupTrials; i <= opts.stormTrials; i++) {
    await bed.upstream.control('configure', { accessTtlSeconds: 1 });
    const cookie = await signIn(a);
    const signedInAt = Date.now();
    await bed.upstream.control('configure', { accessTtlSeconds: 3600 });
    await sleep(Math.max(0, signedInAt + 1300 - Date.now()));
    await bed.upstream.control('resetCounters');
    const storm = await withCpu([a, b, bed.upstream], () => client.fire(opts.stormSize, { cookie, 'x-csrf': '1' }));
    const counters = await bed.upstream.control<UpstreamCounters>('counters');
    // The same burst again, the token now fresh: what the burst costs without a refresh.
    await bed.upstream.control('resetCounters');
    const baseline = await withCpu([a, b, bed.upstream], () => client.fire(opts.stormSize, { cookie, 'x-csrf': '1' }));
    const firstCall = (await bed.upstream.control<UpstreamCounters>('counters')).firstApiCallMs - baseline.startedAtMs;
    await bed.upstream.control('resetCounters');
    const bareBurst = await withCpu([...bares2, bed.upstream], () => bareClient.fire(opts.stormSize));
    const bareFirstCall = (await bed.upstream.control<UpstreamCounters>('counters')).firstApiCallMs - bareBurst.startedAtMs;
    // The floor for the storm: the bare proxies hold the same burst as long as the refresh takes, then send it all.
    await Promise.all(bares2.map((c) => c.control('hold', { ms: opts.refreshDelayMs })));
    const held = await withCpu([...bares2, bed.upstream], () => bareClient.fire(opts.stormSize));
    // The same after one Redis round trip (a lock) and before another (the store), as cloakroom must.
    await Promise.all(bares2.map((c) => c.control('hold', { ms: opts.refreshDelayMs, ask: true })));
    const asked = await withCpu([...bares2, bed.upstream], () => bareClient.fire(opts.stormSize));
    const holds = await Promise.all(bares2.map((c) => c.control<{ waitFromMs: number }>('lastHold')));
    const askedWaitFrom = Math.min(...holds.map((h) => h.waitFromMs)) - asked.startedAtMs;
    if (i <= 0) {
      // Warm-up trials run every path and are not counted; the first shows what a cold process does.
      if (i === 1 - opts.stormWarmupTrials) coldTrialP99Ms = ms(storm.samples.percentile(99));
      continue;
    }
    storms.push(storm);
    refreshes.push(counters.refreshGrants);
    reuse += counters.refreshReuse;
    sent.push(counters.lastRefreshStartMs - storm.startedAtMs);
    answered.push(counters.lastRefreshEndMs - storm.startedAtMs);
    baselines.push(baseline);
    firstCalls.push(firstCall);
    bares.push(bareBurst);
    bareFirstCalls.push(bareFirstCall);
    bareHeld.push(held);
    bareAsked.push(asked);
    askedWaits.push(askedWaitFrom);
  }
  await bareClient.close();
  await bareB.stop();

  // The upstream revokes every access token: each request meets a 401, one refresh, a replay.
  const revoked: BurstResult[] = [];
  const revokedRefreshes: number[] = [];
  for (let i = 0; i < opts.stormTrials; i++) {
    await bed.upstream.control('resetCounters');
    await bed.upstream.control('revokeAll');
    revoked.push(await withCpu([a, b, bed.upstream], () => client.fire(opts.stormSize)));
    revokedRefreshes.push((await bed.upstream.control<UpstreamCounters>('counters')).refreshGrants);
  }
  await client.close();
  await Promise.all([a.stop(), b.stop()]);
  if (profileDir) {
    for (const [name, dir] of [['storm-a', profileDir], ['storm-b', join(profileDir, 'b')]] as const) {
      const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
      if (file) log(`\n${name} profile (whole life, warm-up included): ${join(dir, file)}\n${formatProfile(summariseProfile(join(dir, file)))}`);
    }
  }
  return {
    size: opts.stormSize,
    trials: opts.stormTrials,
    warmupBursts: opts.stormWarmup,
    warmupTrials: opts.stormWarmupTrials,
    refreshDelayMs: opts.refreshDelayMs,
    expiredRefreshes: refreshes,
    expiredReuse: reuse,
    refreshSentMs: median(sent),
    refreshAnsweredMs: median(answered),
    firstCallMs: median(firstCalls),
    bareFirstCallMs: median(bareFirstCalls),
    expired: burstStats(storms),
    coldTrialP99Ms,
    baseline: burstStats(baselines),
    bare: burstStats(bares),
    bareHeld: burstStats(bareHeld),
    bareAsked: burstStats(bareAsked),
    bareAskedWaitFromMs: median(askedWaits),
    revokedRefreshes,
    revoked: burstStats(revoked),
  };
}

// ---------------------------------------------------------------- main

async function startBed(): Promise<Bed> {
  const redis = await startRedis();
  const probe = new RedisProbe(redis.url);
  const upstream = await startServer('upstream', 'upstream', {});
  return { redis, probe, upstream, children: [upstream] };
}

async function stopBed(bed: Bed): Promise<void> {
  await Promise.all(bed.children.map((c) => c.stop().catch(() => undefined)));
  bed.probe.close();
  await bed.redis.stop();
}

async function startTargets(bed: Bed, which: readonly string[], execArgv: Record<string, string[]> = {}): Promise<BenchTarget[]> {
  const bearer = await bed.upstream.control<string>('bearer');
  const known = ['upstream', 'bare-proxy', 'cloakroom', 'cloakroom-memory', 'cloakroom-autopipeline', 'reference-bff'];
  const unknown = which.filter((n) => !known.includes(n));
  if (unknown.length > 0) throw new Error(`unknown target(s) ${unknown.join(', ')}; known: ${known.join(', ')}`);
  const targets: BenchTarget[] = [];
  for (const name of which) {
    const argv = execArgv[name] ?? [];
    if (name === 'upstream') {
      targets.push({ name, child: bed.upstream, url: `${bed.upstream.url}/api/data`, headers: { authorization: `Bearer ${bearer}` } });
    } else if (name === 'bare-proxy') {
      const child = await startServer(name, 'bare-proxy', { BENCH_UPSTREAM_URL: bed.upstream.url, BENCH_REDIS_URL: bed.redis.url }, argv);
      bed.children.push(child);
      targets.push({ name, child, url: `${child.url}/api/data`, headers: { authorization: `Bearer ${bearer}` } });
    } else if (name === 'cloakroom') {
      const child = await startServer(name, 'cloakroom', cloakroomEnv(bed), argv);
      bed.children.push(child);
      targets.push({ name, child, url: `${child.url}/api/data`, headers: { cookie: await signIn(child), 'x-csrf': '1' } });
    } else if (name === 'cloakroom-memory') {
      const child = await startServer(name, 'cloakroom', cloakroomEnv(bed, { REDIS_URL: '', NODE_ENV: 'development' }), argv);
      bed.children.push(child);
      targets.push({ name, child, url: `${child.url}/api/data`, headers: { cookie: await signIn(child), 'x-csrf': '1' } });
    } else if (name === 'cloakroom-autopipeline') {
      const child = await startServer(name, 'cloakroom', { ...cloakroomEnv(bed), BENCH_AUTOPIPELINE: '1' }, argv);
      bed.children.push(child);
      targets.push({ name, child, url: `${child.url}/api/data`, headers: { cookie: await signIn(child), 'x-csrf': '1' } });
    } else if (name === 'reference-bff') {
      const child = await startServer(name, 'reference-bff', { BENCH_UPSTREAM_URL: bed.upstream.url, BENCH_REDIS_URL: bed.redis.url, BENCH_SESSION_SECRET: SESSION_SECRET }, argv);
      bed.children.push(child);
      targets.push({ name, child, url: `${child.url}/api/data`, headers: { cookie: await signIn(child, false) } });
    }
  }
  for (const t of targets) await checkTarget(t);
  return targets;
}

async function profileRun(opts: Options): Promise<void> {
  const name = opts.profile ?? 'cloakroom';
  const dir = mkdtempSync(join(tmpdir(), 'cloakroom-prof-'));
  const bed = await startBed();
  try {
    const [t] = await startTargets(bed, [name], { [name]: ['--cpu-prof', '--cpu-prof-dir', dir] });
    if (!t) throw new Error(`unknown profile target ${name}`);
    log(`profiling ${name} (pid ${t.child.pid}) for ${opts.warmSeconds + opts.seconds} s with ${opts.tool}, ${opts.connections} connections`);
    const warm = await closedLoop(opts.tool, t, { connections: opts.connections, seconds: opts.warmSeconds });
    const res = await measure(bed, t, opts.tool, opts, opts.seconds);
    log(`${fmt(res.load.rps, 0)} req/s, ${fmt(res.cpuUsPerReq)} us CPU/req, ${fmt(res.redisPerReq, 2)} Redis commands/req (profiler on: slower than a normal run)`);
    await t.child.stop();
    const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
    if (!file) throw new Error(`no .cpuprofile written in ${dir}`);
    log(`profile: ${join(dir, file)}\n`);
    log(formatProfile(summariseProfile(join(dir, file)), warm.requests + res.load.requests));
  } finally {
    await stopBed(bed);
  }
}

function printStorm(storm: StormSummary): void {
  log(`\n-- refresh storm (${storm.trials} trial(s) x ${storm.size} concurrent requests, one session, two instances, refresh takes ${storm.refreshDelayMs} ms; after ${storm.warmupBursts} warm-up bursts and ${storm.warmupTrials} warm-up trial(s))`);
  const row = (name: string, refreshes: string, st: BurstStats) => [name, refreshes, `${st.ok}/${st.total}`, fmt(st.p50Ms), fmt(st.medianP99Ms), fmt(st.worstP99Ms), fmt(st.maxMs), fmt(st.cpuMs, 0)];
  log(
    table(
      ['case', 'upstream refreshes per trial', '2xx', 'p50 ms', 'p99 ms (median)', 'p99 ms (worst)', 'max ms', 'CPU ms/burst'],
      [
        row('expired token', storm.expiredRefreshes.join(' '), storm.expired),
        row('same burst, fresh token', '-', storm.baseline),
        row('same burst, bare proxy', '-', storm.bare),
        row(`bare proxy holding it ${storm.refreshDelayMs} ms`, '-', storm.bareHeld),
        row(`same, after a Redis round trip`, '-', storm.bareAsked),
        row('revoked upstream (401, replay)', storm.revokedRefreshes.join(' '), storm.revoked),
      ],
    ),
  );
  log(`expired token: the refresh grant reached upstream ${fmt(storm.refreshSentMs)} ms after the burst began and was answered at ${fmt(storm.refreshAnsweredMs)} ms (medians); the first (cold) warm-up trial's p99 was ${fmt(storm.coldTrialP99Ms)} ms`);
  log(`bare proxies holding after a Redis round trip: the answer came ${fmt(storm.bareAskedWaitFromMs)} ms after the burst began (median; the PING leaves with the first request)`);
  log(`first request of a burst at upstream: ${fmt(storm.firstCallMs)} ms through cloakroom (fresh token), ${fmt(storm.bareFirstCallMs)} ms through the bare proxy (medians)`);
  log('(CPU ms/burst: every process in the burst, servers, upstream and load generator together, on 2 cores)');
  const split = (st: BurstStats) => Object.entries(st.cpuByProcessMs).map(([k, v]) => `${k} ${fmt(v, 1)}`).join(', ');
  const cmds = (st: BurstStats) => Object.entries(st.redisPerBurst).map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
  log(`Redis commands per burst (median): expired: ${cmds(storm.expired)}; fresh token: ${cmds(storm.baseline)}; revoked: ${cmds(storm.revoked)}`);
  log(`CPU ms per burst by process: expired: ${split(storm.expired)}; fresh token: ${split(storm.baseline)}; bare: ${split(storm.bare)}; bare holding: ${split(storm.bareHeld)}; after a round trip: ${split(storm.bareAsked)}`);
  const gc = (st: BurstStats) => Object.entries(st.gcByProcessMs).map(([k, v]) => `${k} ${fmt(v, 1)}`).join(', ');
  log(`GC ms per burst by process: expired: ${gc(storm.expired)}; fresh token: ${gc(storm.baseline)}; bare: ${gc(storm.bare)}; bare holding: ${gc(storm.bareHeld)}`);
  if (storm.expiredReuse > 0) log(`warning: ${storm.expiredReuse} refresh grant(s) presented an already used refresh token`);
}

function printThroughput(through: Summary[], opts: Options): void {
  const up = through.find((s) => s.name === 'upstream');
  log(`\n== results (median of ${opts.rounds} round(s); ratio = same-round req/s / bare-proxy req/s)\n`);
  log(
    table(
      ['target', 'req/s', 'p50 ms', 'p99 ms', 'x bare', 'x upstream', 'CPU us/req', 'Redis cmd/req', 'RSS MB', 'peak RSS MB', 'errors'],
      through.map((s) => [
        s.name,
        fmt(s.rps, 0),
        fmt(ms(s.p50Us), 2),
        fmt(ms(s.p99Us), 2),
        fmt(s.ratio, 2),
        up ? fmt(s.rps / up.rps, 2) : 'n/a',
        fmt(s.cpuUsPerReq, 0),
        fmt(s.redisPerReq, 3),
        fmt(s.rssMb, 0),
        fmt(s.peakMb, 0),
        s.errors,
      ]),
    ),
  );
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.profile) return profileRun(opts);
  const started = Date.now();
  log(`cloakroom bench: node ${process.version}, ${cpus().length} CPU(s) (${cpus()[0]?.model ?? '?'}), ${fmt(totalmem() / 2 ** 30, 0)} GB, load generator ${opts.tool}, load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  const bed = await startBed();
  try {
    if (opts.stormOnly) {
      // The storm alone, for A/B runs of the refresh path: `--storm-only`.
      const [bare] = await startTargets(bed, ['bare-proxy']);
      const storm = await stormPhase(bed, opts, bare as BenchTarget);
      printStorm(storm);
      log(`STORM ${JSON.stringify(storm)}`);
      return;
    }
    if (opts.targets) {
      // Throughput only, for A/B runs: `--targets cloakroom,cloakroom-memory` (bare-proxy is always added).
      const names = ['bare-proxy', ...opts.targets.filter((n) => n !== 'bare-proxy')];
      printThroughput(await throughputPhase(bed, await startTargets(bed, names), opts), opts);
      return;
    }
    const targets = await startTargets(bed, ['upstream', 'bare-proxy', 'cloakroom', 'reference-bff', ...(opts.experiments ? ['cloakroom-autopipeline', 'cloakroom-memory'] : [])]);
    const byName = (n: string) => targets.find((t) => t.name === n) as BenchTarget;

    // Fixed rate first, on processes that have seen nothing else: their peak RSS is the peak
    // under that load (the issue's 150 MB target), not a leftover of the saturation rounds.
    const pacedRes = await pacedPhase([byName('bare-proxy'), byName('cloakroom'), byName('reference-bff')], opts);
    const pacedPeakMb = mb(procMemory(byName('cloakroom').child.pid)?.hwm ?? Number.NaN);
    const through = await throughputPhase(bed, targets, opts);
    const rss = await rssPhase(bed, opts);
    const storm = await stormPhase(bed, opts, byName('bare-proxy'));

    const get = <T extends { name: string }>(xs: T[], n: string) => xs.find((x) => x.name === n) as T;
    const bare = get(through, 'bare-proxy');
    const cr = get(through, 'cloakroom');
    const pBare = get(pacedRes, 'bare-proxy');
    const pCr = get(pacedRes, 'cloakroom');
    const saturatedPeakMb = Math.max(cr.peakMb, rss.hwmMb);

    printThroughput(through, opts);
    log('\nreq/s (median):');
    log(bars(through.map((t) => [t.name, t.rps, `${fmt(t.rps, 0)} req/s`])));
    log('\nCPU per request (server process):');
    log(bars(through.map((t) => [t.name, t.cpuUsPerReq, `${fmt(t.cpuUsPerReq, 0)} us`])));
    const cmds = (s: Summary) =>
      Object.entries(s.redisByCommand)
        .sort((a, b) => b[1] - a[1])
        .map(([k, v]) => `${k} ${v.toFixed(5)}`)
        .join(', ') || 'none';
    log(`\nRedis commands per request: cloakroom: ${cmds(cr)}; reference-bff: ${cmds(get(through, 'reference-bff'))}`);

    log(`\n-- latency at a steady ${opts.rate} req/s (open loop, send to last byte)\n`);
    log(
      table(
        ['target', 'achieved req/s', 'p50 ms', 'p99 ms', 'p99.9 ms', 'max ms', 'p99 x bare', 'max RSS MB', 'failed'],
        pacedRes.map((p) => [p.name, fmt(p.achievedRps, 0), fmt(ms(p.p50Us), 3), fmt(ms(p.p99Us), 3), fmt(ms(p.p999Us), 3), fmt(ms(p.maxUs), 1), fmt(p.p99Us / pBare.p99Us, 2), fmt(p.maxRssMb, 0), p.failed]),
      ),
    );
    log(`(generator: worst scheduling lag ${fmt(Math.max(...pacedRes.map((p) => p.maxLagMs)), 1)} ms)`);

    log(`\n-- memory over ${rss.requests} requests (fresh cloakroom process, ${fmt(rss.rps, 0)} req/s)`);
    log(`after a full GC: RSS ${fmt(rss.gcCheckpointMb)} MB at request ${rss.checkpoint}, ${fmt(rss.gcEndMb)} MB at ${rss.requests} (growth ${fmt(rss.growthPct)}%); live heap ${fmt(rss.heapCheckpointMb)} -> ${fmt(rss.heapEndMb)} MB`);
    log(`under load (mean of the 5% before each point): ${fmt(rss.loadCheckpointMb)} -> ${fmt(rss.loadEndMb)} MB (${fmt(rss.loadGrowthPct)}%); max sampled ${fmt(rss.maxMb)} MB; VmHWM ${fmt(rss.hwmMb)} MB`);
    printStorm(storm);

    const targetsMet = [
      ['throughput >= 0.60x bare', cr.ratio >= 0.6, `${fmt(cr.ratio, 2)}x`],
      // Compared at the issue's precision: the idle-timeout touch adds 3 PEXPIRE per session a minute (~0.00001 here).
      ['Redis commands/request <= 1.0', Number(cr.redisPerReq.toFixed(3)) <= 1.0, fmt(cr.redisPerReq, 5)],
      [`p99 at ${opts.rate} req/s <= 1.5x bare`, pCr.p99Us / pBare.p99Us <= 1.5, `${fmt(pCr.p99Us / pBare.p99Us, 2)}x (${fmt(ms(pCr.p99Us), 3)} vs ${fmt(ms(pBare.p99Us), 3)} ms)`],
      [`peak RSS at ${opts.rate} req/s <= 150 MB`, pacedPeakMb <= 150, `${fmt(pacedPeakMb)} MB (VmHWM; at saturation: ${fmt(saturatedPeakMb)} MB)`],
      ['RSS growth 50k->200k < 10%', rss.growthPct < 10, `${fmt(rss.growthPct)}% after full GC (under load: ${fmt(rss.loadGrowthPct)}%)`],
      ['storm: one upstream refresh', storm.expiredRefreshes.every((n) => n === 1), `${storm.expiredRefreshes.join(', ')} (per trial)`],
      [
        `storm p99 <= refresh + 50 ms (${storm.refreshDelayMs + 50} ms)`,
        storm.expired.medianP99Ms <= storm.refreshDelayMs + 50,
        `${fmt(storm.expired.medianP99Ms)} ms (bare proxy holding the burst ${storm.refreshDelayMs} ms: ${fmt(storm.bareHeld.medianP99Ms)} ms; burst without refresh: ${fmt(storm.baseline.medianP99Ms)} ms, bare ${fmt(storm.bare.medianP99Ms)} ms)`,
      ],
    ] as const;
    log(`\n-- issue #5 targets\n`);
    log(table(['target', 'met', 'measured'], targetsMet.map(([n, ok, v]) => [n, ok ? 'yes' : 'NO', v])));
    log(`\n(total ${fmt((Date.now() - started) / 1000, 0)} s; load average now ${loadavg().map((x) => x.toFixed(2)).join(' ')})`);

    const line = {
      tool: opts.tool,
      upstream_rps: round(get(through, 'upstream').rps, 0),
      bare_rps: round(bare.rps, 0),
      cloakroom_rps: round(cr.rps, 0),
      reference_rps: round(get(through, 'reference-bff').rps, 0),
      ratio: round(cr.ratio, 3),
      reference_ratio: round(get(through, 'reference-bff').ratio, 3),
      bare_cpu_us_per_req: round(bare.cpuUsPerReq, 1),
      cloakroom_cpu_us_per_req: round(cr.cpuUsPerReq, 1),
      reference_cpu_us_per_req: round(get(through, 'reference-bff').cpuUsPerReq, 1),
      redis_cmds_per_req: round(cr.redisPerReq, 5),
      reference_redis_cmds_per_req: round(get(through, 'reference-bff').redisPerReq, 4),
      p99_bare_1000rps_ms: round(ms(pBare.p99Us), 3),
      p99_cloakroom_1000rps_ms: round(ms(pCr.p99Us), 3),
      p99_ratio_1000rps: round(pCr.p99Us / pBare.p99Us, 3),
      rss_peak_mb: round(pacedPeakMb, 1),
      rss_peak_saturated_mb: round(saturatedPeakMb, 1),
      rss_growth_pct: round(rss.growthPct, 2),
      rss_growth_under_load_pct: round(rss.loadGrowthPct, 2),
      heap_after_gc_mb: [round(rss.heapCheckpointMb, 1), round(rss.heapEndMb, 1)],
      storm_refreshes: Math.max(...storm.expiredRefreshes),
      storm_refreshes_per_trial: storm.expiredRefreshes,
      storm_p99_ms: round(storm.expired.medianP99Ms, 1),
      storm_baseline_p99_ms: round(storm.baseline.medianP99Ms, 1),
      storm_bare_p99_ms: round(storm.bare.medianP99Ms, 1),
      storm_bare_held_p99_ms: round(storm.bareHeld.medianP99Ms, 1),
      storm_bare_asked_p99_ms: round(storm.bareAsked.medianP99Ms, 1),
      storm_refresh_sent_ms: round(storm.refreshSentMs, 1),
      storm_revoked_refreshes: Math.max(...storm.revokedRefreshes),
      storm_revoked_p99_ms: round(storm.revoked.medianP99Ms, 1),
      refresh_delay_ms: storm.refreshDelayMs,
      seconds: round((Date.now() - started) / 1000, 0),
    };
    log(`BENCH ${JSON.stringify(line)}`);
  } finally {
    await stopBed(bed);
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
