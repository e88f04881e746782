import type { TokenStore } from '../store/token-store.js';

/**
 * Extends a session's idle timeout at most once per interval per session and instance, so
 * the proxy path stays at one Redis command per request. The session may therefore end up
 * to one interval earlier than "last request + idle timeout"; the docs say so.
 */
export function createIdleToucher(opts: {
  store: TokenStore;
  idleMs: number;
  intervalMs: number;
  clock: () => number;
  maxEntries?: number;
  onError?: (err: unknown) => void;
}) {
  const maxEntries = opts.maxEntries ?? 100_000;
  const lastTouched = new Map<string, number>();

  const touchNow = async (sid: string, absoluteExpiresAt: number): Promise<number> => {
    const now = opts.clock();
    lastTouched.delete(sid);
    lastTouched.set(sid, now);
    if (lastTouched.size > maxEntries) {
      const oldest = lastTouched.keys().next().value;
      if (oldest !== undefined) lastTouched.delete(oldest);
    }
    const ttl = Math.min(opts.idleMs, absoluteExpiresAt - now);
    await opts.store.touch(sid, ttl);
    return now + ttl;
  };

  return {
    /** Awaited by routes that report the expiry; returns the new end of the session. */
    touchNow,
    /** Fire-and-forget on the proxy path: a failed touch is retried by the next request. */
    maybeTouch(sid: string, absoluteExpiresAt: number): void {
      const last = lastTouched.get(sid);
      if (last !== undefined && opts.clock() - last < opts.intervalMs) return;
      touchNow(sid, absoluteExpiresAt).catch((err: unknown) => {
        lastTouched.delete(sid);
        opts.onError?.(err);
      });
    },
    forget(sid: string): void {
      lastTouched.delete(sid);
    },
  };
}

export type IdleToucher = ReturnType<typeof createIdleToucher>;
