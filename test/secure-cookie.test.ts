import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { DEMO, startHarness, type Harness, type Instance, closeExpectingNoLeaks } from './support/harness.js';

let h: Harness;
let app: Instance;

beforeAll(async () => {
  h = await startHarness();
  // Production defaults: secure cookies; TLS ends at a load balancer that is not trusted.
  app = await h.start({ COOKIE_SECURE: 'true' });
});
afterAll(() => closeExpectingNoLeaks(h));

describe('secure cookies', () => {
  it('login_with_secure_cookies_sets_a_host_prefixed_secure_cookie_that_works', async () => {
    const res = await request(app.url).post('/auth/login').set('X-CSRF', '1').send(DEMO);
    expect(res.status).toBe(200);
    const set = (res.headers['set-cookie'] as unknown as string[] | undefined) ?? [];
    const cookie = set.find((c) => c.startsWith('__Host-bff.sid='));
    expect(cookie).toBeDefined();
    expect(cookie).toMatch(/; Secure/);
    expect(cookie).toMatch(/; Path=\//);
    expect(cookie).not.toMatch(/Domain=/);
    const pair = (cookie ?? '').split(';')[0] ?? '';
    const session = await request(app.url).get('/auth/session').set('Cookie', pair);
    expect(session.body.authenticated).toBe(true);
    const api = await request(app.url).get('/api/echo/x').set('Cookie', pair).set('X-CSRF', '1');
    expect(api.status).toBe(200);
  });

  it('a_plain_bff_sid_cookie_is_ignored_when_cookies_are_secure', async () => {
    const res = await request(app.url).post('/auth/login').set('X-CSRF', '1').send(DEMO);
    const set = (res.headers['set-cookie'] as unknown as string[] | undefined) ?? [];
    const value = (set.find((c) => c.startsWith('__Host-bff.sid=')) ?? '').split(';')[0]?.split('=')[1] ?? '';
    const api = await request(app.url).get('/api/echo/x').set('Cookie', `bff.sid=${value}`).set('X-CSRF', '1');
    expect(api.status).toBe(401);
  });
});
