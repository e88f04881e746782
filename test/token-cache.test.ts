import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { startHarness, type Harness, type Instance, closeExpectingNoLeaks } from './support/harness.js';

let h: Harness;
let a: Instance;
let b: Instance;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function cacheOn(i: Instance): Promise<void> {
  const store = i.cloakroom.store as { cacheEnabled?: boolean };
  const until = Date.now() + 3000;
  while (!store.cacheEnabled) {
    if (Date.now() > until) throw new Error('token cache never turned on');
    await sleep(20);
  }
}

async function getCalls(): Promise<number> {
  const stats = String(await h.inspect.info('commandstats'));
  return Number(/cmdstat_get:calls=(\d+)/.exec(stats)?.[1] ?? 0);
}

const cookieOf = (agent: ReturnType<typeof request.agent>): string => {
  const jar = (agent as unknown as { jar: { getCookies(o: object): { toValueString(): string }[] } }).jar;
  return jar.getCookies({ domain: '127.0.0.1', path: '/', secure: false, script: false }).map((c) => c.toValueString()).join('; ');
};

beforeAll(async () => {
  h = await startHarness();
  a = await h.start();
  b = await h.start();
  await Promise.all([cacheOn(a), cacheOn(b)]);
});
afterAll(() => closeExpectingNoLeaks(h));

describe('tracked token cache', () => {
  it('repeated_api_calls_of_one_session_read_redis_once', async () => {
    const agent = await h.signIn(a);
    const cookie = cookieOf(agent);
    // The first request on B also extends the idle timeout (PEXPIRE), which is a write and
    // invalidates the entry once; the steady state starts after it (one touch a minute).
    await request(b.url).get('/api/echo/1').set('Cookie', cookie).set('X-CSRF', '1').expect(200);
    await sleep(20);
    await request(b.url).get('/api/echo/2').set('Cookie', cookie).set('X-CSRF', '1').expect(200);
    const before = await getCalls();
    for (let i = 0; i < 20; i++) await request(b.url).get(`/api/echo/${i}`).set('Cookie', cookie).set('X-CSRF', '1').expect(200);
    expect((await getCalls()) - before).toBe(0);
  });

  it('a_burst_on_a_session_the_instance_has_not_cached_sends_one_get_not_one_per_request', async () => {
    const agent = await h.signIn(a);
    const cookie = cookieOf(agent);
    const before = await getCalls();
    // Redis holds its answers for a moment (shorter than the cache's 250 ms health check),
    // so all 40 requests are waiting for the session's token record at once.
    h.redis.pause();
    const burst = Promise.all(
      Array.from({ length: 40 }, (_, i) => fetch(`${b.url}/api/echo/burst-${i}`, { headers: { cookie, 'x-csrf': '1' } }).then((r) => r.status)),
    );
    await sleep(120);
    h.redis.resume();
    expect(await burst).toEqual(Array.from({ length: 40 }, () => 200));
    expect((await getCalls()) - before).toBeLessThanOrEqual(2);
  });

  it('logout_on_one_instance_ends_the_session_on_another_that_had_it_cached', async () => {
    const agent = await h.signIn(a);
    const cookie = cookieOf(agent);
    await request(b.url).get('/api/echo/x').set('Cookie', cookie).set('X-CSRF', '1').expect(200);
    await request(b.url).get('/api/echo/x').set('Cookie', cookie).set('X-CSRF', '1').expect(200);
    await agent.post('/auth/logout').set('X-CSRF', '1').expect(204);
    await sleep(20); // the invalidation is one message on an open connection
    const res = await request(b.url).get('/api/echo/x').set('Cookie', cookie).set('X-CSRF', '1');
    expect(res.status).toBe(401);
    expect(res.body.error).toBe('unauthenticated');
  });

  it('tokens_refreshed_on_one_instance_are_used_by_another_that_had_the_old_ones_cached', async () => {
    const agent = await h.signIn(a);
    const cookie = cookieOf(agent);
    await request(b.url).get('/api/echo/warm').set('Cookie', cookie).set('X-CSRF', '1').expect(200);
    h.upstream.expireAllAccessTokens();
    h.upstream.reset();
    await request(a.url).get('/api/echo/refresh').set('Cookie', cookie).set('X-CSRF', '1').expect(200);
    await sleep(20);
    const res = await request(b.url).get('/api/echo/after').set('Cookie', cookie).set('X-CSRF', '1');
    expect(res.status).toBe(200);
    // B used the new token straight away: no upstream 401 and no second refresh.
    expect(h.upstream.stats.refreshGrants).toBe(1);
    const statuses = h.upstream.requests.filter((r) => r.url === '/api/echo/after');
    expect(statuses).toHaveLength(1);
  });

  it('a_hung_redis_turns_the_cache_off_and_cached_sessions_get_503', async () => {
    const agent = await h.signIn(a);
    const cookie = cookieOf(agent);
    await request(a.url).get('/api/echo/x').set('Cookie', cookie).set('X-CSRF', '1').expect(200);
    h.redis.pause();
    try {
      await sleep(700); // two health intervals
      expect((a.cloakroom.store as { cacheEnabled?: boolean }).cacheEnabled).toBe(false);
      const t0 = Date.now();
      const res = await request(a.url).get('/api/echo/x').set('Cookie', cookie).set('X-CSRF', '1');
      expect(res.status).toBe(503);
      expect(res.body.error).toBe('session_store_unavailable');
      expect(Date.now() - t0).toBeLessThan(1500);
    } finally {
      h.redis.resume();
    }
    await cacheOn(a);
    await request(a.url).get('/api/echo/x').set('Cookie', cookie).set('X-CSRF', '1').expect(200);
  });
});

describe('tracked token cache after Redis restarts', () => {
  it('after_a_redis_restart_the_cache_comes_back_with_tracking_and_a_logout_still_reaches_every_instance', async () => {
    await h.redis.stop();
    await sleep(300);
    expect((b.cloakroom.store as { cacheEnabled?: boolean }).cacheEnabled).toBe(false);
    await h.redis.start();
    await Promise.all([cacheOn(a), cacheOn(b)]);
    await sleep(600); // several health checks: the cache must stay on only with tracking in place

    const agent = await h.signIn(a);
    const cookie = cookieOf(agent);
    await request(b.url).get('/api/echo/1').set('Cookie', cookie).set('X-CSRF', '1').expect(200);
    await sleep(20);
    await request(b.url).get('/api/echo/2').set('Cookie', cookie).set('X-CSRF', '1').expect(200);
    await agent.post('/auth/logout').set('X-CSRF', '1').expect(204);
    await sleep(20);
    const res = await request(b.url).get('/api/echo/3').set('Cookie', cookie).set('X-CSRF', '1');
    expect(res.status).toBe(401);
  });
});
