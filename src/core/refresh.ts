import { randomUUID } from 'node:crypto';
import type { AuthDialect } from '../auth/dialect.js';
import type { TokenStore } from '../store/token-store.js';
import type { UpstreamFailure } from '../upstream/client.js';
import type { SessionTokens, TokenVault } from './token-vault.js';

/** Duende-style result the callers switch on; a store failure is thrown (StoreError). */
export type FreshTokens =
  | { kind: 'ok'; tokens: SessionTokens }
  | { kind: 'ended' }
  | { kind: 'failed'; failure: UpstreamFailure };

export interface RefreshDeps {
  vault: TokenVault;
  store: TokenStore;
  dialect: AuthDialect;
  clock: () => number;
  /** Longer than the slowest upstream refresh can take, so a lease never ends mid-refresh. */
  leaseMs: number;
  pollMs?: number;
  onRefresh?: (outcome: 'ok' | 'refused' | 'failed') => void;
  onLockError?: (err: unknown) => void;
}

export interface Refresher {
  /** Refreshes unless `seen` is already superseded; one upstream call per session across every instance. */
  refreshTokensOnce(sid: string, seen: SessionTokens): Promise<FreshTokens>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function createRefresher(deps: RefreshDeps): Refresher {
  const { vault, store, dialect, clock, leaseMs } = deps;
  const pollMs = deps.pollMs ?? 20;
  // First de-duplication: concurrent requests of one session in this process share one attempt.
  const inflight = new Map<string, Promise<FreshTokens>>();

  const refreshHoldingLock = async (sid: string, seen: SessionTokens): Promise<FreshTokens> => {
    // Re-read under the lock: another instance may have refreshed while we queued for it.
    const current = await vault.read(sid, { fresh: true });
    if (!current) return { kind: 'ended' };
    if (current.version !== seen.version) return { kind: 'ok', tokens: current };
    if (!current.refreshToken) return { kind: 'ended' };

    const outcome = await dialect.refresh(current.refreshToken, current.clientId);
    if (outcome.kind === 'refused') {
      deps.onRefresh?.('refused');
      await store.destroy(sid);
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

  const attempt = async (sid: string, seen: SessionTokens): Promise<FreshTokens> => {
    const deadline = clock() + leaseMs;
    for (;;) {
      const owner = randomUUID();
      if (await store.acquireLock(sid, owner, leaseMs)) {
        try {
          return await refreshHoldingLock(sid, seen);
        } finally {
          await store.releaseLock(sid, owner).catch((err: unknown) => deps.onLockError?.(err));
        }
      }
      // Another instance holds the lock: wait for its tokens instead of refreshing again,
      // woken by the store's change notification where it has one, else by the poll interval.
      await (store.changed ? store.changed(sid, pollMs) : sleep(pollMs));
      const current = await vault.read(sid, { fresh: true });
      if (!current) return { kind: 'ended' };
      if (current.version !== seen.version) return { kind: 'ok', tokens: current };
      if (clock() > deadline) return { kind: 'failed', failure: 'timeout' };
    }
  };

  return {
    refreshTokensOnce(sid, seen) {
      const running = inflight.get(sid);
      if (running) return running;
      const started = attempt(sid, seen).finally(() => inflight.delete(sid));
      inflight.set(sid, started);
      return started;
    },
  };
}
