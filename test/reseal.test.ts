/**
 * `cloakroom reseal` on a real redis-server while two instances refresh every session: no
 * refresh fails, no rotated refresh token is lost, a second run reseals nothing, and once the
 * old key is removed every session still works. (The same on the test Cluster:
 * test/sessions-cluster.test.ts.)
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Redis } from 'ioredis';
import { createTokenSealer } from '../src/core/token-crypto.js';
import { createTokenVault, type SessionTokens } from '../src/core/token-vault.js';
import { newSessionId } from '../src/store/keys.js';
import { createRedisTokenStore } from '../src/store/redis-token-store.js';
import { resealTokenRecords } from '../src/store/reseal.js';
import { closeExpectingNoLeaks, startHarness, type Harness } from './support/harness.js';
import { resealWhileRefreshing } from './support/reseal-scenario.js';

let h: Harness;

beforeAll(async () => {
  h = await startHarness();
}, 30_000);

afterAll(async () => {
  await closeExpectingNoLeaks(h);
});

describe('cloakroom reseal', () => {
  it('reseal_while_refreshes_run_loses_no_rotated_refresh_token_and_the_old_key_can_go', async () => {
    await resealWhileRefreshing(h, {
      env: { REDIS_URL: `redis://127.0.0.1:${h.redis.port}` },
      sessions: 60,
      tokenRecords: async () => {
        const keys = await h.inspect.keys('cr:tok:*');
        return Promise.all(keys.map(async (k) => (await h.inspect.get(k)) ?? ''));
      },
    });
  }, 60_000);
});

describe('the reseal compare-and-set', () => {
  it('a_refresh_landing_between_the_reseal_read_and_its_write_wins_and_its_tokens_stay', async () => {
    const OLD = Buffer.alloc(32, 3);
    const NEW = Buffer.alloc(32, 4);
    // A database of its own: the other test's records are sealed under keys this one does not hold.
    const client = new Redis({ port: h.redis.port, host: '127.0.0.1', db: 3 });
    try {
      const store = createRedisTokenStore(client);
      const before = createTokenVault(store, createTokenSealer([OLD]), Date.now, 0);
      const after = createTokenVault(store, createTokenSealer([NEW, OLD]), Date.now, 0);
      const sids = Array.from({ length: 5 }, () => newSessionId());
      const firsts: SessionTokens[] = [];
      for (const sid of sids) {
        firsts.push(await before.create(sid, { tokens: { accessToken: `a0-${sid}`, refreshToken: `r0-${sid}`, expiresInSeconds: 3600 }, clientId: 'c', absoluteExpiresAt: Date.now() + 60_000 }, 60_000));
      }
      // The reseal's writes are held back until every session has refreshed meanwhile.
      let raced = false;
      const racing = new Proxy(client, {
        get(target, prop) {
          if (prop === 'pipeline') {
            return (cmds?: unknown[][]) => {
              const pipeline = target.pipeline(cmds as string[][]);
              if (raced || cmds?.[0]?.[0] !== 'evalsha') return pipeline;
              raced = true;
              return {
                exec: async () => {
                  for (const [i, sid] of sids.entries()) {
                    const rotated = await after.rotate(sid, firsts[i] as SessionTokens, { accessToken: `a1-${sid}`, refreshToken: `r1-${sid}`, expiresInSeconds: 3600 });
                    expect(rotated.outcome).toBe('ok');
                  }
                  return pipeline.exec();
                },
              };
            };
          }
          const value: unknown = Reflect.get(target, prop);
          return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
        },
      });
      const counts = await resealTokenRecords(racing, createTokenSealer([NEW, OLD]));
      expect(raced).toBe(true);
      expect(counts).toEqual({ scanned: 5, resealed: 0, skipped: 5, unreadable: 0 });
      for (const sid of sids) expect((await after.read(sid, { fresh: true }))?.refreshToken).toBe(`r1-${sid}`);
      for (const sid of sids) await store.destroy(sid);
    } finally {
      client.disconnect();
    }
  });
});
