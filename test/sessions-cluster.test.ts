/**
 * The per-user index and reseal on the test Cluster (three masters): a user's sessions sit on
 * several shards while the index has its own tag, lists and deletes work across two instances,
 * sign-out everywhere spares other users, and reseal walks every master.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Redis } from 'ioredis';
import request from 'supertest';
import { startCluster, type RedisServer } from '../scripts/redis-server.js';
import { DEMO, closeExpectingNoLeaks, startHarness, type Harness, type Instance } from './support/harness.js';
import { resealWhileRefreshing } from './support/reseal-scenario.js';

const OTHER = { email: 'other@example.com', password: 'other-password' } as const;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let h: Harness;
let cluster: { nodes: RedisServer[]; stop(): Promise<void> };
let env: Record<string, string>;
let a: Instance;
let b: Instance;

async function onEveryNode<T>(fn: (c: Redis) => Promise<T>): Promise<T[]> {
  return Promise.all(
    cluster.nodes.map(async (n) => {
      const c = new Redis(n.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
      try {
        return await fn(c);
      } finally {
        c.disconnect();
      }
    }),
  );
}

async function signIn(instance: Instance, who: { email: string; password: string } = DEMO): Promise<string> {
  const res = await request(instance.url).post('/auth/login').set('X-CSRF', '1').set('User-Agent', 'cluster-test').send(who);
  expect(res.status).toBe(200);
  return ([] as string[]).concat(res.headers['set-cookie'] ?? [])[0]?.split(';')[0] ?? '';
}
const api = (instance: Instance, cookie: string) => request(instance.url).get('/api/data').set('X-CSRF', '1').set('Cookie', cookie);
const listed = async (instance: Instance, cookie: string) => ((await request(instance.url).get('/auth/sessions').set('Cookie', cookie)).body as { sessions: { id: string; current: boolean }[] }).sessions;

async function eventually401(instance: Instance, cookie: string): Promise<void> {
  const started = Date.now();
  while ((await api(instance, cookie)).status !== 401) {
    if (Date.now() - started > 3000) throw new Error('session still answers after 3 s');
    await sleep(20);
  }
}

beforeAll(async () => {
  h = await startHarness();
  cluster = await startCluster({ masters: 3 });
  env = { REDIS_URL: '', REDIS_CLUSTER_NODES: cluster.nodes.map((n) => `127.0.0.1:${n.port}`).join(',') };
  a = await h.start(env);
  b = await h.start(env);
}, 60_000);

afterAll(async () => {
  try {
    const tokens = h.upstream.issuedTokens().filter((t) => t.length >= 16);
    const values = (
      await onEveryNode(async (c) => {
        const out: string[] = [];
        for (const k of await c.keys('*')) {
          const type = await c.type(k);
          if (type === 'string') out.push((await c.get(k)) ?? '');
          if (type === 'hash') out.push(JSON.stringify(await c.hgetall(k)));
        }
        return out;
      })
    ).flat();
    expect(tokens.filter((t) => values.some((v) => v.includes(t)))).toEqual([]);
    await closeExpectingNoLeaks(h);
  } finally {
    await cluster?.stop();
  }
});

describe('sessions on a Cluster', () => {
  it('a_users_sessions_spread_over_shards_are_listed_and_deleted_across_instances', async () => {
    const cookies: string[] = [];
    for (let i = 0; i < 8; i++) cookies.push(await signIn(i % 2 ? a : b));
    // The sessions' keys sit on more than one shard; the user's index is one key pair on one.
    const perNode = await onEveryNode(async (c) => ({ devices: (await c.keys('cr:dev:*')).length, index: (await c.keys('cr:{u:*')).length }));
    expect(perNode.filter((n) => n.devices > 0).length).toBeGreaterThan(1);
    expect(perNode.filter((n) => n.index > 0)).toHaveLength(1);

    const list = await listed(a, cookies[0] ?? '');
    expect(list).toHaveLength(8);
    const victim = (await listed(b, cookies[3] ?? '')).find((s) => s.current)?.id ?? '';
    expect((await api(b, cookies[3] ?? '')).status).toBe(200);
    expect((await request(a.url).delete(`/auth/sessions/${victim}`).set('X-CSRF', '1').set('Cookie', cookies[0] ?? '')).status).toBe(204);
    await eventually401(b, cookies[3] ?? '');
    expect(await listed(b, cookies[1] ?? '')).toHaveLength(7);
  });

  it('sign_out_everywhere_on_a_cluster_ends_every_session_of_the_user_and_spares_others', async () => {
    const mine = [await signIn(a), await signIn(b), await signIn(a)];
    const other = await signIn(b, OTHER);
    const res = await request(b.url).post('/auth/logout').set('X-CSRF', '1').set('Cookie', mine[0] ?? '').send({ everywhere: true });
    expect(res.status).toBe(204);
    for (const c of mine) {
      await eventually401(a, c);
      await eventually401(b, c);
    }
    expect((await api(a, other)).status).toBe(200);
    expect(await listed(a, other)).toHaveLength(1);
  });

  it('reseal_walks_every_master_while_refreshes_run_and_the_old_key_can_go', async () => {
    // Start from a store with no sessions of earlier tests (they are sealed under the old key too).
    await onEveryNode((c) => c.flushall());
    await resealWhileRefreshing(h, {
      env,
      sessions: 30,
      tokenRecords: async () => (await onEveryNode(async (c) => Promise.all((await c.keys('cr:tok:*')).map(async (k) => (await c.get(k)) ?? '')))).flat(),
    });
  }, 90_000);
});
