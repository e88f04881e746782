import type { Redis } from 'ioredis';
import { LRUCache } from 'lru-cache';
import { startInvalidationTracker, type InvalidationTracker, type TrackerHooks } from './invalidation-tracker.js';
import type { TokenRecord, TokenStore } from './token-store.js';

export interface TrackedStoreOptions {
  /** Entries older than this are read again even without an invalidation (key expiry lag, missed messages). */
  maxAgeMs?: number;
  maxEntries?: number;
  /** How often each tracking connection must prove it is alive for the cache to stay on. */
  healthIntervalMs?: number;
  clock?: () => number;
  onStateChange?: (enabled: boolean) => void;
  /** A tracking connection's setup or health command failed. */
  onError?: (err: unknown) => void;
}

export interface TrackedTokenStore extends TokenStore {
  /** Reads Redis, never the cache: for the refresher's read after a lost compare-and-set. */
  readTokensFresh(sid: string): Promise<TokenRecord | null>;
  /** True while every server that holds token records has its tracking connection up. */
  readonly cacheEnabled: boolean;
  /** Per tracked server (host:port, or `redis` for one server): whether its tracking is up. */
  trackingState(): Record<string, boolean>;
  /** Drops this process's entry for the session (an ended session; writes drop it themselves). */
  forget(sid: string): void;
  close(): void;
}

/**
 * Where the invalidations of a session's token key come from: one tracker for one Redis
 * (standalone, Sentinel), one per master on a Cluster (src/store/cluster-tracking.ts).
 */
export interface TrackingTopology {
  /** The tracker of the server that holds this session's token key now, if there is one. */
  trackerOf(sid: string): InvalidationTracker | null;
  readonly allUp: boolean;
  state(): Record<string, boolean>;
  close(): void;
}

/** What a topology tells the cache besides each tracker's own hooks. */
export interface TopologyHooks extends TrackerHooks {
  /** Slots moved between servers: nothing cached may stay, no read in flight may be cached. */
  reset(): void;
}

interface Entry {
  record: TokenRecord;
  /** The tracker that vouched for this entry when it was read. */
  tracker: InvalidationTracker;
}

/**
 * Redis client-side caching (CLIENT TRACKING, broadcast mode) for the one read on the proxy
 * path. Any write to any `cr:tok:` key, on any instance, and every expiry, invalidates the
 * entry here within milliseconds, so the steady-state proxy path needs no Redis command.
 *
 * A session is served from the cache only while the tracking connection of the server that
 * holds its key is up, and only with an answer read while that tracker was up and during which
 * no invalidation, tracker loss or slot move arrived (one generation counter). A tracker that
 * dies, hangs or reconnects turns the cache off (and empties it) for its server within about
 * two health intervals; reads for that server then go to Redis and fail fast (503).
 */
export function createTrackedCache(inner: TokenStore, connect: (hooks: TopologyHooks) => TrackingTopology, opts: TrackedStoreOptions = {}): TrackedTokenStore {
  const clock = opts.clock ?? Date.now;
  const maxAgeMs = opts.maxAgeMs ?? 1000;
  const maxEntries = opts.maxEntries ?? 50_000;
  // Least recently read sessions go first; an entry serves reads for maxAgeMs at most (clock-exact, no timers).
  const entries = new LRUCache<string, Entry>({ max: maxEntries, ttl: maxAgeMs, ttlResolution: 0, perf: { now: clock } });
  const watchers = new Map<string, Set<() => void>>();
  const reading = new Map<string, { generation: number; read: Promise<TokenRecord | null> }>();
  const wake = (sid: string) => {
    const set = watchers.get(sid);
    if (!set) return;
    watchers.delete(sid);
    for (const fn of set) fn();
  };
  // Bumped by every invalidation, tracker loss and slot move: a read that was in flight across
  // one is not cached, because its answer may predate the write the invalidation announced.
  let generation = 0;
  let enabled = false;

  // Set once connect() has returned; trackers report only asynchronously, but never rely on it.
  let current: TrackingTopology | null = null;
  const report = () => {
    const on = current?.allUp ?? false;
    if (on !== enabled) {
      enabled = on;
      opts.onStateChange?.(on);
    }
  };
  const dropAll = () => {
    generation += 1;
    if (entries.size > 0) entries.clear();
  };
  const topology = connect({
    invalidated(_tracker, sids) {
      generation += 1;
      if (sids === null) {
        entries.clear(); // FLUSHALL / FLUSHDB
        for (const sid of [...watchers.keys()]) wake(sid);
        return;
      }
      for (const sid of sids) {
        entries.delete(sid);
        wake(sid);
      }
    },
    down(tracker) {
      generation += 1;
      if (entries.size > 0) for (const [sid, e] of entries.entries()) if (e.tracker === tracker) entries.delete(sid);
      report();
    },
    up: () => report(),
    reset: () => {
      dropAll();
      report();
    },
  });
  current = topology;
  report();

  const forget = (sid: string) => {
    entries.delete(sid);
    generation += 1;
  };

  return {
    ...inner,
    // Asked of the topology each time: a Cluster's slot map can change without a tracker event.
    get cacheEnabled() {
      return topology.allUp;
    },
    trackingState: () => topology.state(),
    readTokens(sid) {
      const tracker = topology.trackerOf(sid);
      if (!tracker?.up) return inner.readTokens(sid);
      const hit = entries.get(sid);
      if (hit && hit.tracker === tracker) return Promise.resolve(hit.record);
      // A burst on an uncached session sends one GET, not one per request: later callers join
      // a read already in flight, unless an invalidation came since it was sent (generation).
      const seen = generation;
      const shared = reading.get(sid);
      if (shared && shared.generation === seen) return shared.read;
      const read = inner.readTokens(sid).then(
        (record) => {
          if (reading.get(sid)?.read === read) reading.delete(sid);
          if (record && seen === generation && tracker.up && topology.trackerOf(sid) === tracker) entries.set(sid, { record, tracker });
          return record;
        },
        (err: unknown) => {
          if (reading.get(sid)?.read === read) reading.delete(sid);
          throw err;
        },
      );
      reading.set(sid, { generation: seen, read });
      return read;
    },
    readTokensFresh: (sid) => inner.readTokens(sid),
    // readTokens's cache hit, the same checks, no promise.
    peekTokens(sid) {
      const tracker = topology.trackerOf(sid);
      if (!tracker?.up) return undefined;
      const hit = entries.get(sid);
      return hit && hit.tracker === tracker ? hit.record : undefined;
    },
    forget,
    changed: (sid, maxMs) =>
      new Promise<void>((resolve) => {
        // A WebSocket watcher waits here between checks: no reason to keep a stopping process up.
        const timer = setTimeout(done, maxMs).unref();
        function done() {
          clearTimeout(timer);
          watchers.get(sid)?.delete(done);
          resolve();
        }
        const set = watchers.get(sid) ?? new Set<() => void>();
        set.add(done);
        watchers.set(sid, set);
      }),
    // Our own writes drop the entry at once rather than waiting for the round trip of the invalidation.
    createTokens: async (sid, record, ttlMs) => {
      forget(sid);
      await inner.createTokens(sid, record, ttlMs);
    },
    replaceTokens: async (sid, expected, record) => {
      forget(sid);
      try {
        return await inner.replaceTokens(sid, expected, record);
      } finally {
        forget(sid);
      }
    },
    destroy: async (sid) => {
      forget(sid);
      try {
        await inner.destroy(sid);
      } finally {
        forget(sid);
      }
    },
    close() {
      topology.close();
      dropAll();
      report();
    },
  };
}

/**
 * One Redis (standalone or Sentinel): one tracking connection, a duplicate of the data
 * connection. With Sentinel the duplicate follows promotions by itself (it asks the
 * sentinels, like the data connection); on its reconnect the tracking is set up again on the
 * new master before the cache turns on, and both connections must be on the same server.
 */
export function createTrackedTokenStore(inner: TokenStore, data: Redis, opts: TrackedStoreOptions = {}): TrackedTokenStore {
  const sentinel = Array.isArray(data.options.sentinels) && data.options.sentinels.length > 0;
  return createTrackedCache(
    inner,
    (hooks) => {
      const conn = data.duplicate({ enableAutoPipelining: false, lazyConnect: true, autoResubscribe: false });
      const tracker = startInvalidationTracker(conn, 'redis', hooks, { healthIntervalMs: opts.healthIntervalMs ?? 250, ...(opts.onError ? { onError: opts.onError } : {}), ...(sentinel ? { sameServerAs: data } : {}) });
      return {
        trackerOf: () => tracker,
        get allUp() {
          return tracker.up;
        },
        state: () => ({ redis: tracker.up }),
        close: () => tracker.close(),
      };
    },
    opts,
  );
}
