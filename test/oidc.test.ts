/**
 * AUTH_MODE=oidc against a real (small) OpenID Connect provider in this process
 * (scripts/fake-oidc.ts): authorization code with PKCE, state and nonce bound to the browser,
 * refresh through the provider, the provider's logout URL, and Back-Channel Logout 1.0.
 * The provider's access tokens are minted by the fake upstream, so /api works with them.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { createHash } from 'node:crypto';
import request from 'supertest';
import { startFakeOidc, type FakeOidc, type LogoutTokenOptions } from '../scripts/fake-oidc.js';
import { freePort } from '../scripts/redis-server.js';
import { startHarness, type Harness, type Instance, closeExpectingNoLeaks } from './support/harness.js';

const REDIRECT_URI = 'https://app.example.test/auth/callback';
const POST_LOGOUT = 'https://app.example.test/signed-out';

let h: Harness;
let idp: FakeOidc;
let bareIdp: FakeOidc;
let app: Instance;
let other: Instance;
let noEndSession: Instance;

type Browser = ReturnType<typeof request.agent>;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const oidcEnv = (provider: FakeOidc) => ({
  AUTH_MODE: 'oidc',
  OIDC_ISSUER: provider.issuer,
  OIDC_CLIENT_ID: provider.clientId,
  OIDC_CLIENT_SECRET: 'provider-secret',
  OIDC_REDIRECT_URI: REDIRECT_URI,
  OIDC_POST_LOGOUT_REDIRECT_URI: POST_LOGOUT,
  REFRESH_SKEW: '0',
});

/** GET /auth/login in `browser`: the provider URL it was sent to. */
async function startSignIn(browser: Browser, returnTo?: string): Promise<URL> {
  const res = await browser.get('/auth/login').query(returnTo === undefined ? {} : { returnTo });
  expect(res.status).toBe(302);
  return new URL(res.headers.location as string);
}

/** What the provider does with the browser: signs it in and sends it back (path and query of the callback). */
async function atProvider(authorizeUrl: URL): Promise<string> {
  const res = await fetch(authorizeUrl, { redirect: 'manual' });
  expect(res.status).toBe(302);
  const back = new URL(res.headers.get('location') ?? '');
  expect(`${back.origin}${back.pathname}`).toBe(REDIRECT_URI);
  return `${back.pathname}${back.search}`;
}

async function signIn(instance: Instance): Promise<Browser> {
  const browser = request.agent(instance.url);
  const callback = await atProvider(await startSignIn(browser, '/after'));
  const done = await browser.get(callback);
  expect(done.status).toBe(302);
  return browser;
}

const api = (browser: Browser) => browser.get('/api/data').set('X-CSRF', '1');

beforeAll(async () => {
  h = await startHarness();
  idp = await startFakeOidcFor(h, true);
  bareIdp = await startFakeOidcFor(h, false);
  app = await h.start(oidcEnv(idp));
  other = await h.start(oidcEnv(idp));
  noEndSession = await h.start(oidcEnv(bareIdp));
}, 30_000);

async function startFakeOidcFor(harness: Harness, endSession: boolean): Promise<FakeOidc> {
  return startFakeOidc({ upstream: harness.upstream, clientSecret: 'provider-secret', endSession });
}

// Sign-in starts are limited per address (30 a minute) and every test here comes from 127.0.0.1:
// each test starts in a fresh minute, as far as the limiter knows.
beforeEach(async () => {
  const counts = await h.inspect.keys('cr:rl:start*');
  if (counts.length > 0) await h.inspect.del(...counts);
});

afterAll(async () => {
  await Promise.all([idp?.close(), bareIdp?.close()]);
  await closeExpectingNoLeaks(h);
});

describe('oidc sign-in', () => {
  it('redirects_to_the_provider_with_pkce_s256_state_and_nonce_and_completes_into_a_session', async () => {
    const browser = request.agent(app.url);
    const authorize = await startSignIn(browser, '/en/invoices?tab=open');
    expect(`${authorize.origin}${authorize.pathname}`).toBe(`${idp.issuer}/authorize`);
    const q = authorize.searchParams;
    expect(q.get('response_type')).toBe('code');
    expect(q.get('client_id')).toBe(idp.clientId);
    expect(q.get('redirect_uri')).toBe(REDIRECT_URI);
    expect(q.get('code_challenge_method')).toBe('S256');
    expect(q.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(q.get('state')).toBeTruthy();
    expect(q.get('nonce')).toBeTruthy();
    expect(q.get('scope')).toBe('openid profile email offline_access');
    expect(q.has('code_verifier')).toBe(false);

    const before = idp.stats.codeGrants;
    const done = await browser.get(await atProvider(authorize));
    // The provider checked the verifier against the challenge (it refuses a wrong one), and the
    // client secret, sent as HTTP Basic (the method every provider must support).
    expect(idp.stats.codeGrants).toBe(before + 1);
    expect(idp.lastClientAuth).toBe('basic');
    expect(done.status).toBe(302);
    expect(done.headers.location).toBe('/en/invoices?tab=open');
    const cookies = ([] as string[]).concat(done.headers['set-cookie'] ?? []);
    expect(cookies.some((c) => /^bff\.sid=/.test(c) && /HttpOnly/i.test(c))).toBe(true);

    const session = await browser.get('/auth/session');
    expect(session.body).toMatchObject({
      authenticated: true,
      user: { id: idp.subjectOf('demo@example.com'), email: 'demo@example.com', fullName: 'Demo User' },
    });
    expect((await api(browser)).status).toBe(200);
  });

  it('sends_returnTo_default_slash_and_refuses_a_returnTo_that_is_not_a_local_path', async () => {
    const browser = request.agent(app.url);
    const done = await browser.get(await atProvider(await startSignIn(browser)));
    expect(done.headers.location).toBe('/');
    for (const bad of ['//evil.example', 'https://evil.example/', '/\\evil.example']) {
      const res = await request(app.url).get('/auth/login').query({ returnTo: bad });
      expect({ status: res.status, error: res.body.error }).toEqual({ status: 400, error: 'invalid_redirect' });
    }
  });

  it('completes_sign_ins_started_in_several_tabs_of_one_browser_in_any_order', async () => {
    const browser = request.agent(app.url);
    const first = await startSignIn(browser, '/one');
    const second = await startSignIn(browser, '/two');
    const third = await startSignIn(browser, '/three');
    const callbacks = [await atProvider(first), await atProvider(second), await atProvider(third)];
    expect((await browser.get(callbacks[2] as string)).headers.location).toBe('/three');
    expect((await browser.get(callbacks[0] as string)).headers.location).toBe('/one');
    expect((await browser.get(callbacks[1] as string)).headers.location).toBe('/two');
    expect((await browser.get('/auth/session')).body.authenticated).toBe(true);
  });

  it('answers_invalid_state_for_a_replayed_unknown_or_missing_state_and_for_another_browser', async () => {
    const browser = request.agent(app.url);
    const callback = await atProvider(await startSignIn(browser));
    expect((await browser.get(callback)).status).toBe(302);
    const replayed = await browser.get(callback);
    expect({ status: replayed.status, error: replayed.body.error }).toEqual({ status: 400, error: 'invalid_state' });

    const unknown = await browser.get(callback.replace(/state=[^&]+/, 'state=not-a-state-we-issued'));
    expect(unknown.body.error).toBe('invalid_state');
    const missing = await browser.get(callback.replace(/state=[^&]+&?/, ''));
    expect(missing.body.error).toBe('invalid_state');

    // Started in one browser, finished in another (no binding cookie, or its own).
    const victim = request.agent(app.url);
    const stolen = await atProvider(await startSignIn(victim));
    const attacker = request.agent(app.url);
    expect((await attacker.get(stolen)).body.error).toBe('invalid_state');
    const attackerWithOwn = request.agent(app.url);
    await startSignIn(attackerWithOwn);
    const victim2 = request.agent(app.url);
    const stolen2 = await atProvider(await startSignIn(victim2));
    const res = await attackerWithOwn.get(stolen2);
    expect({ status: res.status, error: res.body.error }).toEqual({ status: 400, error: 'invalid_state' });
    expect((await attackerWithOwn.get('/auth/session')).body.authenticated).toBe(false);
  });

  it('takes_email_and_name_from_userinfo_when_the_id_token_lacks_them', async () => {
    idp.idTokenWithoutProfile = true;
    try {
      const before = idp.stats.userinfo;
      const browser = await signIn(app);
      expect(idp.stats.userinfo).toBe(before + 1);
      expect((await browser.get('/auth/session')).body.user).toEqual({ id: idp.subjectOf('demo@example.com'), email: 'demo@example.com', fullName: 'Demo User' });
    } finally {
      idp.idTokenWithoutProfile = false;
    }
  });

  it('signs_in_as_a_public_client_with_pkce_alone_when_no_client_secret_is_set', async () => {
    const publicIdp = await startFakeOidc({ upstream: h.upstream });
    try {
      const { OIDC_CLIENT_SECRET: _secret, ...env } = oidcEnv(publicIdp);
      const browser = await signIn(await h.start(env));
      expect(publicIdp.lastClientAuth).toBe('none');
      expect((await api(browser)).status).toBe(200);
    } finally {
      await publicIdp.close();
    }
  });

  it('has_no_password_sign_in_or_exchange_in_oidc_mode', async () => {
    const login = await request(app.url).post('/auth/login').set('X-CSRF', '1').send({ email: 'demo@example.com', password: 'demo-password' });
    expect({ status: login.status, error: login.body.error }).toEqual({ status: 404, error: 'not_found' });
    const exchange = await request(app.url).get('/auth/exchange').query({ t: 'x' });
    expect(exchange.status).toBe(404);
  });
});

describe('oidc faults', () => {
  it('starts_while_the_provider_is_down_and_answers_502_at_sign_in_until_it_is_reachable', async () => {
    const dead = await freePort();
    const instance = await h.start({ ...oidcEnv(idp), OIDC_ISSUER: `http://127.0.0.1:${dead}` });
    const res = await request(instance.url).get('/auth/login');
    expect({ status: res.status, error: res.body.error }).toEqual({ status: 502, error: 'upstream_unavailable' });
    expect((await request(instance.url).get('/healthz')).status).toBe(200);
  });

  it('answers_502_when_the_provider_fails_at_the_token_endpoint_and_keeps_the_session_on_a_failed_refresh', async () => {
    for (const fault of ['http500', 'garbage'] as const) {
      const browser = request.agent(app.url);
      const callback = await atProvider(await startSignIn(browser));
      idp.tokenFaults.push(fault);
      const res = await browser.get(callback);
      expect({ fault, status: res.status, error: res.body.error }).toEqual({ fault, status: 502, error: 'upstream_unavailable' });
    }
    idp.accessTokenTtlSeconds = 1;
    try {
      const browser = await signIn(app);
      await sleep(1200);
      idp.tokenFaults.push('http500');
      const failed = await api(browser);
      expect({ status: failed.status, error: failed.body.error }).toEqual({ status: 502, error: 'upstream_unavailable' });
      // Kept: the next request refreshes and goes through.
      expect((await api(browser)).status).toBe(200);
    } finally {
      idp.accessTokenTtlSeconds = 3600;
    }
  });

  it('answers_503_session_store_unavailable_at_sign_in_and_callback_while_redis_hangs', async () => {
    const browser = request.agent(app.url);
    const callback = await atProvider(await startSignIn(browser));
    h.redis.pause();
    try {
      for (const res of [await request(app.url).get('/auth/login'), await browser.get(callback)]) {
        expect({ status: res.status, error: res.body.error }).toEqual({ status: 503, error: 'session_store_unavailable' });
      }
    } finally {
      h.redis.resume();
    }
    // A hung Redis runs the callback's take when it wakes up, so that attempt is used up
    // (400 invalid_state, start again); a new sign-in works once Redis answers.
    let done = 0;
    for (let i = 0; i < 40 && done !== 302; i++) {
      const again = request.agent(app.url);
      const res = await startSignIn(again).then(atProvider).then((cb) => again.get(cb)).catch(() => ({ status: 0 }));
      done = res.status;
      if (done !== 302) await sleep(50);
    }
    expect(done).toBe(302);
    expect((await browser.get(callback)).body.error).toBe('invalid_state');
  });
});

describe('oidc refresh', () => {
  it('refreshes_once_through_the_provider_for_concurrent_requests_on_two_instances', async () => {
    idp.accessTokenTtlSeconds = 1;
    try {
      const browser = await signIn(app);
      const cookie = (await browser.get('/auth/session')).request.cookies;
      await sleep(1200);
      const before = idp.stats.refreshGrants;
      const statuses = await Promise.all(
        Array.from({ length: 30 }, (_, i) => request(i % 2 ? app.url : other.url).get('/api/data').set('X-CSRF', '1').set('Cookie', cookie).then((r) => r.status)),
      );
      expect(statuses.filter((s) => s === 200)).toHaveLength(30);
      expect(idp.stats.refreshGrants - before).toBe(1);
      // The rotated refresh token was stored: the next refresh is accepted too.
      await sleep(1200);
      expect((await api(browser)).status).toBe(200);
      expect(idp.stats.refreshGrants - before).toBe(2);
    } finally {
      idp.accessTokenTtlSeconds = 3600;
    }
  });

  it('sends_the_browser_request_id_to_the_provider_on_the_code_exchange_userinfo_and_the_refresh', async () => {
    idp.idTokenWithoutProfile = true;
    idp.accessTokenTtlSeconds = 1;
    try {
      const browser = request.agent(app.url);
      const callback = await atProvider(await startSignIn(browser));
      const seen = idp.calls.length;
      expect((await browser.get(callback).set('X-Request-Id', 'oidc-callback-1')).status).toBe(302);
      await sleep(1200);
      expect((await api(browser).set('X-Request-Id', 'oidc-refresh-1')).status).toBe(200);
      expect(idp.calls.slice(seen)).toEqual([
        { path: '/token', grant: 'authorization_code', requestId: 'oidc-callback-1' },
        { path: '/userinfo', grant: null, requestId: 'oidc-callback-1' },
        { path: '/token', grant: 'refresh_token', requestId: 'oidc-refresh-1' },
      ]);
    } finally {
      idp.idTokenWithoutProfile = false;
      idp.accessTokenTtlSeconds = 3600;
    }
  });

  it('ends_the_session_with_session_expired_when_the_provider_refuses_the_refresh', async () => {
    idp.accessTokenTtlSeconds = 1;
    try {
      const browser = await signIn(app);
      idp.revokeRefreshTokens();
      await sleep(1200);
      const res = await api(browser);
      expect({ status: res.status, error: res.body.error }).toEqual({ status: 401, error: 'session_expired' });
      expect((await browser.get('/auth/session')).body.authenticated).toBe(false);
    } finally {
      idp.accessTokenTtlSeconds = 3600;
    }
  });
});

describe('oidc logout', () => {
  it('answers_200_with_the_providers_logout_url_carrying_the_id_token_hint_and_ends_the_session', async () => {
    const browser = await signIn(app);
    const res = await browser.post('/auth/logout').set('X-CSRF', '1');
    expect(res.status).toBe(200);
    const url = new URL(res.body.logoutUrl as string);
    h.allowInBrowser(res.body.logoutUrl as string);
    expect(`${url.origin}${url.pathname}`).toBe(`${idp.issuer}/logout`);
    expect(url.searchParams.get('id_token_hint')?.split('.')).toHaveLength(3);
    expect(url.searchParams.get('post_logout_redirect_uri')).toBe(POST_LOGOUT);
    expect((await api(browser)).status).toBe(401);
    // Again, now without a session: 204.
    expect((await browser.post('/auth/logout').set('X-CSRF', '1')).status).toBe(204);
  });

  it('answers_204_when_the_provider_has_no_end_session_endpoint', async () => {
    const browser = await signIn(noEndSession);
    const res = await browser.post('/auth/logout').set('X-CSRF', '1');
    expect(res.status).toBe(204);
    expect((await api(browser)).status).toBe(401);
  });
});

describe('oidc back-channel logout', () => {
  const post = (instance: Instance, token: string | undefined) => {
    const r = request(instance.url).post('/auth/backchannel-logout').type('form');
    return r.send(token === undefined ? {} : { logout_token: token });
  };

  it('ends_every_session_of_the_provider_sid_and_leaves_the_others_without_an_anti_forgery_header', async () => {
    const first = await signIn(app);
    const firstSid = idp.lastSid;
    const second = await signIn(other);
    expect(idp.lastSid).not.toBe(firstSid);
    const res = await post(other, await idp.logoutToken({ sid: firstSid as string, sub: idp.subjectOf('demo@example.com') }));
    expect(res.status).toBe(200);
    expect((await api(first)).status).toBe(401);
    expect((await api(second)).status).toBe(200);
  });

  it('ends_every_session_of_the_subject_when_the_token_has_no_sid', async () => {
    idp.loginAs = 'other@example.com';
    try {
      const a = await signIn(app);
      const b = await signIn(other);
      idp.loginAs = 'demo@example.com';
      const demo = await signIn(app);
      const res = await post(app, await idp.logoutToken({ sub: idp.subjectOf('other@example.com') }));
      expect(res.status).toBe(200);
      expect((await api(a)).status).toBe(401);
      expect((await api(b)).status).toBe(401);
      expect((await api(demo)).status).toBe(200);
    } finally {
      idp.loginAs = 'demo@example.com';
    }
  });

  const flaws: NonNullable<LogoutTokenOptions['flaw']>[] = ['no-events', 'nonce', 'wrong-aud', 'wrong-iss', 'expired', 'alg-none', 'foreign-key', 'no-sub-or-sid', 'no-iat'];
  it.each(flaws)('refuses_a_logout_token_with_flaw_%s_as_invalid_request_and_ends_nothing', async (flaw) => {
    const browser = await signIn(app);
    const res = await post(app, await idp.logoutToken({ sid: idp.lastSid as string, sub: idp.subjectOf('demo@example.com'), flaw }));
    expect({ status: res.status, error: res.body.error }).toEqual({ status: 400, error: 'invalid_request' });
    expect((await api(browser)).status).toBe(200);
  });

  it('refuses_a_request_without_logout_token_or_with_garbage', async () => {
    for (const token of [undefined, '', 'not.a.jwt', 'x'.repeat(10_000)]) {
      const res = await post(app, token);
      expect({ status: res.status, error: res.body.error }).toEqual({ status: 400, error: 'invalid_request' });
    }
    // Over the 16 KB body limit of /auth/*, like any other form there.
    expect((await post(app, 'x'.repeat(20_000))).status).toBe(413);
  });
});

describe('oidc routes under hostile input', () => {
  it('never_answers_500_or_leaks_internals_for_random_queries_cookies_and_bodies', async () => {
    const fc = (await import('fast-check')).default;
    const browser = request.agent(app.url);
    await startSignIn(browser);
    const binding = ((await browser.get('/auth/login')).headers['set-cookie'] as unknown as string[])[0]?.split(';')[0] ?? '';
    const text = fc.string({ maxLength: 80, unit: 'binary' });
    const cases = fc.sample(
      fc.record({
        route: fc.constantFrom('/auth/login', '/auth/callback', '/auth/backchannel-logout'),
        query: fc.dictionary(fc.constantFrom('returnTo', 'state', 'code', 'iss', 'error', 'state[]', 'returnTo[x]'), text, { maxKeys: 4 }),
        cookie: fc.constantFrom('', binding, `${binding}x`, 'bff.sid-login=%', 'bff.sid-login=' + 'A'.repeat(43)),
        body: fc.oneof(fc.constant(undefined), fc.dictionary(fc.constantFrom('logout_token', 'x'), text, { maxKeys: 2 })),
      }),
      { numRuns: 400, seed: 42 },
    );
    const statuses = new Set<number>();
    for (const c of cases) {
      const q = new URLSearchParams(c.query).toString();
      const path = `${c.route}${q ? `?${q}` : ''}`;
      const req = c.route === '/auth/backchannel-logout' ? request(app.url).post(path).type('form').send(c.body ?? {}) : request(app.url).get(path);
      const res = await (c.cookie ? req.set('Cookie', c.cookie) : req);
      statuses.add(res.status);
      expect(res.status).not.toBe(500);
      if (res.status >= 400) {
        expect(res.headers['content-type']).toMatch(/application\/json/);
        expect(typeof res.body.error).toBe('string');
        expect(JSON.stringify(res.body)).not.toMatch(/at .+\.(js|ts):\d+|node_modules|\/work\//);
      }
    }
    // The generator reached the redirect, the refusals and the invalid-token answers.
    expect([...statuses].sort()).toEqual(expect.arrayContaining([302, 400]));
  });
});

describe('oidc sign-in starts are bounded', () => {
  const attemptKeyOf = (authorize: URL) =>
    `cr:oidc:att:${createHash('sha256').update(authorize.searchParams.get('state') ?? '').digest('base64url')}`;

  it('keeps_a_pending_attempt_well_under_1_kb_in_redis_with_a_2048_character_returnTo_and_completes_to_it', async () => {
    const returnTo = `/en/search?q=${'x'.repeat(2048 - '/en/search?q='.length)}`;
    expect(returnTo).toHaveLength(2048);
    const browser = request.agent(app.url);
    const authorize = await startSignIn(browser, returnTo);
    const key = attemptKeyOf(authorize);
    const bytes = Number(await h.inspect.strlen(key));
    const memory = Number(await h.inspect.call('MEMORY', 'USAGE', key));
    expect(bytes).toBeGreaterThan(0);
    expect(bytes).toBeLessThan(512);
    expect(memory).toBeLessThan(700);
    const done = await browser.get(await atProvider(authorize));
    expect(done.status).toBe(302);
    expect(done.headers.location).toBe(returnTo);
  });

  it('answers_invalid_state_when_the_returnTo_carried_in_state_is_swapped', async () => {
    const browser = request.agent(app.url);
    const authorize = await startSignIn(browser, '/mine');
    const state = authorize.searchParams.get('state') ?? '';
    const swapped = new URL(authorize);
    swapped.searchParams.set('state', `${state.split('.')[0]}.${Buffer.from('/elsewhere').toString('base64url')}`);
    const forged = await browser.get(await atProvider(swapped));
    expect({ status: forged.status, error: forged.body.error }).toEqual({ status: 400, error: 'invalid_state' });
    // The genuine attempt was not used up by the forgery.
    expect((await browser.get(await atProvider(authorize))).headers.location).toBe('/mine');
  });

  it('limits_sign_in_starts_per_client_address_with_429_rate_limited_and_retry_after', async () => {
    const first = await h.start({ ...oidcEnv(idp), TRUST_PROXY: 'loopback' });
    const second = await h.start({ ...oidcEnv(idp), TRUST_PROXY: 'loopback' });
    const from = (instance: Instance, address: string) => request(instance.url).get('/auth/login').set('X-Forwarded-For', address);
    // One count in Redis for every instance: 15 starts on each make the limit.
    for (let i = 0; i < 30; i++) expect((await from(i % 2 ? first : second, '203.0.113.7')).status).toBe(302);
    const refused = await from(first, '203.0.113.7');
    expect({ status: refused.status, error: refused.body.error }).toEqual({ status: 429, error: 'rate_limited' });
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(Number(refused.headers['retry-after'])).toBeLessThanOrEqual(60);
    expect(refused.headers['set-cookie']).toBeUndefined();
    expect((await from(second, '203.0.113.7')).status).toBe(429);
    // Per address: another client behind the same proxy still starts.
    expect((await from(second, '203.0.113.8')).status).toBe(302);
  });
});
