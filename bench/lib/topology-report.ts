/** The per-topology comparison (`--topology`): one table side by side, the targets, and a `BENCH_TOPOLOGIES {...}` line. */
import { loadavg } from 'node:os';
import type { FailoverSummary } from '../phases/failover.js';
import type { PacedSummary } from '../phases/paced.js';
import type { StormSummary } from '../phases/storm.js';
import type { Summary } from '../phases/throughput.js';
import { fmt, log, table } from './report.js';
import { ms, round } from './units.js';

export interface TopologyRun {
  kind: string;
  describe: string;
  through: Summary[];
  paced: PacedSummary[];
  storm: StormSummary;
  failover: FailoverSummary | null;
  /** Load average (1 min) when the topology's phases began and ended. */
  loadBefore: number;
  loadAfter: number;
}

export function printFailover(f: FailoverSummary): void {
  log(`\n-- failover under load (${f.topology}): ${f.rate} req/s over ${f.sessions} sessions and two instances for ${f.seconds} s; master ${f.killedPort} killed at 3 s`);
  log(`answers: ${Object.entries(f.statuses).sort((x, y) => y[1] - x[1]).map(([k, v]) => `${k}: ${v}`).join(', ')}`);
  log(`failing answers from ${fmt(f.firstFailMs, 0)} to ${fmt(f.lastFailMs, 0)} ms after the kill (send times); the last one answered ${fmt(f.gapMs, 0)} ms after the kill; ${f.sessionsOnKilled} session(s) saw a failure; non-200 answers before the kill: ${f.failedBeforeKill}`);
  log(`sessions lost: ${f.lost} of ${f.sessions}; token cache ${f.cacheSeenOff ? 'off, then' : 'never seen off,'} on again on both instances ${f.cacheBackMs === null ? 'NOT within the wait' : `${fmt(f.cacheBackMs, 0)} ms after the kill`}`);
}

const failoverFacts = (f: FailoverSummary) => {
  const other = Object.entries(f.statuses).filter(([k]) => k !== '200' && k !== '503 session_store_unavailable');
  return { other, fiveHundreds: other.filter(([k]) => k.startsWith('5')).reduce((a, [, v]) => a + v, 0), unavailable: f.statuses['503 session_store_unavailable'] ?? 0 };
};

export function printTopologies(runs: TopologyRun[], rate: number, started: number): void {
  const rows = runs.map((r) => {
    const bare = r.through.find((t) => t.name === 'bare-proxy') as Summary;
    const cr = r.through.find((t) => t.name === 'cloakroom') as Summary;
    const pb = r.paced.find((p) => p.name === 'bare-proxy') as PacedSummary;
    const pc = r.paced.find((p) => p.name === 'cloakroom') as PacedSummary;
    return { r, bare, cr, pb, pc };
  });
  log(`\n== topologies side by side (cloakroom against the bare proxy in the same run)\n`);
  log(
    table(
      ['topology', 'bare req/s', 'cloakroom req/s', 'x bare', 'Redis cmd/req', `p99 @${rate} bare ms`, 'cloakroom ms', 'p99 x bare', 'storm refreshes', 'storm p99 ms', 'failover: 503s', 'other non-200', 'gap s', 'lost', 'cache back s', 'load avg'],
      rows.map(({ r, bare, cr, pb, pc }) => {
        const f = r.failover;
        const facts = f ? failoverFacts(f) : null;
        return [
          r.kind,
          fmt(bare.rps, 0),
          fmt(cr.rps, 0),
          fmt(cr.ratio, 2),
          fmt(cr.redisPerReq, 4),
          fmt(ms(pb.p99Us), 3),
          fmt(ms(pc.p99Us), 3),
          fmt(pc.p99Us / pb.p99Us, 2),
          r.storm.expiredRefreshes.join(' '),
          fmt(r.storm.expired.medianP99Ms, 1),
          facts ? facts.unavailable : '-',
          facts ? facts.other.map(([k, v]) => `${k}: ${v}`).join('; ') || '0' : '-',
          f ? fmt(f.gapMs / 1000, 2) : '-',
          f ? `${f.lost}/${f.sessions}` : '-',
          f ? (f.cacheBackMs === null ? 'never' : fmt(f.cacheBackMs / 1000, 2)) : '-',
          `${fmt(r.loadBefore, 2)}-${fmt(r.loadAfter, 2)}`,
        ];
      }),
    ),
  );
  const checks: [string, string, boolean, string][] = [];
  for (const { r, cr, pb, pc } of rows) {
    checks.push([r.kind, 'throughput >= 0.60x bare', cr.ratio >= 0.6, `${fmt(cr.ratio, 2)}x`]);
    checks.push([r.kind, 'Redis commands/request <= 0.05', cr.redisPerReq <= 0.05, `${fmt(cr.redisPerReq, 4)} (${Object.entries(cr.redisByCommand).sort((x, y) => y[1] - x[1]).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(', ') || 'none'})`]);
    checks.push([r.kind, `p99 at ${rate} req/s <= 1.5x bare`, pc.p99Us / pb.p99Us <= 1.5, `${fmt(pc.p99Us / pb.p99Us, 2)}x (${fmt(ms(pc.p99Us), 3)} vs ${fmt(ms(pb.p99Us), 3)} ms)`]);
    checks.push([r.kind, 'storm: one upstream refresh', r.storm.expiredRefreshes.every((n) => n === 1), `${r.storm.expiredRefreshes.join(', ')} (per trial)`]);
    const f = r.failover;
    if (!f) continue;
    const facts = failoverFacts(f);
    checks.push([r.kind, 'failover: no 500s, only 503 session_store_unavailable', facts.other.length === 0, facts.other.map(([k, v]) => `${k}: ${v}`).join('; ') || `${facts.unavailable} x 503 session_store_unavailable`]);
    checks.push([r.kind, 'failover: gap <= 5 s', f.gapMs <= 5000, `${fmt(f.gapMs / 1000, 2)} s`]);
    checks.push([r.kind, 'failover: no session lost', f.lost === 0, `${f.lost} of ${f.sessions}`]);
    checks.push([r.kind, 'failover: token cache back on', f.cacheBackMs !== null, f.cacheBackMs === null ? 'not within 10 s after the run' : `${fmt(f.cacheBackMs / 1000, 2)} s after the kill`]);
  }
  log(`\n-- targets per topology\n`);
  log(table(['topology', 'target', 'met', 'measured'], checks.map(([k, n, ok, v]) => [k, n, ok ? 'yes' : 'NO', v])));
  log(`\n(total ${fmt((Date.now() - started) / 1000, 0)} s; load average now ${loadavg().map((x) => x.toFixed(2)).join(' ')})`);
  const line = rows.map(({ r, bare, cr, pb, pc }) => ({
    topology: r.kind,
    bare_rps: round(bare.rps, 0),
    cloakroom_rps: round(cr.rps, 0),
    ratio: round(cr.ratio, 3),
    redis_cmds_per_req: round(cr.redisPerReq, 5),
    p99_ratio_1000rps: round(pc.p99Us / pb.p99Us, 3),
    storm_refreshes: r.storm.expiredRefreshes,
    storm_p99_ms: round(r.storm.expired.medianP99Ms, 1),
    failover: r.failover ? { statuses: r.failover.statuses, gap_ms: round(r.failover.gapMs, 0), lost: r.failover.lost, cache_back_ms: r.failover.cacheBackMs === null ? null : round(r.failover.cacheBackMs, 0) } : null,
    load: [round(r.loadBefore, 2), round(r.loadAfter, 2)],
  }));
  log(`BENCH_TOPOLOGIES ${JSON.stringify(line)}`);
}
