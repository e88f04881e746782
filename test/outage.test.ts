import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { DEMO, startHarness, type Harness, type Instance, closeExpectingNoLeaks } from './support/harness.js';

let h: Harness;
let app: Instance;

beforeAll(async () => {
  h = await startHarness({ persistRedis: true });
  app = await h.start();
});
afterAll(() => closeExpectingNoLeaks(h));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('session store outage', () => {
  it('redis_down_gives_fast_503_everywhere_keeps_the_session_and_recovers_without_restart', async () => {
    const agent = await h.signIn(app);
    await agent.get('/api/echo/before').set('X-CSRF', '1').expect(200);

    await h.redis.stop(); // SIGTERM: Redis writes its data and exits, like a restart
    const started = Date.now();
    const checks = [
      agent.get('/api/echo/during').set('X-CSRF', '1'),
      agent.get('/auth/session'),
      request(app.url).post('/auth/login').set('X-CSRF', '1').send(DEMO),
      agent.post('/auth/logout').set('X-CSRF', '1'),
    ];
    for (const check of checks) {
      const t0 = Date.now();
      const res = await check;
      expect(res.status).toBe(503);
      expect(res.body).toEqual({ error: 'session_store_unavailable', message: expect.any(String) });
      expect(Date.now() - t0).toBeLessThan(1000);
    }
    expect((await request(app.url).get('/healthz')).status).toBe(200);
    expect((await request(app.url).get('/readyz')).status).toBe(503);
    const detectMs = Date.now() - started;

    await h.redis.start();
    const back = Date.now();
    let recoveredMs = -1;
    while (Date.now() - back < 5000) {
      const res = await agent.get('/api/echo/after').set('X-CSRF', '1');
      if (res.status === 200) {
        recoveredMs = Date.now() - back;
        break;
      }
      expect(res.status).toBe(503);
      await sleep(50);
    }
    expect(recoveredMs).toBeGreaterThanOrEqual(0);
    // The same session, not a new one: the outage logged nobody out.
    expect((await agent.get('/auth/session')).body.authenticated).toBe(true);
    expect((await request(app.url).get('/readyz')).status).toBe(200);
    process.stdout.write(`outage figures: four 503 checks took ${detectMs} ms in all; recovered ${recoveredMs} ms after redis-server started\n`);
  });
});
