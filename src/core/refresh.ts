import { randomUUID } from 'node:crypto';
import type { AuthDialect } from '../auth/dialect.js';
import type { UpstreamFailure } from '../upstream/client.js';
import type { SessionLifecycle } from './session-lifecycle.js';
import type { SessionTokens, TokenVault } from './token-vault.js';

/** Duende-style result the callers switch on; a store failure is thrown (StoreError). */
export type FreshTokens =
  | { kind: 'ok'; tokens: SessionTokens }
  | { kind: 'ended' }
  /** No session record (or none this process can open) when the refresh was claimed. */
  | { kind: 'gone' }
  /** `cause`: the transport error or unexpected answer (no token in it), for the request's warn line. */
  | { kind: 'failed'; failure: UpstreamFailure; cause?: unknown };

/** Another holder kept the lock past our lease (another instance's refresh, slow or gone): what the 504 logs. */
function lockWaitTimedOut(waitedMs: number): Error {
  return Object.assign(new Error(`waited ${waitedMs} ms for the refresh another request holds`), { code: 'REFRESH_LOCK_WAIT_TIMEOUT' });
}

export interface RefreshDeps {
  vault: TokenVault;
  /** A refused refresh ends the session: every key and every local cache. */
  sessions: Pick<SessionLifecycle, 'end'>;
  dialect: AuthDialect;
  clock: () => number;
  /** Longer than the slowest upstream refresh can take, so a lease never ends mid-refresh. */
  leaseMs: number;
  pollMs?: number;
  onRefresh?: (outcome: 'ok' | 'refused' | 'failed') => void;
  onLockError?: (err: unknown) => void;
  /** Seconds an attempt waited before it held the lock or had another holder's tokens (the lock-wait histogram). */
  onLockWait?: (seconds: number) => void;
  /** Runs one refresh attempt inside a trace span (src/tracing.ts); absent when tracing is off. */
  span?: <T>(run: () => Promise<T>) => Promise<T>;
}

export interface Refresher {
  /**
   * Refreshes unless `seen` is already superseded; one upstream call per session across every
   * instance. `requestId`: the request that asked; requests that join an attempt already under
   * way share its upstream call, which carries the id of the request that started it.
   */
  refreshTokensOnce(sid: string, seen: Pick<SessionTokens, 'version'>, requestId?: string): Promise<FreshTokens>;
}

export function createRefresher(deps: RefreshDeps): Refresher {
  const { vault, sessions, dialect, clock, leaseMs } = deps;
  const pollMs = deps.pollMs ?? 20;
  // First de-duplication: concurrent requests of one session in this process share one attempt.
  const inflight = new Map<string, Promise<FreshTokens>>();

  // `current` was read in the same round trip that took the lock, so it is the stored state.
  const refreshHoldingLock = async (sid: string, current: SessionTokens, requestId: string | undefined): Promise<FreshTokens> => {
    if (!current.refreshToken) return { kind: 'ended' };
    const outcome = await dialect.refresh(current.refreshToken, current.clientId, requestId);
    if (outcome.kind === 'refused') {
      deps.onRefresh?.('refused');
      await sessions.end(sid);
      return { kind: 'ended' };
    }
    if (outcome.kind === 'failed') {
      deps.onRefresh?.('failed');
      return outcome;
    }
    deps.onRefresh?.('ok');
    const { outcome: written, tokens } = await vault.rotate(sid, current, outcome.tokens);
    if (written === 'ok') return { kind: 'ok', tokens };
    if (written === 'gone') return { kind: 'ended' };
    // Only possible if our lease ran out mid-refresh: the stored tokens are the newest.
    const newest = await vault.read(sid, { fresh: true });
    return newest ? { kind: 'ok', tokens: newest } : { kind: 'ended' };
  };

  /*
   * Every Redis round trip here waits for its turn in an event loop that is also taking in the
   * burst of requests that found the token due, so the path to the upstream call and back has
   * as few as the rules allow: one claim (lock attempt + fresh read, vault.claim) before
   * it, one compare-and-set after it. The release is sent, not waited for, before the waiters
   * get their tokens.
   */
  const attempt = async (sid: string, seen: Pick<SessionTokens, 'version'>, requestId: string | undefined): Promise<FreshTokens> => {
    const deadline = clock() + leaseMs;
    const waitStarted = performance.now();
    const waited = (): number => {
      const seconds = (performance.now() - waitStarted) / 1000;
      deps.onLockWait?.(seconds);
      return seconds;
    };
    for (;;) {
      const owner = randomUUID();
      const { locked, tokens: current } = await vault.claim(sid, owner, leaseMs, seen.version);
      if (locked) {
        waited();
        try {
          return current ? await refreshHoldingLock(sid, current, requestId) : { kind: 'gone' };
        } finally {
          vault.release(sid, owner).catch((err: unknown) => deps.onLockError?.(err));
        }
      }
      if (!current) return { kind: 'gone' };
      // Refreshed already, here or on another instance: use those tokens.
      if (current.version !== seen.version) {
        waited();
        return { kind: 'ok', tokens: current };
      }
      if (clock() > deadline) return { kind: 'failed', failure: 'timeout', cause: lockWaitTimedOut(Math.round(waited() * 1000)) };
      // Another instance holds the lock: wait for its tokens instead of refreshing again,
      // woken by the store's change notification where it has one, else by the poll interval.
      await vault.changed(sid, pollMs);
    }
  };

  return {
    refreshTokensOnce(sid, seen, requestId) {
      const running = inflight.get(sid);
      if (running) return running;
      const run = () => attempt(sid, seen, requestId);
      const started = (deps.span ? deps.span(run) : run()).finally(() => inflight.delete(sid));
      inflight.set(sid, started);
      return started;
    },
  };
}
