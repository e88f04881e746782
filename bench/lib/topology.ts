/**
 * The Redis the bench runs against (`--topology`), started here from redis-server processes,
 * each with a temporary --dir: one server; a Cluster of three masters with one replica each;
 * a Sentinel group (master, replica, one sentinel). Commands are counted on the masters only
 * (a replica executes every write again, which is not a command cloakroom sent).
 */
import { Redis } from 'ioredis';
import { startCluster, startRedisServer, startSentinel, type RedisServer } from '../../scripts/redis-server.js';
import { keySlot } from '../../src/store/cluster-tracking.js';
import { parseCommandStats, type CommandCounts } from './redis-stats.js';

export type TopologyKind = 'standalone' | 'cluster' | 'sentinel';
export const TOPOLOGIES: readonly TopologyKind[] = ['standalone', 'cluster', 'sentinel'];

export interface Topology {
  kind: TopologyKind;
  /** cloakroom's Redis variables for this topology. */
  env: Record<string, string>;
  /** A master's URL: the bare proxy's PING and the reference BFF (standalone only). */
  pingUrl: string;
  /** Calls per command summed over the servers that are masters now. */
  counts(): Promise<CommandCounts>;
  /** Finds the master that holds the session's keys now; `kill()` SIGKILLs it (no lookup left then). */
  masterOf(sid: string): Promise<{ port: number; kill(): Promise<void> }>;
  /** Waits until the master of the session's keys has every write acknowledged by a replica. */
  syncReplicas(sid: string): Promise<void>;
  describe(): string;
  stop(): Promise<void>;
}

const SENTINEL_NAME = 'cloakroom-bench';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One persistent connection per server, for INFO and topology questions. */
class Probes {
  private readonly clients = new Map<number, Redis>();
  of(port: number): Redis {
    let c = this.clients.get(port);
    if (!c) {
      c = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1, enableOfflineQueue: true, retryStrategy: () => null });
      c.on('error', () => undefined);
      this.clients.set(port, c);
    }
    return c;
  }
  async countMasters(servers: RedisServer[]): Promise<CommandCounts> {
    const total: CommandCounts = {};
    for (const s of servers) {
      if (s.pid === undefined) continue;
      const c = this.of(s.port);
      const role = String(await c.info('replication').catch(() => ''));
      if (!role.includes('role:master')) continue;
      const counts = parseCommandStats(String(await c.info('commandstats')));
      for (const [k, v] of Object.entries(counts)) total[k] = (total[k] ?? 0) + v;
    }
    return total;
  }
  close(): void {
    for (const c of this.clients.values()) c.disconnect();
  }
}

export async function startTopology(kind: TopologyKind): Promise<Topology> {
  const probes = new Probes();
  if (kind === 'standalone') {
    const redis = await startRedisServer();
    return {
      kind,
      env: { REDIS_URL: redis.url },
      pingUrl: redis.url,
      counts: () => probes.countMasters([redis]),
      masterOf: async () => ({ port: redis.port, kill: () => redis.stop() }),
      syncReplicas: async () => undefined,
      describe: () => `one redis-server on ${redis.port}`,
      stop: async () => {
        probes.close();
        await redis.stop();
      },
    };
  }
  if (kind === 'cluster') {
    const cluster = await startCluster({ masters: 3, replicasPerMaster: 1, nodeTimeoutMs: 1000 });
    const all = [...cluster.nodes, ...cluster.replicas];
    const masterPortOf = async (sid: string): Promise<number> => {
      const slot = keySlot(`cr:tok:${sid}`);
      for (const n of all) {
        if (n.pid === undefined) continue;
        const slots = (await probes.of(n.port).call('CLUSTER', 'SLOTS').catch(() => null)) as [number, number, [string, number]][] | null;
        const owner = slots?.find(([from, to]) => slot >= from && slot <= to);
        if (owner) return Number(owner[2][1]);
      }
      throw new Error('no cluster node answered CLUSTER SLOTS');
    };
    return {
      kind,
      env: { REDIS_CLUSTER_NODES: cluster.nodes.map((n) => `127.0.0.1:${n.port}`).join(',') },
      pingUrl: `redis://127.0.0.1:${cluster.nodes[0]?.port ?? 0}`,
      counts: () => probes.countMasters(all),
      masterOf: async (sid) => {
        const port = await masterPortOf(sid);
        const server = all.find((n) => n.port === port);
        return { port, kill: async () => server?.stop() };
      },
      syncReplicas: async (sid) => {
        await probes.of(await masterPortOf(sid)).call('WAIT', '1', '2000');
      },
      describe: () => `Redis Cluster: 3 masters (${cluster.nodes.map((n) => n.port).join(', ')}), one replica each, node timeout 1 s`,
      stop: async () => {
        probes.close();
        await cluster.stop();
      },
    };
  }
  const master = await startRedisServer();
  const replica = await startRedisServer({ args: ['--replicaof', '127.0.0.1', String(master.port)] });
  for (let i = 0; !String(await probes.of(replica.port).info('replication')).includes('master_link_status:up'); i++) {
    if (i > 200) throw new Error('sentinel group: the replica never synced');
    await sleep(50);
  }
  const sentinel = await startSentinel({ masterPort: master.port, name: SENTINEL_NAME, downAfterMs: 1000 });
  const asSentinel = probes.of(sentinel.port);
  // The sentinel learns of the replica from the master's INFO, every 10 s at first.
  for (let i = 0; ; i++) {
    const replicas = (await asSentinel.call('SENTINEL', 'replicas', SENTINEL_NAME)) as string[][];
    if (replicas.some((r) => r.includes(String(replica.port)) && !r.join(' ').includes('s_down'))) break;
    if (i > 400) throw new Error('sentinel group: the sentinel never saw the replica');
    await sleep(50);
  }
  const servers = [master, replica];
  const currentMaster = async (): Promise<number> => Number(((await asSentinel.call('SENTINEL', 'get-master-addr-by-name', SENTINEL_NAME)) as [string, string])[1]);
  return {
    kind,
    env: { REDIS_SENTINELS: `127.0.0.1:${sentinel.port}`, REDIS_SENTINEL_NAME: SENTINEL_NAME },
    pingUrl: master.url,
    counts: () => probes.countMasters(servers),
    masterOf: async () => {
      const port = await currentMaster();
      const server = servers.find((x) => x.port === port);
      return { port, kill: async () => server?.stop() };
    },
    syncReplicas: async () => {
      await probes.of(await currentMaster()).call('WAIT', '1', '2000');
    },
    describe: () => `Sentinel group: master ${master.port}, replica ${replica.port}, one sentinel (quorum 1, down after 1 s)`,
    stop: async () => {
      probes.close();
      await sentinel.stop();
      await Promise.all(servers.map((s) => s.stop()));
    },
  };
}
