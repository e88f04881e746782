/** Latency at a steady rate (open loop), interleaved rounds per target. */
import type { BenchTarget } from '../lib/bed.js';
import { paced, type PacedResult } from '../lib/loadgen.js';
import type { Options } from '../lib/options.js';
import { procMemory } from '../lib/processes.js';
import { log } from '../lib/report.js';
import { Samples, median } from '../lib/samples.js';
import { mb } from '../lib/units.js';

export interface PacedSummary {
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

export async function pacedPhase(targets: BenchTarget[], opts: Options): Promise<PacedSummary[]> {
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
