import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { DEMO, startHarness, type Harness, type Instance, closeExpectingNoLeaks } from './support/harness.js';

let h: Harness;
let app: Instance;

beforeAll(async () => {
  h = await startHarness();
  app = await h.start();
});
afterAll(() => closeExpectingNoLeaks(h));

const cookieOf = (res: request.Response): string => {
  const set = res.headers['set-cookie'] as unknown as string[] | undefined;
  return (set ?? []).find((c) => c.startsWith('bff.sid=')) ?? '';
};

describe('POST /auth/login', () => {
  it('login_with_valid_password_returns_user_and_httponly_session_cookie', async () => {
    const res = await request(app.url).post('/auth/login').set('X-CSRF', '1').send(DEMO);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ authenticated: true, user: expect.objectContaining({ email: DEMO.email, id: expect.any(String), fullName: expect.any(String) }) });
    const cookie = cookieOf(res);
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/Path=\//);
    expect(cookie).toMatch(/SameSite=Lax/);
    expect(cookie).not.toMatch(/Max-Age|Expires/);
    expect(cookie).not.toMatch(/Secure/);
    expect(res.headers['cache-control']).toBe('no-store');
  });

  it('login_sends_form_encoded_password_grant_with_a_random_client_id', async () => {
    h.upstream.reset();
    await request(app.url).post('/auth/login').set('X-CSRF', '1').send(DEMO).expect(200);
    const grant = h.upstream.requests.find((r) => r.url === '/api/token');
    expect(grant?.headers['content-type']).toBe('application/x-www-form-urlencoded');
    const form = new URLSearchParams(grant?.body.toString('utf8'));
    expect(form.get('grant_type')).toBe('password');
    expect(form.get('username')).toBe(DEMO.email);
    const clientId = grant?.headers['client_id'];
    expect(typeof clientId).toBe('string');
    expect(clientId).not.toBe(DEMO.email);
  });

  it('two_logins_of_one_user_use_different_client_ids', async () => {
    h.upstream.reset();
    await request(app.url).post('/auth/login').set('X-CSRF', '1').send(DEMO).expect(200);
    await request(app.url).post('/auth/login').set('X-CSRF', '1').send(DEMO).expect(200);
    const ids = h.upstream.requests.filter((r) => r.url === '/api/token').map((r) => r.headers['client_id']);
    expect(ids).toHaveLength(2);
    expect(ids[0]).not.toBe(ids[1]);
  });

  it('login_with_remember_sets_a_persistent_cookie_with_max_age_of_the_absolute_timeout', async () => {
    const res = await request(app.url).post('/auth/login').set('X-CSRF', '1').send({ ...DEMO, remember: true });
    expect(res.status).toBe(200);
    // Default SESSION_ABSOLUTE_TIMEOUT (15 days); Max-Age, not Expires (contract).
    expect(cookieOf(res)).toMatch(/^bff\.sid=s%3A[^;]+; Path=\/; Max-Age=1296000; HttpOnly; SameSite=Lax$/);
  });

  it('login_without_remember_sets_a_session_cookie_with_neither_max_age_nor_expires', async () => {
    const res = await request(app.url).post('/auth/login').set('X-CSRF', '1').send({ ...DEMO, remember: false });
    expect(cookieOf(res)).toMatch(/^bff\.sid=s%3A[^;]+; Path=\/; HttpOnly; SameSite=Lax$/);
  });

  it('login_as_form_post_works', async () => {
    const res = await request(app.url).post('/auth/login').set('X-CSRF', '1').type('form').send({ email: DEMO.email, password: DEMO.password, remember: 'false' });
    expect(res.status).toBe(200);
  });

  it('login_issues_a_new_session_id_even_when_one_was_sent', async () => {
    const agent = await h.signIn(app);
    const first = (await agent.get('/auth/session')).body as { authenticated: boolean };
    expect(first.authenticated).toBe(true);
    const before = await h.inspect.keys('cr:sess:*');
    const res = await agent.post('/auth/login').set('X-CSRF', '1').send(DEMO);
    const after = await h.inspect.keys('cr:sess:*');
    const fresh = after.filter((k) => !before.includes(k));
    expect(res.status).toBe(200);
    expect(fresh).toHaveLength(1);
    expect(after.length).toBe(before.length); // the old session was deleted, not kept
  });

  it('login_without_csrf_header_should_fail_with_csrf_required', async () => {
    const res = await request(app.url).post('/auth/login').send(DEMO);
    expect(res.status).toBe(403);
    expect(res.body.error).toBe('csrf_required');
    expect(res.headers['content-type']).toMatch(/application\/json/);
  });

  it('login_from_a_foreign_origin_should_fail_with_origin_not_allowed', async () => {
    const res = await request(app.url).post('/auth/login').set('X-CSRF', '1').set('Origin', 'https://evil.example').send(DEMO);
    expect(res.status).toBe(403);
    expect(res.body.error).toBe('origin_not_allowed');
  });

  it('login_from_its_own_origin_is_accepted', async () => {
    const res = await request(app.url).post('/auth/login').set('X-CSRF', '1').set('Origin', app.url).send(DEMO);
    expect(res.status).toBe(200);
  });

  it.each([
    [{ password: 'x' }],
    [{ email: 'a@b.c' }],
    [{ email: 42, password: 'x' }],
    [{ email: 'a@b.c', password: 'x', totp: 123456 }],
    [{ email: 'a@b.c', password: 'x', remember: 'yes' }],
  ])('login_with_bad_fields_%j_should_fail_with_invalid_request', async (body) => {
    const res = await request(app.url).post('/auth/login').set('X-CSRF', '1').send(body);
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_request');
  });

  it('login_with_malformed_json_should_fail_with_invalid_request', async () => {
    const res = await request(app.url).post('/auth/login').set('X-CSRF', '1').set('Content-Type', 'application/json').send('{"email":');
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ error: 'invalid_request', message: expect.any(String) });
  });

  it('login_with_wrong_password_should_fail_with_invalid_grant_and_upstream_description', async () => {
    const res = await request(app.url).post('/auth/login').set('X-CSRF', '1').send({ email: 'other@example.com', password: 'nope' });
    expect(res.status).toBe(401);
    expect(res.body).toEqual({ error: 'invalid_grant', message: 'The user name or password is incorrect.' });
  });

  it('login_of_2fa_user_without_code_should_fail_with_two_factor_required', async () => {
    const res = await request(app.url).post('/auth/login').set('X-CSRF', '1').send({ email: 'totp@example.com', password: 'totp-password' });
    expect(res.status).toBe(401);
    expect(res.body.error).toBe('two_factor_required');
  });

  it('login_of_2fa_user_with_code_succeeds_and_sends_totp_upstream', async () => {
    h.upstream.reset();
    const res = await request(app.url).post('/auth/login').set('X-CSRF', '1').send({ email: 'totp@example.com', password: 'totp-password', totp: '123456' });
    expect(res.status).toBe(200);
    const form = new URLSearchParams(h.upstream.requests.find((r) => r.url === '/api/token')?.body.toString('utf8'));
    expect(form.get('totp')).toBe('123456');
  });

  it('login_of_user_who_must_reset_should_fail_with_must_reset_password_and_reset_token', async () => {
    const res = await request(app.url).post('/auth/login').set('X-CSRF', '1').send({ email: 'reset@example.com', password: 'reset-password' });
    expect(res.status).toBe(403);
    expect(res.body.error).toBe('must_reset_password');
    expect(typeof res.body.resetToken).toBe('string');
    expect(res.body.resetToken.length).toBeGreaterThan(0);
  });
});

describe('GET /auth/session and POST /auth/logout', () => {
  it('session_without_cookie_says_not_authenticated', async () => {
    const res = await request(app.url).get('/auth/session');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ authenticated: false });
  });

  it('session_after_login_reports_user_and_idle_expiry', async () => {
    const agent = await h.signIn(app);
    const before = Date.now();
    const res = await agent.get('/auth/session');
    expect(res.status).toBe(200);
    expect(res.body.authenticated).toBe(true);
    expect(res.body.user.email).toBe(DEMO.email);
    const expiresAt = Date.parse(res.body.expiresAt as string);
    // default idle 8 h is earlier than the 15-day absolute end
    expect(expiresAt).toBeGreaterThanOrEqual(before + 8 * 3600_000 - 5000);
    expect(expiresAt).toBeLessThanOrEqual(Date.now() + 8 * 3600_000 + 1000);
  });

  it('logout_deletes_every_session_key_and_clears_cookie', async () => {
    const agent = await h.signIn(app);
    await agent.get('/api/echo/x').set('X-CSRF', '1').expect(200);
    const keysBefore = await h.inspect.keys('cr:*');
    const res = await agent.post('/auth/logout').set('X-CSRF', '1');
    expect(res.status).toBe(204);
    expect(String(res.headers['set-cookie'])).toMatch(/bff\.sid=;/);
    const keysAfter = await h.inspect.keys('cr:*');
    const removed = keysBefore.filter((k) => !keysAfter.includes(k));
    expect(removed.some((k) => k.startsWith('cr:sess:'))).toBe(true);
    expect(removed.some((k) => k.startsWith('cr:tok:'))).toBe(true);
    expect((await agent.get('/auth/session')).body).toEqual({ authenticated: false });
    const api = await agent.get('/api/echo/x').set('X-CSRF', '1');
    expect(api.status).toBe(401);
    expect(api.body.error).toBe('unauthenticated');
  });

  it('logout_is_idempotent', async () => {
    const res = await request(app.url).post('/auth/logout').set('X-CSRF', '1');
    expect(res.status).toBe(204);
  });

  it('logout_without_csrf_header_should_fail_with_csrf_required', async () => {
    const res = await request(app.url).post('/auth/logout');
    expect(res.status).toBe(403);
    expect(res.body.error).toBe('csrf_required');
  });
});

describe('GET /auth/exchange', () => {
  it('exchange_with_valid_jwt_creates_session_and_redirects_to_returnTo', async () => {
    h.upstream.reset();
    const jwt = h.upstream.issueExchangeJwt(DEMO.email);
    const agent = request.agent(app.url);
    const res = await agent.get(`/auth/exchange?t=${encodeURIComponent(jwt)}&returnTo=${encodeURIComponent('/welcome?x=1')}`);
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe('/welcome?x=1');
    const call = h.upstream.requests.find((r) => r.url.startsWith('/api/sys/users/exchange'));
    const q = new URL(call?.url ?? '', 'http://x').searchParams;
    expect(q.get('token')).toBe(jwt);
    expect(Number(q.get('validForInMinutes'))).toBeGreaterThan(0);
    expect(typeof call?.headers['client_id']).toBe('string');
    expect((await agent.get('/auth/session')).body.authenticated).toBe(true);
    expect((await agent.get('/api/auth/me').set('X-CSRF', '1')).status).toBe(200);
  });

  it('exchange_without_returnTo_redirects_to_root', async () => {
    const jwt = h.upstream.issueExchangeJwt(DEMO.email);
    const res = await request(app.url).get(`/auth/exchange?t=${encodeURIComponent(jwt)}`);
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe('/');
  });

  it('exchange_with_used_jwt_should_fail_with_invalid_grant', async () => {
    const jwt = h.upstream.issueExchangeJwt(DEMO.email);
    await request(app.url).get(`/auth/exchange?t=${encodeURIComponent(jwt)}`).expect(302);
    const res = await request(app.url).get(`/auth/exchange?t=${encodeURIComponent(jwt)}`);
    expect(res.status).toBe(401);
    expect(res.body.error).toBe('invalid_grant');
  });

  it('exchange_with_offsite_returnTo_should_fail_with_invalid_redirect', async () => {
    const jwt = h.upstream.issueExchangeJwt(DEMO.email);
    const res = await request(app.url).get(`/auth/exchange?t=${encodeURIComponent(jwt)}&returnTo=${encodeURIComponent('//evil.example')}`);
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_redirect');
  });

  it('exchange_without_token_should_fail_with_invalid_request', async () => {
    const res = await request(app.url).get('/auth/exchange');
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_request');
  });
});

describe('operations', () => {
  it('healthz_and_readyz_answer_200_while_redis_is_up', async () => {
    expect((await request(app.url).get('/healthz')).status).toBe(200);
    expect((await request(app.url).get('/readyz')).status).toBe(200);
  });

  it('metrics_expose_requests_refreshes_and_redis_errors', async () => {
    const res = await request(app.url).get('/metrics');
    expect(res.status).toBe(200);
    expect(res.text).toMatch(/cloakroom_http_requests_total\{route="\/auth\/login",status="200"\}/);
    expect(res.text).toMatch(/cloakroom_token_refreshes_total/);
    expect(res.text).toMatch(/cloakroom_redis_errors_total/);
    expect(res.text).toMatch(/cloakroom_upstream_duration_seconds/);
  });

  it('unknown_route_answers_json_not_found', async () => {
    const res = await request(app.url).get('/nope');
    expect(res.status).toBe(404);
    expect(res.body).toEqual({ error: 'not_found', message: expect.any(String) });
  });
});
