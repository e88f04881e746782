import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { DEMO, startHarness, type Harness, type Instance, closeExpectingNoLeaks } from './support/harness.js';

let h: Harness;
let app: Instance;

beforeAll(async () => {
  h = await startHarness();
  app = await h.start({ AUTH_MODE: 'json' });
});
afterAll(() => closeExpectingNoLeaks(h));

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The `name=value` pair of the session cookie, for checks that need the session id. */
const cookieOf = (res: request.Response): string => {
  const set = (res.headers['set-cookie'] as unknown as string[] | undefined) ?? [];
  return (set.find((c) => c.startsWith(`${app.config.cookie.name}=`)) ?? '').split(';')[0] ?? '';
};
const sidOf = (cookie: string): string => {
  const value = decodeURIComponent(cookie.slice(cookie.indexOf('=') + 1));
  return value.slice(2, value.lastIndexOf('.'));
};

describe('AUTH_MODE=json login', () => {
  it('login_posts_json_username_and_password_to_the_login_path', async () => {
    h.upstream.reset();
    const res = await request(app.url).post('/auth/login').set('X-CSRF', '1').send(DEMO);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ authenticated: true, user: expect.objectContaining({ email: DEMO.email }) });
    expect(cookieOf(res)).not.toBe('');
    expect(h.upstream.stats.jsonLogins).toBe(1);
    expect(h.upstream.stats.passwordGrants).toBe(0);
    const [call] = h.upstream.requests.filter((r) => r.url === '/api/login');
    expect(call?.method).toBe('POST');
    expect(call?.headers['content-type']).toMatch(/^application\/json/);
    expect(JSON.parse(call?.body.toString('utf8') ?? 'null')).toEqual({ username: DEMO.email, password: DEMO.password });
  });

  it('login_as_form_post_is_still_sent_upstream_as_json', async () => {
    h.upstream.reset();
    const res = await request(app.url).post('/auth/login').set('X-CSRF', '1').type('form').send({ email: DEMO.email, password: DEMO.password });
    expect(res.status).toBe(200);
    const [call] = h.upstream.requests.filter((r) => r.url === '/api/login');
    expect(JSON.parse(call?.body.toString('utf8') ?? 'null')).toEqual({ username: DEMO.email, password: DEMO.password });
  });

  it('login_with_wrong_password_should_fail_with_invalid_grant', async () => {
    const res = await request(app.url).post('/auth/login').set('X-CSRF', '1').send({ email: 'other@example.com', password: 'wrong' });
    expect(res.status).toBe(401);
    expect(res.body).toEqual({ error: 'invalid_grant', message: expect.any(String) });
    expect(res.headers['set-cookie']).toBeUndefined();
  });

  it('login_of_unknown_user_should_fail_with_invalid_grant', async () => {
    const res = await request(app.url).post('/auth/login').set('X-CSRF', '1').send({ email: 'nobody@example.com', password: 'x' });
    expect(res.status).toBe(401);
    expect(res.body.error).toBe('invalid_grant');
  });

  it('exchange_in_json_mode_should_fail_with_not_found', async () => {
    const jwt = h.upstream.issueExchangeJwt(DEMO.email);
    h.upstream.reset();
    const res = await request(app.url).get(`/auth/exchange?t=${encodeURIComponent(jwt)}`);
    expect(res.status).toBe(404);
    expect(res.body).toEqual({ error: 'not_found', message: expect.any(String) });
    expect(h.upstream.stats.exchanges).toBe(0);
  });
});

describe('AUTH_MODE=json proxy and refresh', () => {
  it('proxy_forwards_with_the_bearer_from_the_json_login', async () => {
    const agent = await h.signIn(app);
    h.upstream.reset();
    const res = await agent.get('/api/echo/json-mode').set('X-CSRF', '1');
    expect(res.status).toBe(200);
    const [call] = h.upstream.requests.filter((r) => r.url === '/api/echo/json-mode');
    const bearer = String(call?.headers.authorization);
    expect(bearer).toMatch(/^Bearer at_/);
    expect(h.upstream.issuedTokens()).toContain(bearer.slice('Bearer '.length));
    expect(h.upstream.stats.jsonRefreshes).toBe(0);
  });

  it('upstream_401_refreshes_with_json_refresh_token_and_replays', async () => {
    h.upstream.reset();
    const agent = await h.signIn(app);
    h.upstream.expireAllAccessTokens();
    const res = await agent.post('/api/echo/json-replay').set('X-CSRF', '1').send({ n: 1 });
    expect(res.status).toBe(200);
    expect(res.body.body).toBe('{"n":1}');
    expect(h.upstream.stats.jsonRefreshes).toBe(1);
    expect(h.upstream.stats.refreshGrants).toBe(0);
    const [refresh] = h.upstream.requests.filter((r) => r.url === '/api/login/refresh-token');
    expect(refresh?.method).toBe('POST');
    expect(refresh?.headers['content-type']).toMatch(/^application\/json/);
    const sent = JSON.parse(refresh?.body.toString('utf8') ?? 'null') as Record<string, unknown>;
    expect(Object.keys(sent)).toEqual(['refreshToken']);
    expect(sent.refreshToken).toMatch(/^rt_/);
    expect(h.upstream.requests.filter((r) => r.url === '/api/echo/json-replay')).toHaveLength(2);
  });

  it('token_close_to_expiry_is_refreshed_ahead_with_json', async () => {
    h.upstream.accessTokenTtlSeconds = 3;
    let agent: Awaited<ReturnType<Harness['signIn']>>;
    try {
      agent = await h.signIn(app);
    } finally {
      h.upstream.accessTokenTtlSeconds = 3600;
    }
    await sleep(1600);
    h.upstream.reset();
    const res = await agent.get('/api/echo/json-ahead').set('X-CSRF', '1');
    expect(res.status).toBe(200);
    expect(h.upstream.requests.map((r) => r.url)).toEqual(['/api/login/refresh-token', '/api/echo/json-ahead']);
  });

  it('refresh_answered_401_should_fail_with_session_expired_and_delete_the_session', async () => {
    const login = await request(app.url).post('/auth/login').set('X-CSRF', '1').send(DEMO);
    const cookie = cookieOf(login);
    const sid = sidOf(cookie);
    expect(await h.inspect.keys('cr:tok:*')).toContain(`cr:tok:${sid}`);
    h.upstream.expireAllAccessTokens();
    h.upstream.reset();
    h.upstream.faults.refresh.push('invalid_grant');
    const res = await request(app.url).get('/api/echo/json-expired').set('X-CSRF', '1').set('Cookie', cookie);
    expect(res.status).toBe(401);
    expect(res.body.error).toBe('session_expired');
    expect(h.upstream.stats.jsonRefreshes).toBe(1);
    expect(await h.inspect.keys('cr:tok:*')).not.toContain(`cr:tok:${sid}`);
    expect(await h.inspect.keys('cr:sess:*')).not.toContain(`cr:sess:${sid}`);
    expect((await request(app.url).get('/auth/session').set('Cookie', cookie)).body).toEqual({ authenticated: false });
  });

  it('refresh_failing_with_http500_should_fail_with_502_and_keep_the_session', async () => {
    const agent = await h.signIn(app);
    h.upstream.expireAllAccessTokens();
    h.upstream.reset();
    h.upstream.faults.refresh.push('http500');
    const res = await agent.get('/api/echo/json-500').set('X-CSRF', '1');
    expect(res.status).toBe(502);
    expect(res.body.error).toBe('upstream_unavailable');
    expect((await agent.get('/auth/session')).body.authenticated).toBe(true);
    expect((await agent.get('/api/echo/json-500').set('X-CSRF', '1')).status).toBe(200);
  });
});
