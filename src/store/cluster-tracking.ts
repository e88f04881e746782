import { Redis, type Cluster } from 'ioredis';
import { startInvalidationTracker, type InvalidationTracker } from './invalidation-tracker.js';
import { TOKENS_PREFIX } from './keys.js';
import type { TokenStore } from './token-store.js';
import { createTrackedCache, type TrackedStoreOptions, type TrackedTokenStore, type TopologyHooks, type TrackingTopology } from './tracked-token-store.js';

// CRC16/XMODEM, the Redis Cluster key hash (cluster spec, "Keys distribution model").
const CRC_TABLE = (() => {
  const t = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 8;
    for (let j = 0; j < 8; j++) c = c & 0x8000 ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff;
    t[i] = c;
  }
  return t;
})();

/** The slot of a key, hash tag rules included: the first `{...}` with something inside. */
export function keySlot(key: string): number {
  let bytes = Buffer.from(key, 'utf8');
  const open = bytes.indexOf(0x7b);
  if (open !== -1) {
    const close = bytes.indexOf(0x7d, open + 1);
    if (close > open + 1) bytes = bytes.subarray(open + 1, close);
  }
  let crc = 0;
  for (const b of bytes) crc = ((crc << 8) & 0xffff) ^ (CRC_TABLE[((crc >> 8) ^ b) & 0xff] ?? 0);
  return crc % 16384;
}

const nodeKeyOf = (r: Redis): string => `${r.options.host ?? '127.0.0.1'}:${r.options.port ?? 6379}`;

/** The slot map as ranges of one master (for comparing two maps cheaply), and its masters. */
function slotOwners(cluster: Cluster): { map: string; owners: Set<string> } {
  const parts: string[] = [];
  const owners = new Set<string>();
  let last: string | undefined;
  for (let s = 0; s < 16384; s++) {
    const owner = cluster.slots[s]?.[0] ?? '';
    if (owner !== last) {
      parts.push(`${s}=${owner}`);
      if (owner) owners.add(owner); // an unassigned slot has no sessions to cache
      last = owner;
    }
  }
  return { map: parts.join(','), owners };
}

export interface ClusterTrackingOptions extends TrackedStoreOptions {
  /** How often the trackers are compared with ioredis's view of the masters, besides its events. */
  topologyIntervalMs?: number;
}

/**
 * The tracked cache on a Redis Cluster: one tracking connection per master. A node only
 * reports writes to keys it holds, so a session is served from the cache only while the
 * tracker of the master that owns its slot (ioredis's slot map, the one its GET goes by) is up.
 *
 * The trackers follow ioredis's topology (`refresh`, `+node`, `-node`, and a check every
 * second): a new master gets a tracker, a master that is gone loses its tracker and every
 * entry it vouched for. A slot map that changed (failover, resharding) empties the cache and
 * bumps the generation, so no answer read across the change is kept. A tracker that goes down
 * asks ioredis to reload the slot map: after a failover the promoted replica then gets its
 * tracker within a round trip of the cluster noticing.
 */
export function createClusterTrackedTokenStore(inner: TokenStore, cluster: Cluster, opts: ClusterTrackingOptions = {}): TrackedTokenStore {
  const healthIntervalMs = opts.healthIntervalMs ?? 250;
  return createTrackedCache(
    inner,
    (hooks: TopologyHooks): TrackingTopology => {
      const trackers = new Map<string, InvalidationTracker>();
      let owners = '';
      // Every master the slot map names, as of the last sync ('' for an unassigned slot).
      let slotMasters = new Set<string>();
      let closed = false;
      let refreshAsked = 0;
      // A master we cannot reach may have been replaced: ask for the slot map again (at most
      // once a second). ioredis itself reloads it only when a command meets MOVED or an error,
      // so an instance that sends nothing to those slots would otherwise never learn of the
      // promoted replica, and their sessions would stay uncached.
      const lookAgain = () => {
        const now = Date.now();
        if (closed || cluster.status !== 'ready' || now - refreshAsked < 1000) return;
        refreshAsked = now;
        try {
          cluster.refreshSlotsCache();
        } catch {
          // refreshed on ioredis's own schedule then
        }
      };
      const wrapped: TopologyHooks = {
        ...hooks,
        down(tracker) {
          hooks.down(tracker);
          lookAgain();
        },
      };
      const sync = () => {
        if (closed) return;
        const masters = new Map(cluster.nodes('master').map((r) => [nodeKeyOf(r), r]));
        for (const [key, tracker] of trackers) {
          if (masters.has(key)) continue;
          trackers.delete(key);
          tracker.close(); // reports down: its entries go
        }
        for (const [key, node] of masters) {
          if (trackers.has(key)) continue;
          const conn = new Redis({
            ...(cluster.options.redisOptions ?? {}),
            host: node.options.host ?? '127.0.0.1',
            port: node.options.port ?? 6379,
            enableAutoPipelining: false,
            lazyConnect: true,
            autoResubscribe: false,
            enableOfflineQueue: false,
            maxRetriesPerRequest: 1,
          });
          trackers.set(key, startInvalidationTracker(conn, key, wrapped, { healthIntervalMs, ...(opts.onError ? { onError: opts.onError } : {}) }));
        }
        const now = slotOwners(cluster);
        slotMasters = now.owners;
        if (now.map !== owners) {
          owners = now.map;
          hooks.reset();
        }
        for (const key of slotMasters) if (!trackers.get(key)?.up) return lookAgain();
      };
      cluster.on('refresh', sync);
      cluster.on('+node', sync);
      cluster.on('-node', sync);
      cluster.on('ready', sync);
      const timer = setInterval(sync, opts.topologyIntervalMs ?? 1000);
      timer.unref();
      sync();
      return {
        trackerOf(sid) {
          const owner = cluster.slots[keySlot(`${TOKENS_PREFIX}${sid}`)]?.[0];
          return owner === undefined ? null : (trackers.get(owner) ?? null);
        },
        // On everywhere: every slot's master has a tracker that is up. A master ioredis has
        // dropped while the slot map still names it (a dead node before the failover) counts as off.
        get allUp() {
          if (trackers.size === 0 || slotMasters.size === 0) return false;
          for (const t of trackers.values()) if (!t.up) return false;
          for (const key of slotMasters) if (!trackers.get(key)?.up) return false;
          return true;
        },
        state: () => Object.fromEntries([...trackers].map(([k, t]) => [k, t.up])),
        close() {
          closed = true;
          clearInterval(timer);
          cluster.off('refresh', sync);
          cluster.off('+node', sync);
          cluster.off('-node', sync);
          cluster.off('ready', sync);
          for (const t of trackers.values()) t.close();
          trackers.clear();
        },
      };
    },
    opts,
  );
}
