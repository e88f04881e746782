/** The bench's command line (see the usage in bench/run.ts). */
import { wrkAvailable, type Tool } from './loadgen.js';
import { TOPOLOGIES, type TopologyKind } from './topology.js';

export function parseArgs(argv: string[]) {
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
  // `--topology cluster`, `--topology cluster,sentinel`, `--topology all` (also BENCH_TOPOLOGY).
  const topologyArg = get('topology') ?? process.env['BENCH_TOPOLOGY'] ?? '';
  const topologies = (topologyArg === 'all' ? [...TOPOLOGIES] : topologyArg.split(',').filter(Boolean)) as TopologyKind[];
  const unknownTopology = topologies.filter((t) => !TOPOLOGIES.includes(t));
  if (unknownTopology.length > 0) throw new Error(`--topology ${unknownTopology.join(',')}: expected ${TOPOLOGIES.join(', ')} or all`);
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
    /** Empty: today's full bench on one redis-server. Else the per-topology comparison (bench/run.ts). */
    topologies,
    failoverSeconds: num('failover-seconds', 12),
    failoverSessions: num('failover-sessions', 30),
  };
}

export type Options = ReturnType<typeof parseArgs>;
