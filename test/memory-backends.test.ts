/** No REDIS_URL (development): every store is in-process, and a session lives and ends as with Redis. */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { DEMO, startHarness, type Harness, type Instance, closeExpectingNoLeaks } from './support/harness.js';

let h: Harness;
let app: Instance;

beforeAll(async () => {
  h = await startHarness();
  app = await h.start({ REDIS_URL: '' });
});
afterAll(() => closeExpectingNoLeaks(h));

describe('in-process backends', () => {
  it('sign_in_api_call_and_logout_work_without_redis_and_leave_nothing_in_redis', async () => {
    expect(app.redisClient).toBeNull();
    const agent = await h.signIn(app);
    await agent.get('/api/echo/one').set('X-CSRF', '1').expect(200);
    expect((await agent.get('/auth/session')).body.authenticated).toBe(true);
    await agent.post('/auth/logout').set('X-CSRF', '1').expect(204);
    expect((await agent.get('/api/echo/two').set('X-CSRF', '1')).status).toBe(401);
    expect(await h.inspect.keys('cr:*')).toEqual([]);
  });

  it('failed_sign_ins_are_counted_in_process', async () => {
    const who = { email: 'throttled@example.com', password: 'wrong' };
    const statuses: number[] = [];
    for (let i = 0; i < app.config.loginMaxFailures + 1; i += 1) {
      statuses.push((await request(app.url).post('/auth/login').set('X-CSRF', '1').send(who)).status);
    }
    expect(statuses.at(-1)).toBe(429);
    expect((await request(app.url).post('/auth/login').set('X-CSRF', '1').send(DEMO)).status).toBe(200);
  });
});
