/** The refresh storm: one expired session, a burst across two instances, one upstream refresh. */
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkTarget, cloakroomEnv, signIn, type Bed, type BenchTarget } from '../lib/bed.js';
import { formatProfile, summariseProfile } from '../lib/cpuprofile.js';
import { BurstClient, type BurstResult, type Target } from '../lib/loadgen.js';
import type { Options } from '../lib/options.js';
import { startServer, type ServerChild } from '../lib/processes.js';
import type { UpstreamCounters } from '../lib/protocol.js';
import { diffCounts } from '../lib/redis-stats.js';
import { log } from '../lib/report.js';
import { median } from '../lib/samples.js';
import { ms, sleep } from '../lib/units.js';

export interface BurstStats {
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

export interface StormSummary {
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

export function burstStats(results: BurstResult[]): BurstStats {
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
export async function stormPhase(bed: Bed, opts: Options, bareTarget: BenchTarget): Promise<StormSummary> {
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
  const bareB = await startServer('bare-proxy-b', 'bare-proxy', { BENCH_UPSTREAM_URL: bed.upstream.url, BENCH_REDIS_URL: bed.topology.pingUrl });
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
