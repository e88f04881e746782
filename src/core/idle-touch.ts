import { LRUCache } from 'lru-cache';
import type { SessionIndex } from '../store/session-index.js';
import type { TokenStore } from '../store/token-store.js';
import type { SessionTimeouts } from './session-lifecycle.js';

/**
 * Extends a session's idle timeout at most once per interval per session and instance, so
 * the proxy path stays at one Redis command per request. The session may therefore end up
 * to one interval earlier than "last request + idle timeout"; the docs say so. A touch is the
 * session's keys (one pipeline) and its device entry (a script on the session's tag, then a
 * ZADD on its user's: two tags, so two commands).
 */
export function createIdleToucher(opts: {
  store: TokenStore;
  /** The user's device list follows the session's end and last-seen time, in the same throttled moment. */
  index?: Pick<SessionIndex, 'touch'>;
  timeouts: SessionTimeouts;
  intervalMs: number;
  clock: () => number;
  maxEntries?: number;
  onError?: (err: unknown) => void;
}) {
  // An entry means "touched less than an interval ago": it lives one interval, and the least
  // recently touched sessions go first past maxEntries.
  const touchedRecently = new LRUCache<string, true>({
    max: opts.maxEntries ?? 100_000,
    ttl: opts.intervalMs,
    ttlResolution: 0,
    perf: { now: opts.clock },
  });

  const touchNow = async (sid: string, absoluteExpiresAt: number): Promise<number> => {
    const now = opts.clock();
    touchedRecently.set(sid, true);
    const ttl = opts.timeouts.ttlAt(now, absoluteExpiresAt);
    await Promise.all([opts.store.touch(sid, ttl), opts.index?.touch(sid, ttl, now)]);
    return now + ttl;
  };

  return {
    /** Awaited by routes that report the expiry; returns the new end of the session. */
    touchNow,
    /** Fire-and-forget on the proxy path: a failed touch is retried by the next request. */
    maybeTouch(sid: string, absoluteExpiresAt: number): void {
      if (touchedRecently.has(sid)) return;
      touchNow(sid, absoluteExpiresAt).catch((err: unknown) => {
        touchedRecently.delete(sid);
        opts.onError?.(err);
      });
    },
    forget(sid: string): void {
      touchedRecently.delete(sid);
    },
  };
}

export type IdleToucher = ReturnType<typeof createIdleToucher>;
