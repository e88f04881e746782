/**
 * The tracked token cache on a real Redis Cluster (three masters, one replica each): one
 * tracking connection per master, kept exact across instances, off for a node whose tracking
 * connection is gone, and back after a replica has taken over a killed master.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Redis } from 'ioredis';
import request from 'supertest';
import { startCluster, type RedisServer } from '../scripts/redis-server.js';
import { keySlot } from '../src/store/cluster-tracking.js';
import type { TrackedTokenStore } from '../src/store/tracked-token-store.js';
import { DEMO, startHarness, type Harness, type Instance, closeExpectingNoLeaks } from './support/harness.js';

let h: Harness;
let cluster: { nodes: RedisServer[]; replicas: RedisServer[]; stop(): Promise<void> };
let a: Instance;
let b: Instance;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const storeOf = (i: Instance) => i.cloakroom.store as TrackedTokenStore;

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await Promise.resolve(probe()).catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(25);
  }
}
const cacheOn = (i: Instance, timeoutMs = 5000) => until('token cache on', timeoutMs, () => (storeOf(i).cacheEnabled ? true : undefined));

async function signIn(instance: Instance): Promise<string> {
  const res = await request(instance.url).post('/auth/login').set('X-CSRF', '1').send(DEMO);
  expect(res.status).toBe(200);
  const cookie = ([] as string[]).concat(res.headers['set-cookie'] ?? [])[0]?.split(';')[0];
  if (!cookie) throw new Error('no session cookie');
  return cookie;
}
const api = (i: Instance, cookie: string, path = '/api/echo/x') => request(i.url).get(path).set('X-CSRF', '1').set('Cookie', cookie);
const sidOf = (cookie: string) => /(\{[^}]+\})/.exec(decodeURIComponent(cookie))?.[1] ?? '';

/** The port of the master that holds the session's keys now (asked of the cluster itself). */
async function masterOf(cookie: string): Promise<number> {
  const slot = keySlot(`cr:tok:${sidOf(cookie)}`);
  for (const n of [...cluster.nodes, ...cluster.replicas]) {
    if (n.pid === undefined) continue;
    const c = new Redis(n.port, '127.0.0.1', { maxRetriesPerRequest: 1, lazyConnect: true });
    try {
      await c.connect();
      const slots = (await c.call('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
      const owner = slots.find(([from, to]) => slot >= from && slot <= to);
      if (owner) return Number(owner[2][1]);
    } finally {
      c.disconnect();
    }
  }
  throw new Error('no node answered CLUSTER SLOTS');
}

/** GET calls summed over every running node. */
async function getCalls(): Promise<number> {
  let total = 0;
  for (const n of [...cluster.nodes, ...cluster.replicas]) {
    if (n.pid === undefined) continue;
    const c = new Redis(n.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
    try {
      total += Number(/cmdstat_get:calls=(\d+)/.exec(String(await c.info('commandstats')))?.[1] ?? 0);
    } finally {
      c.disconnect();
    }
  }
  return total;
}

beforeAll(async () => {
  h = await startHarness();
  cluster = await startCluster({ masters: 3, replicasPerMaster: 1, nodeTimeoutMs: 1000 });
  const env = { REDIS_URL: '', REDIS_CLUSTER_NODES: cluster.nodes.map((n) => `127.0.0.1:${n.port}`).join(',') };
  a = await h.start(env);
  b = await h.start(env);
  await Promise.all([cacheOn(a), cacheOn(b)]);
}, 60_000);

afterAll(async () => {
  try {
    await closeExpectingNoLeaks(h);
  } finally {
    await cluster?.stop();
  }
});

describe('tracked token cache on a Redis Cluster', () => {
  it('keeps_one_tracking_connection_per_master', () => {
    expect(Object.keys(storeOf(a).trackingState()).sort()).toEqual(cluster.nodes.map((n) => `127.0.0.1:${n.port}`).sort());
    expect(Object.values(storeOf(a).trackingState())).toEqual([true, true, true]);
  });

  it('repeated_api_calls_after_warm_up_send_no_get_to_any_node', async () => {
    const cookies = [await signIn(a), await signIn(a), await signIn(a), await signIn(a)];
    // The first request on B also extends the idle timeout (a write, so one invalidation).
    for (const c of cookies) await api(b, c).expect(200);
    await sleep(30);
    for (const c of cookies) await api(b, c).expect(200);
    const before = await getCalls();
    for (let i = 0; i < 10; i++) for (const c of cookies) await api(b, c, `/api/echo/${i}`).expect(200);
    expect((await getCalls()) - before).toBe(0);
  });

  it('a_logout_on_one_instance_ends_the_session_at_once_on_another_that_had_it_cached', async () => {
    const cookie = await signIn(a);
    await api(b, cookie).expect(200);
    await api(b, cookie).expect(200);
    await request(a.url).post('/auth/logout').set('X-CSRF', '1').set('Cookie', cookie).expect(204);
    await sleep(20); // the invalidation is one message on an open connection
    const res = await api(b, cookie);
    expect({ status: res.status, error: res.body.error }).toEqual({ status: 401, error: 'unauthenticated' });
  });

  it('tokens_refreshed_on_one_instance_are_used_by_another_that_had_the_old_ones_cached', async () => {
    const cookie = await signIn(a);
    await api(b, cookie, '/api/echo/warm').expect(200);
    await api(b, cookie, '/api/echo/warm').expect(200);
    h.upstream.expireAllAccessTokens();
    h.upstream.reset();
    await api(a, cookie, '/api/echo/refresh').expect(200);
    await sleep(20);
    await api(b, cookie, '/api/echo/after').expect(200);
    // B sent the new token straight away: no upstream 401, no second refresh.
    expect(h.upstream.stats.refreshGrants).toBe(1);
    expect(h.upstream.requests.filter((r) => r.url === '/api/echo/after')).toHaveLength(1);
  });

  it('a_killed_tracking_connection_turns_the_cache_off_for_its_node_and_serves_nothing_stale', async () => {
    const cookie = await signIn(a);
    await api(b, cookie).expect(200);
    await sleep(30);
    await api(b, cookie).expect(200); // cached on B now
    const port = await masterOf(cookie);
    const node = `127.0.0.1:${port}`;
    const admin = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1 });
    // Watch B's tracker of that node from here on, every millisecond.
    const seen = new Set<boolean>();
    const watch = setInterval(() => seen.add(storeOf(b).trackingState()[node] ?? false), 1);
    try {
      // Every tracking connection of that node, B's included, is gone: its invalidations too.
      await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
      // The logout's DEL on that node is announced to nobody on B's side.
      await request(a.url).post('/auth/logout').set('X-CSRF', '1').set('Cookie', cookie).expect(204);
      // Tracking comes back on a new connection within a reconnect delay; what B held from
      // before (under a second old) must not come back with it.
      await until('tracker of the node back', 5000, () => (storeOf(b).trackingState()[node] ? true : undefined));
      const res = await api(b, cookie);
      expect({ status: res.status, error: res.body.error }).toEqual({ status: 401, error: 'unauthenticated' });
      await cacheOn(b);
    } finally {
      clearInterval(watch);
      admin.disconnect();
    }
    expect(seen.has(false)).toBe(true);
    // Back on: a new session is served from the cache again.
    const next = await signIn(a);
    await api(b, next).expect(200);
    await sleep(30);
    await api(b, next).expect(200);
    const before = await getCalls();
    for (let i = 0; i < 5; i++) await api(b, next).expect(200);
    expect((await getCalls()) - before).toBe(0);
  });

  it('after_a_replica_takes_over_a_killed_master_the_cache_comes_back_and_stays_exact', async () => {
    const cookie = await signIn(a);
    const port = await masterOf(cookie);
    const master = cluster.nodes.find((n) => n.port === port) as RedisServer;
    const replica = cluster.replicas[cluster.nodes.indexOf(master)] as RedisServer;
    const toMaster = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1 });
    expect(Number(await toMaster.call('WAIT', '1', '2000'))).toBe(1);
    toMaster.disconnect();
    await api(b, cookie).expect(200);

    await master.stop(); // SIGKILL
    const statuses: string[] = [];
    await until('service back', 20_000, async () => {
      const res = await api(b, cookie);
      const what = `${res.status} ${(res.body as { error?: string }).error ?? ''}`.trim();
      if (statuses.at(-1) !== what) statuses.push(what);
      return res.status === 200 ? true : undefined;
    });
    // Nothing but the contract's 503 while the replica took over; the session survived.
    expect(statuses.filter((s) => s !== '503 session_store_unavailable' && s !== '200')).toEqual([]);
    expect(await masterOf(cookie)).toBe(replica.port);
    // The promoted replica has a tracker, the dead master none, and the cache is on again.
    await until('trackers follow the new topology', 10_000, () => {
      const state = storeOf(b).trackingState();
      return state[`127.0.0.1:${replica.port}`] === true && !(`127.0.0.1:${port}` in state) ? true : undefined;
    });
    await cacheOn(b);
    await cacheOn(a, 10_000);
    await api(b, cookie).expect(200);
    await sleep(30);
    await api(b, cookie).expect(200);
    const before = await getCalls();
    for (let i = 0; i < 5; i++) await api(b, cookie).expect(200);
    expect((await getCalls()) - before).toBe(0);
    // Exact on the new master too.
    await request(a.url).post('/auth/logout').set('X-CSRF', '1').set('Cookie', cookie).expect(204);
    await sleep(20);
    expect((await api(b, cookie)).status).toBe(401);
  }, 45_000);
});
