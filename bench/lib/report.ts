/** What the bench prints: tables, bar charts, the first performance targets and the `BENCH {...}` line. */
import { loadavg } from 'node:os';
import type { PacedSummary } from '../phases/paced.js';
import type { RssSummary } from '../phases/memory.js';
import type { BurstStats, StormSummary } from '../phases/storm.js';
import type { Summary } from '../phases/throughput.js';
import type { Options } from './options.js';
import { ms, round } from './units.js';

export const log = (line = '') => process.stdout.write(`${line}\n`);
export function table(headers: string[], rows: (string | number)[][]): string {
  const cells = rows.map((r) => r.map(String));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(line)].join('\n');
}

/** A Unicode bar chart: one row per label, bars scaled to the largest value. */
export function bars(rows: readonly [string, number, string][], width = 40): string {
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

export const fmt = (x: number, digits = 1) => (Number.isFinite(x) ? x.toFixed(digits) : 'n/a');

export function printStorm(storm: StormSummary): void {
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

export function printThroughput(through: Summary[], opts: Options): void {
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

export function printPaced(pacedRes: PacedSummary[], opts: Options): void {
  const pBare = pacedRes.find((p) => p.name === 'bare-proxy') as PacedSummary;
  log(`\n-- latency at a steady ${opts.rate} req/s (open loop, send to last byte)\n`);
  log(
    table(
      ['target', 'achieved req/s', 'p50 ms', 'p99 ms', 'p99.9 ms', 'max ms', 'p99 x bare', 'max RSS MB', 'failed'],
      pacedRes.map((p) => [p.name, fmt(p.achievedRps, 0), fmt(ms(p.p50Us), 3), fmt(ms(p.p99Us), 3), fmt(ms(p.p999Us), 3), fmt(ms(p.maxUs), 1), fmt(p.p99Us / pBare.p99Us, 2), fmt(p.maxRssMb, 0), p.failed]),
    ),
  );
  log(`(generator: worst scheduling lag ${fmt(Math.max(...pacedRes.map((p) => p.maxLagMs)), 1)} ms)`);
}

/** The phases of a full run, as `main` collected them. */
export interface FullRun {
  through: Summary[];
  pacedRes: PacedSummary[];
  /** cloakroom's VmHWM right after the paced phase. */
  pacedPeakMb: number;
  rss: RssSummary;
  storm: StormSummary;
  /** Date.now() when the bench began. */
  started: number;
}

/** Everything after the phases: tables, bars, the first performance targets, then the `BENCH {...}` line. */
export function printReport(run: FullRun, opts: Options): void {
  const { through, pacedRes, pacedPeakMb, rss, storm, started } = run;
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

  printPaced(pacedRes, opts);

  log(`\n-- memory over ${rss.requests} requests (fresh cloakroom process, ${fmt(rss.rps, 0)} req/s)`);
  log(`after a full GC: RSS ${fmt(rss.gcCheckpointMb)} MB at request ${rss.checkpoint}, ${fmt(rss.gcEndMb)} MB at ${rss.requests} (growth ${fmt(rss.growthPct)}%); live heap ${fmt(rss.heapCheckpointMb)} -> ${fmt(rss.heapEndMb)} MB`);
  log(`under load (mean of the 5% before each point): ${fmt(rss.loadCheckpointMb)} -> ${fmt(rss.loadEndMb)} MB (${fmt(rss.loadGrowthPct)}%); max sampled ${fmt(rss.maxMb)} MB; VmHWM ${fmt(rss.hwmMb)} MB`);
  printStorm(storm);

  const targetsMet = [
    ['throughput >= 0.60x bare', cr.ratio >= 0.6, `${fmt(cr.ratio, 2)}x`],
    // Compared at the precision: the idle-timeout touch adds 3 PEXPIRE per session a minute (~0.00001 here).
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
  log(`\n-- first performance targets\n`);
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
}
