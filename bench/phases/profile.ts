/** `--profile`: one CPU-profiled round of one target, the top frames summarised. */
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBed, startTargets, stopBed } from '../lib/bed.js';
import { formatProfile, summariseProfile } from '../lib/cpuprofile.js';
import { closedLoop } from '../lib/loadgen.js';
import type { Options } from '../lib/options.js';
import { fmt, log } from '../lib/report.js';
import { measure } from './throughput.js';

export async function profileRun(opts: Options): Promise<void> {
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
