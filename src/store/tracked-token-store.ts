import type { Redis } from 'ioredis';
import { LRUCache } from 'lru-cache';
import { TOKENS_PREFIX } from './keys.js';
import { reviveWhenEnded } from './redis-client.js';
import type { TokenRecord, TokenStore } from './token-store.js';

export interface TrackedStoreOptions {
  /** Entries older than this are read again even without an invalidation (key expiry lag, missed messages). */
  maxAgeMs?: number;
  maxEntries?: number;
  /** How often the tracking connection must prove it is alive for the cache to stay on. */
  healthIntervalMs?: number;
  clock?: () => number;
  onStateChange?: (enabled: boolean) => void;
  /** A setup or health command of the tracking connection failed (the redis-errors metric). */
  onError?: (err: unknown) => void;
}

export interface TrackedTokenStore extends TokenStore {
  /** Reads Redis, never the cache: for the refresher's read after a lost compare-and-set. */
  readTokensFresh(sid: string): Promise<TokenRecord | null>;
  readonly cacheEnabled: boolean;
  /** Drops this process's entry for the session (an ended session; writes drop it themselves). */
  forget(sid: string): void;
  close(): void;
}

/**
 * Redis client-side caching (CLIENT TRACKING, broadcast mode) for the one read on the proxy
 * path. Any write to any `cr:tok:` key, on any instance, and every expiry, invalidates the
 * entry here within milliseconds, so the steady-state proxy path needs no Redis command.
 *
 * The cache is on only while its tracking connection is subscribed and answers a PING
 * every `healthIntervalMs`; a dead, hung or reconnecting Redis turns it off (and empties
 * it) within about two intervals, after which every read goes to Redis and fails fast (503).
 */
export function createTrackedTokenStore(inner: TokenStore, data: Redis, opts: TrackedStoreOptions = {}): TrackedTokenStore {
  const clock = opts.clock ?? Date.now;
  const maxAgeMs = opts.maxAgeMs ?? 1000;
  const maxEntries = opts.maxEntries ?? 50_000;
  const healthIntervalMs = opts.healthIntervalMs ?? 250;
  // Least recently read sessions go first; an entry serves reads for maxAgeMs at most (clock-exact, no timers).
  const entries = new LRUCache<string, TokenRecord>({ max: maxEntries, ttl: maxAgeMs, ttlResolution: 0, perf: { now: clock } });
  const watchers = new Map<string, Set<() => void>>();
  const reading = new Map<string, { generation: number; read: Promise<TokenRecord | null> }>();
  const wake = (sid: string) => {
    const set = watchers.get(sid);
    if (!set) return;
    watchers.delete(sid);
    for (const fn of set) fn();
  };
  // Bumped by every invalidation: a read that was in flight across one is not cached,
  // because its answer may predate the write the invalidation announced.
  let generation = 0;
  let enabled = false;
  let closed = false;
  // True only once CLIENT TRACKING and SUBSCRIBE succeeded on the current connection: a
  // reconnected connection has neither until our 'ready' handler has set them up again.
  let tracking = false;

  const setEnabled = (on: boolean) => {
    if (!on) {
      if (entries.size > 0) entries.clear();
      generation += 1;
    }
    if (on !== enabled) {
      enabled = on;
      opts.onStateChange?.(on);
    }
  };

  // No auto-resubscribe: ioredis would SUBSCRIBE before our 'ready' handler, and a subscribed
  // connection may not run CLIENT ID / CLIENT TRACKING; we redo all three, in order.
  const tracker = data.duplicate({ enableAutoPipelining: false, lazyConnect: true, autoResubscribe: false });
  const lost = () => {
    tracking = false;
    setEnabled(false);
  };
  tracker.on('error', () => undefined);
  tracker.on('close', lost);
  tracker.on('reconnecting', lost);
  tracker.on('messageBuffer', (_channel: Buffer, message: Buffer[] | Buffer | null) => {
    generation += 1;
    if (message === null) {
      entries.clear(); // FLUSHALL / FLUSHDB
      for (const sid of [...watchers.keys()]) wake(sid);
      return;
    }
    for (const key of Array.isArray(message) ? message : [message]) {
      const k = key.toString('utf8');
      if (!k.startsWith(TOKENS_PREFIX)) continue;
      const sid = k.slice(TOKENS_PREFIX.length);
      entries.delete(sid);
      wake(sid);
    }
  });
  // Tracking state lives with the connection: set it up again after every (re)connect.
  tracker.on('ready', () => {
    void (async () => {
      try {
        const id = String(await tracker.client('ID'));
        await tracker.call('CLIENT', 'TRACKING', 'ON', 'REDIRECT', id, 'BCAST', 'PREFIX', TOKENS_PREFIX);
        await tracker.subscribe('__redis__:invalidate');
        tracking = true;
        setEnabled(true);
      } catch (err) {
        opts.onError?.(err);
        lost();
      }
    })();
  });
  void tracker.connect().catch(() => setEnabled(false));
  // An ended tracker would leave the cache off for good (correct, but every read a GET).
  const revival = reviveWhenEnded(tracker);

  let healthInFlight = false;
  const health = setInterval(() => {
    if (closed || tracker.status !== 'ready') return setEnabled(false);
    if (healthInFlight) return setEnabled(false); // the last PING is still unanswered: hung
    healthInFlight = true;
    tracker
      .ping()
      .then(() => {
        healthInFlight = false;
        // A PONG comes after every invalidation sent before it on this connection.
        if (!enabled && !closed && tracking) setEnabled(true);
      })
      .catch((err: unknown) => {
        healthInFlight = false;
        opts.onError?.(err);
        setEnabled(false);
      });
  }, healthIntervalMs);
  health.unref();

  const forget = (sid: string) => {
    entries.delete(sid);
    generation += 1;
  };

  return {
    ...inner,
    get cacheEnabled() {
      return enabled;
    },
    readTokens(sid) {
      if (!enabled) return inner.readTokens(sid);
      const hit = entries.get(sid);
      if (hit) return Promise.resolve(hit);
      // A burst on an uncached session sends one GET, not one per request: later callers join
      // a read already in flight, unless an invalidation came since it was sent (generation).
      const seen = generation;
      const shared = reading.get(sid);
      if (shared && shared.generation === seen) return shared.read;
      const read = inner.readTokens(sid).then(
        (record) => {
          if (reading.get(sid)?.read === read) reading.delete(sid);
          if (record && enabled && seen === generation) entries.set(sid, record);
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
    forget,
    changed: (sid, maxMs) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(done, maxMs);
        // A watcher (refresh waiter, WebSocket session check) must not keep a stopping process alive.
        timer.unref();
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
      closed = true;
      clearInterval(health);
      setEnabled(false);
      revival.stop();
      tracker.disconnect();
    },
  };
}
