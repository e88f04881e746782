/**
 * Redis Sentinel, for real: a master, a replica and a sentinel (redis-server in sentinel mode),
 * each on its own free port, and cloakroom configured with REDIS_SENTINELS. The master is
 * killed; the contract says that while the failover lasts every route answers a fast 503
 * `session_store_unavailable`, that service resumes by itself within 15 s of the promotion, and
 * (the promise behind it all) that nobody is logged out.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Redis } from 'ioredis';
import request from 'supertest';
import { startRedisServer, startSentinel, type RedisServer } from '../scripts/redis-server.js';
import { DEMO, startHarness, type Harness, type Instance, closeExpectingNoLeaks } from './support/harness.js';

const NAME = 'cloakroom-test';
let h: Harness;
let master: RedisServer;
let replica: RedisServer;
let sentinel: { port: number; stop(): Promise<void> };
let sentinelClient: Redis;
let app: Instance;
let other: Instance;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(50);
  }
}

/**
 * Once service is back, the next answers may still meet the failover's tail (ioredis settling
 * on the new master): the contract's 503 is allowed for a short while, nothing else is.
 */
async function settled(what: string, call: () => Promise<{ status: number; body: unknown }>): Promise<{ status: number; body: unknown }> {
  for (let i = 0; i < 40; i++) {
    const res = await call();
    if (res.status !== 503) return res;
    await sleep(50);
  }
  throw new Error(`${what}: still 503 two seconds after service was back`);
}

/** Status and a few details when it is not the one expected. */
const described = (res: { status: number; body: unknown }) => `${res.status} ${res.status === 200 ? '' : `${JSON.stringify(res.body).slice(0, 100)} ${h.logs.slice(-3).join(' || ')}`}`;

const masterPort = async (): Promise<number> => {
  const [, port] = (await sentinelClient.call('SENTINEL', 'get-master-addr-by-name', NAME)) as [string, string];
  return Number(port);
};

beforeAll(async () => {
  h = await startHarness();
  master = await startRedisServer();
  replica = await startRedisServer({ args: ['--replicaof', '127.0.0.1', String(master.port)] });
  const replicaInfo = new Redis(replica.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
  await until('replica in sync', 10_000, async () => ((await replicaInfo.info('replication')).includes('master_link_status:up') ? true : undefined));
  replicaInfo.disconnect();
  sentinel = await startSentinel({ masterPort: master.port, name: NAME, downAfterMs: 1000 });
  sentinelClient = new Redis(sentinel.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
  // The sentinel learns about the replica from the master's INFO before it can promote it.
  await until('sentinel sees the replica', 15_000, async () => {
    const replicas = (await sentinelClient.call('SENTINEL', 'replicas', NAME)) as string[][];
    return replicas.some((r) => r.includes(String(replica.port)) && !r.join(' ').includes('s_down')) ? true : undefined;
  });
  app = await h.start({ REDIS_URL: '', REDIS_SENTINELS: `127.0.0.1:${sentinel.port}`, REDIS_SENTINEL_NAME: NAME });
  other = await h.start({ REDIS_URL: '', REDIS_SENTINELS: `127.0.0.1:${sentinel.port}`, REDIS_SENTINEL_NAME: NAME });
}, 60_000);

afterAll(async () => {
  sentinelClient?.disconnect();
  await closeExpectingNoLeaks(h);
  await sentinel?.stop();
  await Promise.all([master?.stop(), replica?.stop()]);
});

describe('Redis Sentinel failover', () => {
  it('master_killed_gives_fast_503_then_the_same_session_works_on_the_promoted_replica_within_15_s', async () => {
    const agent = await h.signIn(app);
    expect(described(await agent.get('/api/echo/before').set('X-CSRF', '1'))).toMatch(/^200 /);

    // A refresh: the rotated tokens are stored, then one replica is asked to acknowledge them.
    h.upstream.expireAllAccessTokens();
    h.upstream.reset();
    const monitorBase = new Redis(master.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
    const monitor = await monitorBase.monitor();
    const commands: string[] = [];
    monitor.on('monitor', (_t: string, args: string[], source: string) => {
      if (source !== 'lua') commands.push(args.map(String).join(' ').toLowerCase());
    });
    expect(described(await agent.get('/api/echo/refreshed').set('X-CSRF', '1'))).toMatch(/^200 /);
    await sleep(50);
    monitor.disconnect();
    monitorBase.disconnect();
    expect(h.upstream.stats.refreshGrants).toBe(1);
    const cas = commands.findIndex((c) => c.startsWith('eval ') && c.includes("redis.call('set', keys[1], argv[2], 'keepttl')"));
    expect(cas).toBeGreaterThanOrEqual(0);
    expect(commands.slice(cas + 1).some((c) => /^wait 1 \d+$/.test(c))).toBe(true);

    // Everything written so far has reached the replica (what a short pause does in production).
    const toMaster = new Redis(master.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
    expect(Number(await toMaster.call('WAIT', '1', '2000'))).toBe(1);
    toMaster.disconnect();
    // Redis never holds a token in clear text, on the replica either.
    const onReplica = new Redis(replica.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
    const values = await Promise.all((await onReplica.keys('cr:*')).map(async (k) => `${k}=${(await onReplica.get(k).catch(() => '')) ?? ''}`));
    onReplica.disconnect();
    expect(values.length).toBeGreaterThanOrEqual(2);
    for (const token of h.upstream.issuedTokens().filter((t) => t.length >= 16)) for (const v of values) expect(v).not.toContain(token);

    await master.stop(); // SIGKILL
    const killedAt = Date.now();

    // While the failover lasts: fast 503s, the process up, not ready.
    const during = [
      () => agent.get('/api/echo/during').set('X-CSRF', '1'),
      () => agent.get('/auth/session'),
      () => request(app.url).post('/auth/login').set('X-CSRF', '1').send(DEMO),
    ];
    for (const call of during) {
      const t0 = Date.now();
      const res = await call();
      expect(res.status).toBe(503);
      expect(res.body).toEqual({ error: 'session_store_unavailable', message: expect.any(String) });
      expect(Date.now() - t0).toBeLessThan(1500);
    }
    expect((await request(app.url).get('/healthz')).status).toBe(200);
    expect((await request(app.url).get('/readyz')).status).toBe(503);

    const promotedAt = await until('promotion', 30_000, async () => ((await masterPort()) === replica.port ? Date.now() : undefined));
    const seen: string[] = [];
    const resumedAt = await until(`service resumed (answers seen: ${'${seen}'})`, 20_000, async () => {
      const res = await agent.get('/api/echo/after').set('X-CSRF', '1');
      if (res.status === 200) return Date.now();
      const what = `${res.status} ${(res.body as { error?: string }).error ?? ''}`;
      if (seen.at(-1) !== what) seen.push(what);
      return undefined;
    }).catch(async (err: unknown) => {
      const client = app.redisClient as Redis;
      const probe = await client.get('x').then((v) => `ok ${v}`, (e: Error) => `err ${e.message}`);
      const stream = (client as unknown as { stream?: { remotePort?: number } }).stream;
      throw new Error(`${String(err)}; answers while waiting: ${seen.join(', ')}; client ${client.status} port ${stream?.remotePort} get: ${probe}; logs: ${h.logs.slice(-5).join(' || ')}`);
    });
    // Nothing but the contract's 503 while it came back; never a logout.
    expect(seen.filter((x) => x !== '503 session_store_unavailable')).toEqual([]);
    expect(resumedAt - promotedAt).toBeLessThan(15_000);
    // The same session: the failover logged nobody out.
    expect((await settled('session', () => agent.get('/auth/session'))).body).toMatchObject({ authenticated: true });
    expect((await settled('readyz', () => request(app.url).get('/readyz'))).status).toBe(200);
    // Writes go to the new master: a new sign-in works.
    expect(described(await settled('sign-in', () => request(app.url).post('/auth/login').set('X-CSRF', '1').send(DEMO)))).toMatch(/^200 /);
    // The refresh token rotated before the failover is the one the promoted replica holds:
    // the next refresh is accepted (upstream refuses a used one).
    h.upstream.expireAllAccessTokens();
    h.upstream.reset();
    expect(described(await settled('refresh', () => agent.get('/api/echo/refreshed-again').set('X-CSRF', '1')))).toMatch(/^200 /);
    expect(h.upstream.stats.refreshGrants).toBe(1);
    process.stdout.write(
      `sentinel figures: promotion ${promotedAt - killedAt} ms after the master died; service back ${resumedAt - promotedAt} ms after the promotion; ended connections revived: ${h.logs.filter((l) => l.includes('connecting again')).length}\n`,
    );
  }, 60_000);

  it('after_the_promotion_the_token_cache_is_back_on_the_new_master_and_exact_across_instances', async () => {
    const store = (i: Instance) => i.cloakroom.store as { cacheEnabled?: boolean };
    await until('cache on again', 10_000, async () => (store(app).cacheEnabled && store(other).cacheEnabled ? true : undefined));
    const onNew = new Redis(replica.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
    try {
      const gets = async () => Number(/cmdstat_get:calls=(\d+)/.exec(String(await onNew.info('commandstats')))?.[1] ?? 0);
      const agent = await settled('sign-in', () => request(app.url).post('/auth/login').set('X-CSRF', '1').send(DEMO));
      const cookie = ([] as string[]).concat((agent as { headers?: Record<string, string | string[]> }).headers?.['set-cookie'] ?? [])[0]?.split(';')[0] ?? '';
      expect(cookie).not.toBe('');
      const call = (i: Instance) => request(i.url).get('/api/echo/cached').set('X-CSRF', '1').set('Cookie', cookie);
      expect((await call(app)).status).toBe(200);
      await sleep(30); // the first request's idle-timeout touch invalidates once
      expect((await call(app)).status).toBe(200);
      const before = await gets();
      for (let i = 0; i < 10; i++) expect((await call(app)).status).toBe(200);
      expect((await gets()) - before).toBe(0);
      // A logout on the other instance reaches this one's cache on the new master.
      expect((await request(other.url).post('/auth/logout').set('X-CSRF', '1').set('Cookie', cookie)).status).toBe(204);
      await sleep(20);
      expect((await call(app)).status).toBe(401);
    } finally {
      onNew.disconnect();
    }
  });
});
