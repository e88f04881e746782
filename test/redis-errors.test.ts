/**
 * Every store's Redis failure is counted in cloakroom_redis_errors_total, whichever store it
 * came from: the login throttle and the OIDC sign-in store as well as the token and session stores.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { startFakeOidc, type FakeOidc } from '../scripts/fake-oidc.js';
import { DEMO, startHarness, type Harness, type Instance, closeExpectingNoLeaks } from './support/harness.js';

let h: Harness;
let idp: FakeOidc;
let password: Instance;
let oidc: Instance;

beforeAll(async () => {
  h = await startHarness({ persistRedis: true });
  idp = await startFakeOidc({ upstream: h.upstream, clientSecret: 'provider-secret' });
  password = await h.start();
  oidc = await h.start({
    AUTH_MODE: 'oidc',
    OIDC_ISSUER: idp.issuer,
    OIDC_CLIENT_ID: idp.clientId,
    OIDC_CLIENT_SECRET: 'provider-secret',
    OIDC_REDIRECT_URI: 'https://app.example.test/auth/callback',
  });
  // The provider's metadata is fetched once Redis is still up, so only the store can fail below.
  expect((await request(oidc.url).get('/auth/login')).status).toBe(302);
}, 30_000);
afterAll(async () => {
  await closeExpectingNoLeaks(h);
  await idp.close();
});

/** Failures counted for one part of cloakroom (the `part` label). */
const redisErrors = async (i: Instance, part: string): Promise<number> =>
  (await i.cloakroom.metrics.redisErrors.get()).values.filter((v) => v.labels.part === part).reduce((n, v) => n + v.value, 0);

describe('redis errors metric', () => {
  it('login_throttle_and_oidc_store_failures_answer_503_and_are_counted', async () => {
    await h.redis.stop();
    try {
      const before = await redisErrors(password, 'throttle');
      const login = await request(password.url).post('/auth/login').set('X-CSRF', '1').send(DEMO);
      expect(login.status).toBe(503);
      expect(login.body.error).toBe('session_store_unavailable');
      expect(await redisErrors(password, 'throttle')).toBeGreaterThan(before);

      const oidcBefore = await redisErrors(oidc, 'oidc');
      const start = await request(oidc.url).get('/auth/login');
      expect(start.status).toBe(503);
      expect(start.body.error).toBe('session_store_unavailable');
      expect(await redisErrors(oidc, 'oidc')).toBeGreaterThan(oidcBefore);
    } finally {
      await h.redis.start();
    }
  });
});
