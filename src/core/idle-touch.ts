import { LRUCache } from 'lru-cache';
import type { TokenStore } from '../store/token-store.js';
import type { SessionTimeouts } from './session-lifecycle.js';

/**
 * Extends a session's idle timeout at most once per interval per session and instance, so
 * the proxy path stays at one Redis command per request. The session may therefore end up
 * to one interval earlier than "last request + idle timeout"; the docs say so.
 */
export function createIdleToucher(opts: {
  store: TokenStore;
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
    await opts.store.touch(sid, ttl);
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
