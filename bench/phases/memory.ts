/** RSS growth of a fresh cloakroom process over a long run. */
import { checkTarget, cloakroomEnv, signIn, type Bed } from '../lib/bed.js';
import { closedLoop, type Target } from '../lib/loadgen.js';
import type { Options } from '../lib/options.js';
import { procMemory, startServer } from '../lib/processes.js';
import type { ChildStats } from '../lib/protocol.js';
import { log } from '../lib/report.js';
import { mb, sleep } from '../lib/units.js';

export interface RssSummary {
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
export async function rssPhase(bed: Bed, opts: Options): Promise<RssSummary> {
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
