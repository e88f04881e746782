/**
 * `npm run bench`: cloakroom's `/api/*` path against a bare Node proxy (the ceiling for any
 * Node hop), the upstream itself and a hand-assembled express-session BFF, side by side in
 * one run (the first performance targets). Every server is its own child process; the load generator runs here.
 *
 *   node dist/bench/run.js [--rounds 3] [--seconds 10] [--connections 50] [--rate 1000]
 *                          [--paced-rounds 4] [--paced-seconds 3] [--rss-requests 200000]
 *                          [--storm 500] [--storm-trials 9] [--storm-warmup 60] [--storm-warmup-trials 5] [--refresh-delay 50]
 *                          [--tool autocannon|wrk] [--quick] [--experiments]
 *                          [--targets a,b,...]   (throughput phase only, for A/B runs)
 *                          [--storm-only]        (the refresh storm alone)
 *                          [--storm-profile]     (CPU profile of one storm instance)
 *                          [--profile [cloakroom|bare-proxy|reference-bff|cloakroom-memory]]
 *                          [--topology standalone|cluster|sentinel|all|a,b] (also BENCH_TOPOLOGY)
 *                          [--failover-seconds 12] [--failover-sessions 30]
 *
 * See docs/performance.md for the method and the results.
 *
 * Prints a table and, last, one line `BENCH {...}` for machines. Figures, not pass/fail:
 * the exit code is non-zero only when the bench itself could not run.
 */
import { cpus, loadavg, totalmem } from 'node:os';
import { startBed, startTargets, stopBed, type BenchTarget } from './lib/bed.js';
import { parseArgs, type Options } from './lib/options.js';
import { procMemory } from './lib/processes.js';
import { fmt, log, printPaced, printReport, printStorm, printThroughput } from './lib/report.js';
import { printFailover, printTopologies, type TopologyRun } from './lib/topology-report.js';
import type { TopologyKind } from './lib/topology.js';
import { mb } from './lib/units.js';
import { rssPhase } from './phases/memory.js';
import { pacedPhase } from './phases/paced.js';
import { profileRun } from './phases/profile.js';
import { failoverPhase } from './phases/failover.js';
import { stormPhase } from './phases/storm.js';
import { throughputPhase } from './phases/throughput.js';
import { wirePhase } from './phases/wire.js';

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.profile) return profileRun(opts);
  const started = Date.now();
  log(`cloakroom bench: node ${process.version}, ${cpus().length} CPU(s) (${cpus()[0]?.model ?? '?'}), ${fmt(totalmem() / 2 ** 30, 0)} GB, load generator ${opts.tool}, load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  if (opts.topologies.length > 0) return topologyRuns(opts.topologies, opts, started);
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
    await wirePhase(bed, opts); // prints its own section (answer bodies: compression, 20 MB answers)
    printReport({ through, pacedRes, pacedPeakMb, rss, storm, started }, opts);
  } finally {
    await stopBed(bed);
  }
}

/**
 * `--topology`: for each topology, its own Redis (started here), the bare proxy and cloakroom
 * side by side (paced latency, throughput), the refresh storm, and on Cluster and Sentinel the
 * failover under load; then one table of every topology and its targets.
 */
async function topologyRuns(kinds: TopologyKind[], opts: Options, started: number): Promise<void> {
  const runs: TopologyRun[] = [];
  for (const kind of kinds) {
    const loadBefore = loadavg()[0] ?? Number.NaN;
    const bed = await startBed(kind);
    try {
      log(`\n######## topology ${kind}: ${bed.topology.describe()}`);
      const targets = await startTargets(bed, ['bare-proxy', 'cloakroom']);
      const paced = await pacedPhase(targets, opts);
      const through = await throughputPhase(bed, targets, opts);
      printThroughput(through, opts);
      printPaced(paced, opts);
      const storm = await stormPhase(bed, opts, targets[0] as BenchTarget);
      printStorm(storm);
      // Last: it kills a master.
      const failover = kind === 'standalone' ? null : await failoverPhase(bed, opts);
      if (failover) printFailover(failover);
      runs.push({ kind, describe: bed.topology.describe(), through, paced, storm, failover, loadBefore, loadAfter: loadavg()[0] ?? Number.NaN });
    } finally {
      await stopBed(bed);
    }
  }
  printTopologies(runs, opts.rate, started);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
