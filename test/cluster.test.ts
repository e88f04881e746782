/**
 * Redis Cluster, for real: three redis-servers in cluster mode, each on its own free port, and
 * cloakroom configured with REDIS_CLUSTER_NODES. The contract's topology promises: every key of
 * one session carries one hash tag while sessions spread over the shards; the refresh is still
 * single-flight across instances; `/readyz` means `cluster_state:ok`; a cluster that is down is
 * an outage like any other (fast 503), and service resumes by itself.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Redis } from 'ioredis';
import request from 'supertest';
import { startFakeOidc } from '../scripts/fake-oidc.js';
import { startCluster, type RedisServer } from '../scripts/redis-server.js';
import { DEMO, startHarness, type Harness, type Instance, closeExpectingNoLeaks } from './support/harness.js';

let h: Harness;
let cluster: { nodes: RedisServer[]; stop(): Promise<void> };
let a: Instance;
let b: Instance;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Keys and string values on each node, read over a plain connection per node. */
async function nodeContents(): Promise<{ port: number; keys: string[]; values: string[] }[]> {
  return Promise.all(
    cluster.nodes.map(async (n) => {
      const c = new Redis(n.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
      try {
        const keys = (await c.keys('*')).sort();
        const values: string[] = [];
        for (const k of keys) if ((await c.type(k)) === 'string') values.push((await c.get(k)) ?? '');
        return { port: n.port, keys, values };
      } finally {
        c.disconnect();
      }
    }),
  );
}

const tagOf = (key: string) => /\{([^}]+)\}/.exec(key)?.[1];

/** Signs in on `instance`; the session cookie as a browser sends it back. */
async function signIn(instance: Instance): Promise<string> {
  const res = await request(instance.url).post('/auth/login').set('X-CSRF', '1').send(DEMO);
  expect(res.status).toBe(200);
  const set = ([] as string[]).concat(res.headers['set-cookie'] ?? []);
  const cookie = set[0]?.split(';')[0];
  if (!cookie) throw new Error('no session cookie');
  return cookie;
}
const api = (instance: Instance, cookie: string) => request(instance.url).get('/api/data').set('X-CSRF', '1').set('Cookie', cookie);
const sidOf = (cookie: string) => tagOf(decodeURIComponent(cookie));

beforeAll(async () => {
  h = await startHarness();
  cluster = await startCluster({ masters: 3, nodeTimeoutMs: 1000 });
  const env = { REDIS_URL: '', REDIS_CLUSTER_NODES: cluster.nodes.map((n) => `127.0.0.1:${n.port}`).join(','), REFRESH_SKEW: '0' };
  a = await h.start(env);
  b = await h.start(env);
}, 60_000);

afterAll(async () => {
  // Browser bytes and logs through the harness; Redis values here, on the cluster's own nodes.
  try {
    const tokens = h.upstream.issuedTokens().filter((t) => t.length >= 16);
    const values = (await nodeContents()).flatMap((n) => n.values);
    expect(tokens.filter((t) => values.some((v) => v.includes(t)))).toEqual([]);
    await closeExpectingNoLeaks(h);
  } finally {
    await cluster?.stop();
  }
});

describe('Redis Cluster', () => {
  it('keeps_every_key_of_a_session_on_one_shard_and_spreads_sessions_over_the_shards', async () => {
    const cookies = [];
    for (let i = 0; i < 12; i++) cookies.push(await signIn(i % 2 ? a : b));
    // Each session has its media token cached too, so it owns several keys.
    for (const cookie of cookies) {
      const link = await request(a.url).get('/links/download').query({ path: '/api/public/billing/invoices/1/pdf' }).set('Cookie', cookie);
      expect(link.status).toBe(302);
    }
    const contents = await nodeContents();
    const shardsOfTag = new Map<string, Set<number>>();
    for (const node of contents) {
      for (const key of node.keys.filter((k) => k.startsWith('cr:sess:') || k.startsWith('cr:tok:') || k.startsWith('cr:media:'))) {
        const tag = tagOf(key);
        expect(tag).toBeDefined();
        const set = shardsOfTag.get(tag as string) ?? new Set<number>();
        set.add(node.port);
        shardsOfTag.set(tag as string, set);
      }
    }
    for (const cookie of cookies) expect(shardsOfTag.has(sidOf(cookie) ?? '')).toBe(true);
    for (const [, shards] of shardsOfTag) expect(shards.size).toBe(1);
    const shardsUsed = new Set([...shardsOfTag.values()].flatMap((s) => [...s]));
    expect(shardsUsed.size).toBeGreaterThanOrEqual(2);
  });

  it('refreshes_once_for_50_concurrent_requests_across_two_instances_and_keeps_the_live_refresh_token', async () => {
    h.upstream.accessTokenTtlSeconds = 1;
    try {
      const cookie = await signIn(a);
      for (let round = 0; round < 2; round++) {
        await sleep(1200);
        const before = h.upstream.stats.refreshGrants;
        const statuses = await Promise.all(Array.from({ length: 50 }, (_, i) => api(i % 2 ? a : b, cookie).then((r) => r.status)));
        expect(statuses.filter((s) => s === 200)).toHaveLength(50);
        // The second round refreshes with the token the first one stored: it must be the live one.
        expect(h.upstream.stats.refreshGrants - before).toBe(1);
      }
    } finally {
      h.upstream.accessTokenTtlSeconds = 3600;
    }
  });

  it('runs_oidc_sign_in_and_back_channel_logout_on_the_cluster', async () => {
    const idp = await startFakeOidc({ upstream: h.upstream });
    try {
      const nodes = cluster.nodes.map((n) => `127.0.0.1:${n.port}`).join(',');
      const instance = await h.start({
        REDIS_URL: '',
        REDIS_CLUSTER_NODES: nodes,
        AUTH_MODE: 'oidc',
        OIDC_ISSUER: idp.issuer,
        OIDC_CLIENT_ID: idp.clientId,
        OIDC_REDIRECT_URI: 'https://app.example.test/auth/callback',
      });
      const browser = request.agent(instance.url);
      const start = await browser.get('/auth/login');
      const atIdp = await fetch(start.headers.location as string, { redirect: 'manual' });
      const back = new URL(atIdp.headers.get('location') ?? '');
      const callback = `${back.pathname}${back.search}`;
      expect((await browser.get(callback)).status).toBe(302);
      // Single use on the cluster too.
      expect((await browser.get(callback)).body.error).toBe('invalid_state');
      expect((await browser.get('/api/data').set('X-CSRF', '1')).status).toBe(200);
      const logout = await request(instance.url)
        .post('/auth/backchannel-logout')
        .type('form')
        .send({ logout_token: await idp.logoutToken({ sid: idp.lastSid as string, sub: idp.subjectOf('demo@example.com') }) });
      expect(logout.status).toBe(200);
      expect((await browser.get('/api/data').set('X-CSRF', '1')).status).toBe(401);
    } finally {
      await idp.close();
    }
  });

  it('answers_fast_503_while_the_cluster_is_down_and_recovers_by_itself_when_the_shard_returns', async () => {
    const cookies = [];
    for (let i = 0; i < 6; i++) cookies.push(await signIn(a));
    expect((await request(a.url).get('/readyz')).status).toBe(200);
    const [down, ...up] = cluster.nodes as [RedisServer, ...RedisServer[]];
    // Sessions whose keys live on the shards that stay up must work again afterwards.
    const survivors = new Set((await nodeContents()).filter((n) => n.port !== down.port).flatMap((n) => n.keys.map(tagOf)));

    await down.stop();
    // The other nodes mark the cluster failed after the node timeout (1 s).
    const probe = new Redis(up[0]?.port ?? 0, '127.0.0.1', { maxRetriesPerRequest: 1 });
    try {
      for (let i = 0; i < 100 && !String(await probe.call('CLUSTER', 'INFO')).includes('cluster_state:fail'); i++) await sleep(50);
    } finally {
      probe.disconnect();
    }
    const ready = await request(a.url).get('/readyz');
    expect(ready.status).toBe(503);
    for (const cookie of cookies) {
      const started = Date.now();
      const res = await api(a, cookie);
      expect({ status: res.status, error: res.body.error }).toEqual({ status: 503, error: 'session_store_unavailable' });
      // Fast: CLUSTERDOWN is an answer, not a reason to retry until the command timeout (1 s).
      expect(Date.now() - started).toBeLessThan(900);
    }

    await down.start();
    let readyAgain = 0;
    for (let i = 0; i < 300 && readyAgain !== 200; i++) {
      readyAgain = (await request(a.url).get('/readyz')).status;
      if (readyAgain !== 200) await sleep(50);
    }
    expect(readyAgain).toBe(200);
    let checked = 0;
    for (const cookie of cookies) {
      if (!survivors.has(sidOf(cookie))) continue; // the restarted shard kept nothing (no persistence)
      let status = 0;
      for (let i = 0; i < 40 && status !== 200; i++) {
        status = (await api(b, cookie)).status;
        if (status !== 200) await sleep(50);
      }
      expect(status).toBe(200);
      checked++;
    }
    expect(checked).toBeGreaterThan(0);
    // A sign-in works on the recovered cluster, whichever shard the new session lands on.
    // On the other instance too, whose connections met the outage on their own: until it has
    // found the shard again it may still answer the contract's 503, nothing else.
    const back = Date.now();
    const outcomes: number[] = [];
    while (outcomes.at(-1) !== 200 && Date.now() - back < 15_000) {
      outcomes.push((await request(b.url).post('/auth/login').set('X-CSRF', '1').send(DEMO)).status);
      if (outcomes.at(-1) !== 200) await sleep(100);
    }
    expect(outcomes.at(-1)).toBe(200);
    expect(outcomes.filter((s) => s !== 200 && s !== 503)).toEqual([]);
  }, 45_000);
});
