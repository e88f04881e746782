/**
 * The session lifecycle and the stores behind it, in-process: what ending a session drops, the
 * TTL rules, and that every store's Redis failure reaches the one error counter.
 */
import { describe, expect, it } from '@jest/globals';
import { Redis } from 'ioredis';
import type { AuthDialect } from '../src/auth/dialect.js';
import { StoreError } from '../src/errors.js';
import { createIdleToucher } from '../src/core/idle-touch.js';
import { createLoginThrottle } from '../src/core/login-throttle.js';
import { createRefresher } from '../src/core/refresh.js';
import { createSessionLifecycle, sessionTimeouts, type SessionLifecycle } from '../src/core/session-lifecycle.js';
import { createTokenSealer } from '../src/core/token-crypto.js';
import { createTokenVault } from '../src/core/token-vault.js';
import { createBackends } from '../src/store/backends.js';
import { newSessionId } from '../src/store/keys.js';
import { createMemoryTokenStore } from '../src/store/memory-token-store.js';
import type { TokenStore } from '../src/store/token-store.js';
import { freePort } from '../scripts/redis-server.js';

const IDLE_MS = 30 * 60_000;
const ABSOLUTE_MS = 8 * 3600_000;
const TOKENS = { accessToken: 'access-1', refreshToken: 'refresh-1', expiresInSeconds: 3600 };

function setUp(dialect?: AuthDialect) {
  let now = 1_000_000;
  const clock = () => now;
  const memory = createMemoryTokenStore(clock);
  const touches: string[] = [];
  const store: TokenStore = { ...memory, touch: async (sid, ttlMs) => { touches.push(sid); await memory.touch(sid, ttlMs); } };
  const timeouts = sessionTimeouts(IDLE_MS, ABSOLUTE_MS);
  const vault = createTokenVault(store, createTokenSealer([Buffer.alloc(32, 1)]), clock, 60_000);
  const toucher = createIdleToucher({ store, timeouts, intervalMs: 60_000, clock });
  const sessions = createSessionLifecycle({ store, vault, toucher, timeouts, clock });
  const refresher = dialect ? createRefresher({ vault, sessions, dialect, clock, leaseMs: 5000 }) : null;
  return { vault, toucher, sessions, refresher, touches, advance: (ms: number) => (now += ms), clock };
}

async function started(sessions: SessionLifecycle): Promise<string> {
  const sid = newSessionId();
  await sessions.start(sid, { tokens: TOKENS, clientId: 'client-1' });
  return sid;
}

describe('session lifecycle', () => {
  it('ending_a_session_drops_its_tokens_hint_idle_touch_cache_and_runs_registered_cleanups', async () => {
    const { vault, toucher, sessions, touches } = setUp();
    const locallyEnded: string[] = [];
    const ended: string[] = [];
    sessions.onLocalEnd((sid) => locallyEnded.push(sid));
    sessions.onEnd(async (sid) => {
      ended.push(sid);
    });
    const sid = await started(sessions);
    const tokens = await vault.read(sid);
    expect(tokens?.accessToken).toBe('access-1');
    toucher.maybeTouch(sid, tokens?.absoluteExpiresAt ?? 0);
    toucher.maybeTouch(sid, tokens?.absoluteExpiresAt ?? 0);
    expect(touches).toEqual([sid]); // throttled: once per interval
    expect(vault.hint(sid)).toBeDefined();

    await sessions.end(sid);

    expect(await vault.read(sid)).toBeNull();
    expect(vault.hint(sid)).toBeUndefined();
    toucher.maybeTouch(sid, tokens?.absoluteExpiresAt ?? 0);
    expect(touches).toEqual([sid, sid]); // the idle-touch entry went with the session
    expect(locallyEnded).toEqual([sid]);
    expect(ended).toEqual([sid]);
  });

  it('a_refused_refresh_ends_the_session_and_drops_its_local_caches', async () => {
    const refusing: AuthDialect = { refresh: async () => ({ kind: 'refused' }) };
    const { vault, toucher, sessions, refresher, touches } = setUp(refusing);
    const sid = await started(sessions);
    const tokens = await vault.read(sid);
    if (!tokens || !refresher) throw new Error('not started');
    toucher.maybeTouch(sid, tokens.absoluteExpiresAt);

    expect(await refresher.refreshTokensOnce(sid, tokens)).toEqual({ kind: 'ended' });

    expect(await vault.read(sid)).toBeNull();
    expect(vault.hint(sid)).toBeUndefined();
    toucher.maybeTouch(sid, tokens.absoluteExpiresAt);
    expect(touches).toEqual([sid, sid]);
  });

  it('session_keys_live_for_the_idle_timeout_capped_by_the_absolute_end', () => {
    const t = sessionTimeouts(IDLE_MS, ABSOLUTE_MS);
    const cases: [now: number, absoluteExpiresAt: number, ttl: number][] = [
      [0, ABSOLUTE_MS, IDLE_MS],
      [ABSOLUTE_MS - 1000, ABSOLUTE_MS, 1000],
      [0, t.absoluteEnd(0), IDLE_MS],
    ];
    for (const [now, end, ttl] of cases) expect(t.ttlAt(now, end)).toBe(ttl);
    expect(sessionTimeouts(60_000, 10_000).ttlAt(0, sessionTimeouts(60_000, 10_000).absoluteEnd(0))).toBe(10_000);
  });

  it('the_idle_touch_is_sent_again_once_the_interval_has_passed', async () => {
    const { toucher, sessions, touches, advance, clock } = setUp();
    const sid = await started(sessions);
    toucher.maybeTouch(sid, clock() + ABSOLUTE_MS);
    advance(59_000);
    toucher.maybeTouch(sid, clock() + ABSOLUTE_MS);
    expect(touches).toHaveLength(1);
    advance(2_000);
    toucher.maybeTouch(sid, clock() + ABSOLUTE_MS);
    expect(touches).toHaveLength(2);
  });
});

describe('store backends', () => {
  it('every_store_reports_each_redis_failure_to_the_one_counter_and_throws_store_error', async () => {
    // Nothing listens there and nothing is retried: every command fails at once.
    const redis = new Redis(await freePort(), '127.0.0.1', { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null });
    redis.on('error', () => undefined);
    const failures: unknown[] = [];
    const backends = createBackends({ redis, clock: Date.now, timeouts: sessionTimeouts(IDLE_MS, ABSOLUTE_MS), onRedisError: (err) => failures.push(err) });
    try {
      const sid = newSessionId();
      const recordGet = new Promise<unknown>((resolve) => backends.sessionRecords.get(sid, (err) => resolve(err)));
      const attempts: Promise<unknown>[] = [
        backends.tokens.readTokens(sid),
        backends.oidc.takeAttempt('some-state'),
        createLoginThrottle(backends.throttle, 5).reserve('a@example.com', '127.0.0.1'),
      ];
      for (const attempt of attempts) await expect(attempt).rejects.toBeInstanceOf(StoreError);
      expect(await recordGet).toBeInstanceOf(StoreError);
      expect(failures).toHaveLength(4);
    } finally {
      backends.close();
      redis.disconnect();
    }
  });
});
