import type { Redis } from 'ioredis';
import { TOKENS_PREFIX } from './keys.js';
import { reviveWhenEnded } from './redis-client.js';

/**
 * One Redis server's invalidations of `cr:tok:` keys, on a connection of its own: CLIENT
 * TRACKING (RESP2, so REDIRECT to the connection's own id, which is subscribed to
 * `__redis__:invalidate`), BCAST PREFIX cr:tok:. ioredis 5 has no RESP3, hence the redirect.
 *
 * `up` is true only while tracking and the subscription are in place on the current
 * connection and the last health PING came back within one interval (a PONG comes after every
 * invalidation the server sent before it). Every transition to down is reported, even when it
 * was down already: the cache drops what it holds from this server each time.
 */
export interface InvalidationTracker {
  readonly up: boolean;
  /** host:port of the server this tracker is meant to follow (a Cluster node key), for logs and tests. */
  readonly name: string;
  close(): void;
}

export interface TrackerHooks {
  /** Keys written or expired on this server (null: FLUSHALL / FLUSHDB). */
  invalidated(tracker: InvalidationTracker, sids: string[] | null): void;
  /** The tracker can no longer vouch for anything: drop what it covered. */
  down(tracker: InvalidationTracker): void;
  up(tracker: InvalidationTracker): void;
}

export interface TrackerOptions {
  healthIntervalMs: number;
  /** A setup or health command failed (counted in cloakroom_redis_errors_total{part="tracking"}). */
  onError?: (err: unknown) => void;
  /**
   * Sentinel: the data connection. The cache is exact only if the tracker watches the server
   * that the data connection reads from; after a promotion the two connections reconnect
   * separately, and until both are on the new master the tracker does not vouch for anything.
   */
  sameServerAs?: Redis;
}

const remoteOf = (r: Redis): string | null => {
  const s = (r as unknown as { stream?: { remoteAddress?: string; remotePort?: number } }).stream;
  return s?.remotePort ? `${s.remoteAddress ?? ''}:${s.remotePort}` : null;
};

/** `conn` must be created with lazyConnect and autoResubscribe: false; the tracker owns it from here. */
export function startInvalidationTracker(conn: Redis, name: string, hooks: TrackerHooks, opts: TrackerOptions): InvalidationTracker {
  let up = false;
  let closed = false;
  // True only once CLIENT TRACKING and SUBSCRIBE succeeded on the current connection: a
  // reconnected connection has neither until our 'ready' handler has set them up again.
  let tracking = false;
  const self: InvalidationTracker = {
    get up() {
      return up;
    },
    name,
    close,
  };
  const setDown = () => {
    up = false;
    hooks.down(self);
  };
  const setUp = () => {
    if (up || closed || !tracking) return;
    if (opts.sameServerAs && remoteOf(opts.sameServerAs) !== remoteOf(conn)) return;
    up = true;
    hooks.up(self);
  };
  const lost = () => {
    tracking = false;
    setDown();
  };
  conn.on('error', () => undefined);
  conn.on('close', lost);
  conn.on('reconnecting', lost);
  conn.on('messageBuffer', (_channel: Buffer, message: Buffer[] | Buffer | null) => {
    if (message === null) return hooks.invalidated(self, null);
    const sids: string[] = [];
    for (const key of Array.isArray(message) ? message : [message]) {
      const k = key.toString('utf8');
      if (k.startsWith(TOKENS_PREFIX)) sids.push(k.slice(TOKENS_PREFIX.length));
    }
    hooks.invalidated(self, sids);
  });
  // No auto-resubscribe (the caller's options): ioredis would SUBSCRIBE before this handler,
  // and a subscribed connection may not run CLIENT ID / CLIENT TRACKING; we redo all three, in order.
  conn.on('ready', () => {
    void (async () => {
      try {
        const id = String(await conn.client('ID'));
        await conn.call('CLIENT', 'TRACKING', 'ON', 'REDIRECT', id, 'BCAST', 'PREFIX', TOKENS_PREFIX);
        await conn.subscribe('__redis__:invalidate');
        tracking = true;
        setUp();
      } catch (err) {
        opts.onError?.(err);
        lost();
      }
    })();
  });
  void conn.connect().catch(() => setDown());
  // An ended tracker would leave the cache off for good (correct, but every read a GET).
  const revival = reviveWhenEnded(conn);

  let healthInFlight = false;
  const health = setInterval(() => {
    if (closed || conn.status !== 'ready') return setDown();
    if (healthInFlight) return setDown(); // the last PING is still unanswered: hung
    if (opts.sameServerAs && remoteOf(opts.sameServerAs) !== remoteOf(conn)) return setDown();
    healthInFlight = true;
    conn
      .ping()
      .then(() => {
        healthInFlight = false;
        setUp();
      })
      .catch((err: unknown) => {
        healthInFlight = false;
        opts.onError?.(err);
        setDown();
      });
  }, opts.healthIntervalMs);
  health.unref();

  function close(): void {
    if (closed) return;
    closed = true;
    clearInterval(health);
    revival.stop();
    conn.disconnect();
    setDown();
  }
  return self;
}
