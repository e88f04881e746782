/** Saturation: every target in interleaved closed-loop rounds, with CPU and Redis commands per request. */
import type { Bed, BenchTarget } from '../lib/bed.js';
import { closedLoop, type LoadResult, type Tool } from '../lib/loadgen.js';
import type { Options } from '../lib/options.js';
import { procMemory } from '../lib/processes.js';
import { diffCounts, type CommandCounts } from '../lib/redis-stats.js';
import { fmt, log } from '../lib/report.js';
import { median } from '../lib/samples.js';
import { mb, sleep } from '../lib/units.js';

export interface RoundResult {
  load: LoadResult;
  /** Requests the server counted in the round. */
  served: number;
  cpuUsPerReq: number;
  redisPerReq: number;
  redisByCommand: CommandCounts;
  rss: number;
}

export async function measure(bed: Bed, t: BenchTarget, tool: Tool, opts: Options, seconds: number): Promise<RoundResult> {
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

export interface Summary {
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

export function summarise(name: string, rounds: RoundResult[], bareRounds: RoundResult[], peak: number): Summary {
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

export async function throughputPhase(bed: Bed, targets: BenchTarget[], opts: Options) {
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
