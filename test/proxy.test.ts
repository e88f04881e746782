import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import type { RecordedRequest } from '../scripts/fake-upstream/index.js';
import { DEMO, startHarness, type Harness, type Instance, closeExpectingNoLeaks } from './support/harness.js';
import { freePort } from '../scripts/redis-server.js';

let h: Harness;
let app: Instance;

beforeAll(async () => {
  h = await startHarness();
  app = await h.start();
});
afterAll(() => closeExpectingNoLeaks(h));

interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/**
 * A request with the path exactly as given: supertest goes through the WHATWG URL parser,
 * which would resolve `..`, `%2e%2e` and friends before cloakroom ever saw them.
 */
function raw(base: string, path: string, opts: { method?: string; headers?: OutgoingHttpHeaders; body?: Buffer | Buffer[] } = {}): Promise<RawResponse> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: hostname, port, path, method: opts.method ?? 'GET', headers: opts.headers ?? {}, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      let ended = false;
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        ended = true;
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
      });
      res.on('error', reject);
      res.on('close', () => {
        if (!ended) reject(new Error(`response cut after ${Buffer.concat(chunks).length} bytes`));
      });
    });
    req.on('error', reject);
    if (Array.isArray(opts.body)) {
      for (const chunk of opts.body) req.write(chunk);
      req.end();
    } else {
      req.end(opts.body);
    }
  });
}

const json = (res: RawResponse): Record<string, unknown> => JSON.parse(res.body.toString('utf8')) as Record<string, unknown>;

/** Signs in and returns the `name=value` pair of the session cookie. */
async function signInCookie(instance: Instance, who: { email: string; password: string } = DEMO): Promise<string> {
  const res = await request(instance.url).post('/auth/login').set('X-CSRF', '1').send(who);
  expect(res.status).toBe(200);
  const set = (res.headers['set-cookie'] as unknown as string[] | undefined) ?? [];
  const cookie = set.find((c) => c.startsWith(`${instance.config.cookie.name}=`));
  if (!cookie) throw new Error('no session cookie');
  return cookie.split(';')[0] ?? '';
}

/** The session id inside the signed cookie value (`s:<sid>.<signature>`). */
function sidOf(cookie: string): string {
  const value = decodeURIComponent(cookie.slice(cookie.indexOf('=') + 1));
  return value.slice(2, value.lastIndexOf('.'));
}

const api = (cookie: string, extra: OutgoingHttpHeaders = {}): OutgoingHttpHeaders => ({ cookie, 'x-csrf': '1', ...extra });

const upstreamCalls = (path: string): RecordedRequest[] => h.upstream.requests.filter((r) => r.url === path || r.url.startsWith(`${path}?`));

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('anti-forgery and authentication', () => {
  it('api_call_without_session_should_fail_with_unauthenticated', async () => {
    const res = await request(app.url).get('/api/echo/x').set('X-CSRF', '1');
    expect(res.status).toBe(401);
    expect(res.body).toEqual({ error: 'unauthenticated', message: expect.any(String) });
    expect(res.headers['content-type']).toMatch(/application\/json/);
  });

  it('api_call_without_csrf_header_and_without_session_should_fail_with_csrf_required', async () => {
    const res = await request(app.url).get('/api/echo/x');
    expect(res.status).toBe(403);
    expect(res.body).toEqual({ error: 'csrf_required', message: expect.any(String) });
  });

  it('api_call_without_csrf_header_should_fail_with_csrf_required_and_not_reach_upstream', async () => {
    const agent = await h.signIn(app);
    h.upstream.reset();
    const res = await agent.post('/api/echo/no-csrf').send({ a: 1 });
    expect(res.status).toBe(403);
    expect(res.body.error).toBe('csrf_required');
    expect(upstreamCalls('/api/echo/no-csrf')).toHaveLength(0);
  });

  it('api_call_with_wrong_csrf_value_should_fail_with_csrf_required', async () => {
    const agent = await h.signIn(app);
    const res = await agent.get('/api/echo/x').set('X-CSRF', '0');
    expect(res.status).toBe(403);
    expect(res.body.error).toBe('csrf_required');
  });

  it('unsafe_api_call_from_a_foreign_origin_should_fail_with_origin_not_allowed', async () => {
    const agent = await h.signIn(app);
    h.upstream.reset();
    const res = await agent.post('/api/echo/evil').set('X-CSRF', '1').set('Origin', 'https://evil.example').send({ a: 1 });
    expect(res.status).toBe(403);
    expect(res.body.error).toBe('origin_not_allowed');
    expect(upstreamCalls('/api/echo/evil')).toHaveLength(0);
  });

  it('unsafe_api_call_from_its_own_origin_is_proxied', async () => {
    const agent = await h.signIn(app);
    const res = await agent.post('/api/echo/own').set('X-CSRF', '1').set('Origin', app.url).send({ a: 1 });
    expect(res.status).toBe(200);
  });

  it('get_api_call_with_a_foreign_origin_is_proxied', async () => {
    const agent = await h.signIn(app);
    const res = await agent.get('/api/echo/read').set('X-CSRF', '1').set('Origin', 'https://evil.example');
    expect(res.status).toBe(200);
    expect(res.body.method).toBe('GET');
  });

  it('allowed_origins_env_accepts_a_listed_origin_and_refuses_others', async () => {
    const listed = await h.start({ ALLOWED_ORIGINS: 'https://app.example.com,https://admin.example.com' });
    const agent = await h.signIn(listed);
    const ok = await agent.put('/api/echo/cors').set('X-CSRF', '1').set('Origin', 'https://admin.example.com').send({ a: 1 });
    expect(ok.status).toBe(200);
    const refused = await agent.put('/api/echo/cors').set('X-CSRF', '1').set('Origin', 'https://evil.example').send({ a: 1 });
    expect(refused.status).toBe(403);
    expect(refused.body.error).toBe('origin_not_allowed');
    // The default instance does not know that origin.
    const other = await h.signIn(app);
    const elsewhere = await other.put('/api/echo/cors').set('X-CSRF', '1').set('Origin', 'https://admin.example.com').send({ a: 1 });
    expect(elsewhere.status).toBe(403);
    expect(elsewhere.body.error).toBe('origin_not_allowed');
  });
});

describe('forwarding', () => {
  let cookie: string;
  beforeAll(async () => {
    cookie = await signInCookie(app);
  });

  it('raw_path_and_query_reach_upstream_byte_for_byte', async () => {
    const target = '/api/echo/a%2Fb/c?x=1&x=2&y=%20z&empty=&enc=%E2%82%AC+%2B';
    h.upstream.reset();
    const res = await raw(app.url, target, { headers: api(cookie) });
    expect(res.status).toBe(200);
    expect(json(res).url).toBe(target);
    expect(h.upstream.requests.map((r) => r.url)).toEqual([target]);
  });

  it.each(['GET', 'POST', 'PUT', 'PATCH', 'DELETE'])('method_%s_is_forwarded_as_is', async (method) => {
    h.upstream.reset();
    const res = await raw(app.url, '/api/echo/m', { method, headers: api(cookie) });
    expect(res.status).toBe(200);
    expect(json(res).method).toBe(method);
  });

  it('json_body_reaches_upstream_unchanged_with_its_content_type', async () => {
    const body = Buffer.from('{"name":"Zoë","n":[1,2,3],"nested":{"ok":true}}', 'utf8');
    h.upstream.reset();
    const res = await raw(app.url, '/api/echo/json', { method: 'POST', headers: api(cookie, { 'content-type': 'application/json' }), body });
    expect(res.status).toBe(200);
    expect(json(res).body).toBe(body.toString('utf8'));
    const [seen] = upstreamCalls('/api/echo/json');
    expect(seen?.body.equals(body)).toBe(true);
    expect(seen?.headers['content-type']).toBe('application/json');
  });

  it('binary_body_reaches_upstream_unchanged', async () => {
    const body = randomBytes(64 * 1024);
    h.upstream.reset();
    const res = await raw(app.url, '/api/status/201', { method: 'PUT', headers: api(cookie, { 'content-type': 'application/octet-stream' }), body });
    expect(res.status).toBe(201);
    const [seen] = upstreamCalls('/api/status/201');
    expect(seen?.body.length).toBe(body.length);
    expect(sha256(seen?.body ?? Buffer.alloc(0))).toBe(sha256(body));
  });

  it('upstream_gets_a_bearer_and_its_own_host_but_no_browser_credentials_or_hop_by_hop_headers', async () => {
    h.upstream.reset();
    const res = await raw(app.url, '/api/echo/headers', {
      headers: {
        cookie: `${cookie}; theme=dark`,
        authorization: 'Basic dXNlcjpwYXNz',
        'x-csrf': '1',
        connection: 'close, X-Secret-Hop',
        'x-secret-hop': '1',
        'keep-alive': 'timeout=5',
        te: 'trailers',
        upgrade: 'h2c',
        'proxy-authorization': 'Basic cHJveHk6c2VjcmV0',
        'x-request-id': 'kept-123',
        accept: 'application/json',
      },
    });
    expect(res.status).toBe(200);
    const [seen] = upstreamCalls('/api/echo/headers');
    const headers = seen?.headers ?? {};
    expect(headers.authorization).toMatch(/^Bearer at_/);
    expect(headers.host).toBe(`127.0.0.1:${h.upstream.port}`);
    expect(headers.cookie).toBeUndefined();
    expect(headers['x-csrf']).toBeUndefined();
    expect(headers['x-secret-hop']).toBeUndefined();
    expect(headers['keep-alive']).toBeUndefined();
    expect(headers.te).toBeUndefined();
    expect(headers.upgrade).toBeUndefined();
    expect(headers['proxy-authorization']).toBeUndefined();
    expect(headers['x-request-id']).toBe('kept-123');
    expect(headers.accept).toBe('application/json');
  });

  it('upstream_set_cookie_never_reaches_the_browser_but_other_headers_do', async () => {
    const res = await raw(app.url, '/api/echo/cookie', { headers: api(cookie) });
    expect(res.status).toBe(200);
    expect(res.headers['set-cookie']).toBeUndefined();
    expect(res.headers['x-upstream']).toBe('echo');
  });

  it('upstream_status_and_body_come_back_unchanged', async () => {
    const teapot = await raw(app.url, '/api/status/418', { headers: api(cookie) });
    expect(teapot.status).toBe(418);
    expect(json(teapot)).toEqual({ status: 418 });
    const noContent = await raw(app.url, '/api/status/204', { method: 'DELETE', headers: api(cookie) });
    expect(noContent.status).toBe(204);
    expect(noContent.body.length).toBe(0);
    const unavailable = await raw(app.url, '/api/status/503', { headers: api(cookie) });
    expect(unavailable.status).toBe(503);
    expect(json(unavailable)).toEqual({ status: 503 });
  });

  it('content_length_and_content_type_come_back_unchanged', async () => {
    const res = await raw(app.url, '/api/data?size=5000', { headers: api(cookie) });
    expect(res.status).toBe(200);
    expect(res.headers['content-length']).toBe('5000');
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(res.body.length).toBe(5000);
    expect((JSON.parse(res.body.toString('utf8')) as { size: number }).size).toBe(5000);
  });

  it('chunked_json_from_upstream_arrives_intact', async () => {
    const res = await raw(app.url, '/api/chunked', { headers: api(cookie) });
    expect(res.status).toBe(200);
    expect(json(res)).toEqual({ chunks: [1, 2, 3], done: true });
  });

  it('chunked_json_of_unknown_length_is_still_cleaned_of_token_fields', async () => {
    const res = await raw(app.url, '/api/chunked?items=100', { headers: api(cookie) });
    expect(res.status).toBe(200);
    const body = json(res) as { chunks: unknown[]; done: boolean; AccessToken?: unknown };
    expect(body.chunks).toHaveLength(101);
    expect(body.done).toBe(true);
    expect(body).not.toHaveProperty('AccessToken');
  });

  it('chunked_json_of_9_mib_streams_through_whole_and_cleaned', async () => {
    // 9 MiB of unknown length, its token field at the very end: no size is past cleaning
    // (the old path streamed anything over 8 MiB on unchanged).
    const res = await raw(app.url, '/api/chunked?items=9216', { headers: api(cookie) });
    expect(res.status).toBe(200);
    expect(res.body.length).toBeGreaterThan(9 * 1024 * 1024);
    const body = json(res) as { chunks: unknown[]; done: boolean };
    expect(body.chunks).toHaveLength(9217);
    expect(body.done).toBe(true);
    expect(body).not.toHaveProperty('AccessToken');
  });

  it('a_browser_leaving_before_its_json_answer_arrives_leaves_the_process_serving', async () => {
    const cookie = await signInCookie(app);
    const { hostname, port } = new URL(app.url);
    await new Promise<void>((resolve) => {
      const req = httpRequest({ host: hostname, port, path: '/api/slow-body?ms=300', headers: api(cookie), agent: false });
      req.on('error', () => resolve());
      req.on('response', () => resolve());
      req.end();
      setTimeout(() => req.destroy(), 100);
    });
    await sleep(400); // the upstream answer arrives for a browser that is gone
    expect((await raw(app.url, '/api/echo/still-alive', { headers: api(cookie) })).status).toBe(200);
  });

  it('informational_1xx_answers_before_the_final_one_are_not_passed_on_as_the_answer', async () => {
    const cookie = await signInCookie(app);
    const res = await raw(app.url, '/api/informational', { headers: api(cookie) });
    expect(res.status).toBe(200);
    expect(json(res)).toEqual({ ok: true, after: 'informational' });
    expect((await raw(app.url, '/api/echo/still-alive', { headers: api(cookie) })).status).toBe(200);
  });

  it('unknown_upstream_route_404_passes_through', async () => {
    const res = await raw(app.url, '/api/nothing-here', { headers: api(cookie) });
    expect(res.status).toBe(404);
    expect(json(res).Message).toMatch(/No HTTP resource/);
  });
});

describe('credential paths and dot segments', () => {
  let cookie: string;
  beforeAll(async () => {
    cookie = await signInCookie(app);
  });

  it.each([
    ['GET', '/api/token'],
    ['POST', '/api/token'],
    ['POST', '/api/TOKEN'],
    ['POST', '/api//token'],
    ['POST', '/api/token/'],
    ['POST', '/api/%74oken'],
    ['POST', '/api/%2574oken'],
    ['POST', '/api/token;jsessionid=1'],
    ['POST', '/api/token?grant_type=refresh_token'],
    ['POST', '/api/sys/users/token/refresh'],
    ['POST', '/api/sys/users/token%2frefresh'],
    ['POST', '/api/sys/users/token%2Frefresh'],
    ['POST', '/api/Sys/Users/Token/Refresh/'],
    ['POST', '/api/sys//users/token/refresh;x=1'],
    ['POST', '/api/sys/users/exchange?token=abc&validForInMinutes=5'],
    ['POST', '/api/SYS/users/Exchange'],
    ['GET', '/api/auth/media/customer'],
    ['GET', '/api/Auth/Media/Customer'],
    ['GET', '/api/auth//media/customer/'],
    ['GET', '/api/auth/media/%63ustomer'],
    ['GET', '/api/auth/media/customer;v=2'],
  ])('%s_%s_should_fail_with_forbidden_path_and_never_reach_upstream', async (method, path) => {
    h.upstream.reset();
    const res = await raw(app.url, path, { method, headers: api(cookie) });
    expect(res.status).toBe(403);
    expect(json(res).error).toBe('forbidden_path');
    expect(h.upstream.requests).toHaveLength(0);
  });

  it.each(['/api/tokens', '/api/token-info', '/api/sys/users/token/refreshes', '/api/auth/media/customers'])(
    'neighbour_path_%s_is_proxied_and_upstream_404_passes_through',
    async (path) => {
      h.upstream.reset();
      const res = await raw(app.url, path, { headers: api(cookie) });
      expect(res.status).toBe(404);
      expect(json(res).Message).toMatch(/No HTTP resource/);
      expect(upstreamCalls(path)).toHaveLength(1);
    },
  );

  it.each([
    '/api/echo/../token',
    '/api/echo/../echo/x',
    '/api/echo/%2e%2e/x',
    '/api/echo/%2E%2E/x',
    '/api/echo/.%2E/x',
    '/api/echo/%2e./x',
    '/api/echo/%252e%252e/x',
    '/api/echo/..;x/token',
    '/api/echo/x%2f..%2fy',
    '/api/echo/..',
  ])('dot_dot_path_%s_should_fail_with_invalid_path_and_never_reach_upstream', async (path) => {
    h.upstream.reset();
    const res = await raw(app.url, path, { headers: api(cookie) });
    expect(res.status).toBe(400);
    expect(json(res).error).toBe('invalid_path');
    expect(h.upstream.requests).toHaveLength(0);
  });

  it('dot_dot_in_the_query_is_not_a_path_and_is_proxied', async () => {
    const res = await raw(app.url, '/api/echo/x?file=../y', { headers: api(cookie) });
    expect(res.status).toBe(200);
    expect(json(res).url).toBe('/api/echo/x?file=../y');
  });
});

describe('token fields in answers', () => {
  it('auth_me_reaches_the_browser_without_access_token_but_with_email', async () => {
    const agent = await h.signIn(app);
    // Uncompressed, so the length can be checked: the seed's profile is over 1 KiB, compressed for a browser that accepts it.
    const res = await agent.get('/api/auth/me').set('X-CSRF', '1').set('Accept-Encoding', 'identity');
    expect(res.status).toBe(200);
    expect(res.body.Email).toBe(DEMO.email);
    expect(res.body.FullName).toBe('Demo User');
    expect(res.body).not.toHaveProperty('AccessToken');
    expect(res.text).not.toMatch(/at_[A-Za-z0-9_-]{20}/);
    expect(Number(res.headers['content-length'])).toBe(Buffer.byteLength(res.text));
  });

  it('auth_me_reaches_the_browser_with_every_field_of_seed_002_but_access_token', async () => {
    // The seed's example answer, field by field: the fake answers in that shape.
    const seed = readFileSync(new URL('../../shared/seeds/002_84e2a92edfcaa69f.txt', import.meta.url), 'utf8');
    const example = /"NewPasswordConfirm"[\s\S]*?"LocalizationDetails": null/.exec(seed)?.[0] ?? '';
    const seedFields = Object.keys(JSON.parse(`{${example}}`) as Record<string, unknown>);
    expect(seedFields).toContain('AccessToken');
    const agent = await h.signIn(app);
    const res = await agent.get('/api/auth/me').set('X-CSRF', '1');
    expect(res.status).toBe(200);
    expect(Object.keys(res.body as Record<string, unknown>)).toEqual(seedFields.filter((f) => f !== 'AccessToken'));
  });

  it('echoed_authorization_header_is_redacted_before_the_browser_sees_it', async () => {
    const agent = await h.signIn(app);
    h.upstream.reset();
    const res = await agent.get('/api/echo/reflect').set('X-CSRF', '1');
    expect(res.status).toBe(200);
    const bearer = upstreamCalls('/api/echo/reflect')[0]?.headers.authorization;
    expect(bearer).toMatch(/^Bearer at_/);
    const reflected = (res.body as { headers: Record<string, string> }).headers.authorization;
    expect(typeof reflected).toBe('string');
    expect(reflected).not.toBe(bearer);
    expect(res.text).not.toContain(String(bearer).slice('Bearer '.length));
  });
});

describe('refresh', () => {
  it('token_close_to_expiry_is_refreshed_before_forwarding_with_a_form_grant_and_the_sessions_client_id', async () => {
    h.upstream.reset();
    // Short enough that the refresh is due (REFRESH_SKEW 60 s, or half the lifetime)
    // while upstream still accepts the old token, so the refresh is ahead of expiry.
    h.upstream.accessTokenTtlSeconds = 3;
    let cookie: string;
    try {
      cookie = await signInCookie(app);
    } finally {
      h.upstream.accessTokenTtlSeconds = 3600;
    }
    const loginClientId = upstreamCalls('/api/token')[0]?.headers['client_id'];
    const loginBearer = upstreamCalls('/api/auth/me')[0]?.headers.authorization;
    expect(typeof loginClientId).toBe('string');
    await sleep(1600);
    h.upstream.reset();

    const res = await raw(app.url, '/api/echo/ahead', { headers: api(cookie) });
    expect(res.status).toBe(200);
    expect(h.upstream.stats.refreshGrants).toBe(1);
    expect(h.upstream.requests.map((r) => r.url)).toEqual(['/api/token', '/api/echo/ahead']);
    const [grant] = upstreamCalls('/api/token');
    expect(grant?.headers['content-type']).toBe('application/x-www-form-urlencoded');
    const form = new URLSearchParams(grant?.body.toString('utf8'));
    expect(form.get('grant_type')).toBe('refresh_token');
    expect(form.get('refresh_token')).toMatch(/^rt_/);
    expect(grant?.headers['client_id']).toBe(loginClientId);
    const [echo] = upstreamCalls('/api/echo/ahead');
    expect(echo?.headers.authorization).toMatch(/^Bearer at_/);
    expect(echo?.headers.authorization).not.toBe(loginBearer);

    // The refreshed token is long-lived: the next call does not refresh again.
    await raw(app.url, '/api/echo/ahead', { headers: api(cookie) });
    expect(h.upstream.stats.refreshGrants).toBe(1);
  });

  it('upstream_401_causes_one_refresh_and_a_replay_with_the_same_body', async () => {
    const cookie = await signInCookie(app);
    h.upstream.expireAllAccessTokens();
    h.upstream.reset();
    const body = Buffer.from(JSON.stringify({ order: 42, note: 'größer' }), 'utf8');
    const res = await raw(app.url, '/api/echo/replay?x=1', { method: 'POST', headers: api(cookie, { 'content-type': 'application/json' }), body });
    expect(res.status).toBe(200);
    expect(json(res).body).toBe(body.toString('utf8'));
    expect(h.upstream.stats.refreshGrants).toBe(1);
    expect(h.upstream.requests.map((r) => `${r.method} ${r.url}`)).toEqual(['POST /api/echo/replay?x=1', 'POST /api/token', 'POST /api/echo/replay?x=1']);
    const [first, replay] = upstreamCalls('/api/echo/replay');
    expect(first?.body.equals(body)).toBe(true);
    expect(replay?.body.equals(body)).toBe(true);
    expect(replay?.headers['content-type']).toBe('application/json');
    expect(replay?.headers.authorization).not.toBe(first?.headers.authorization);
  });

  it('a_401_after_the_replay_goes_back_as_is_and_the_session_stays', async () => {
    const agent = await h.signIn(app);
    h.upstream.reset();
    const res = await agent.get('/api/status/401').set('X-CSRF', '1');
    expect(res.status).toBe(401);
    expect(res.body).toEqual({ status: 401 });
    expect(h.upstream.stats.refreshGrants).toBe(1);
    expect(upstreamCalls('/api/status/401')).toHaveLength(2);
    expect((await agent.get('/auth/session')).body.authenticated).toBe(true);
    expect((await agent.get('/api/echo/after').set('X-CSRF', '1')).status).toBe(200);
  });

  it('refresh_refused_with_invalid_grant_should_fail_with_session_expired_and_delete_the_session', async () => {
    const cookie = await signInCookie(app);
    const sid = sidOf(cookie);
    expect(await h.inspect.keys('cr:tok:*')).toContain(`cr:tok:${sid}`);
    h.upstream.expireAllAccessTokens();
    h.upstream.reset();
    h.upstream.faults.refresh.push('invalid_grant');
    const res = await raw(app.url, '/api/echo/refused', { headers: api(cookie) });
    expect(res.status).toBe(401);
    expect(json(res).error).toBe('session_expired');
    expect(h.upstream.stats.refreshGrants).toBe(1);
    expect(await h.inspect.keys('cr:tok:*')).not.toContain(`cr:tok:${sid}`);
    expect(await h.inspect.keys('cr:sess:*')).not.toContain(`cr:sess:${sid}`);
    const session = await request(app.url).get('/auth/session').set('Cookie', cookie);
    expect(session.body).toEqual({ authenticated: false });
    const again = await raw(app.url, '/api/echo/refused', { headers: api(cookie) });
    expect(again.status).toBe(401);
    expect(json(again).error).toBe('unauthenticated');
  });

  it.each(['http500', 'reset', 'garbage'] as const)('refresh_failing_with_%s_should_fail_with_502_and_keep_the_session', async (fault) => {
    const cookie = await signInCookie(app);
    const sid = sidOf(cookie);
    h.upstream.expireAllAccessTokens();
    h.upstream.reset();
    h.upstream.faults.refresh.push(fault);
    const res = await raw(app.url, '/api/echo/down', { headers: api(cookie) });
    expect(res.status).toBe(502);
    expect(json(res).error).toBe('upstream_unavailable');
    expect(await h.inspect.keys('cr:tok:*')).toContain(`cr:tok:${sid}`);
    const later = await raw(app.url, '/api/echo/down', { headers: api(cookie) });
    expect(later.status).toBe(200);
    expect(h.upstream.stats.refreshGrants).toBe(2);
  });
});

describe('upstream failures', () => {
  it('upstream_too_slow_should_fail_with_upstream_timeout', async () => {
    const quick = await h.start({ UPSTREAM_TIMEOUT: '1' });
    const cookie = await signInCookie(quick);
    const started = Date.now();
    const res = await raw(quick.url, '/api/slow-headers?ms=4000', { headers: api(cookie) });
    expect(res.status).toBe(504);
    expect(json(res).error).toBe('upstream_timeout');
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('upstream_unreachable_should_fail_with_upstream_unavailable', async () => {
    const cookie = await signInCookie(app);
    // Same Redis and secrets, so the session is valid there; nothing listens on that port.
    const dead = await h.start({ UPSTREAM_URL: `http://127.0.0.1:${await freePort()}` });
    const res = await raw(dead.url, '/api/echo/x', { headers: api(cookie) });
    expect(res.status).toBe(502);
    expect(json(res)).toEqual({ error: 'upstream_unavailable', message: expect.any(String) });
    expect((await raw(app.url, '/api/echo/x', { headers: api(cookie) })).status).toBe(200);
  });

  it('upstream_reset_mid_body_gives_the_browser_a_broken_answer_and_the_process_keeps_serving', async () => {
    const cookie = await signInCookie(app);
    const outcome = await raw(app.url, '/api/reset-mid-body', { headers: api(cookie) }).then(
      (res) => ({ status: res.status, body: res.body.toString('utf8') }),
      (err: unknown) => ({ status: 0, body: String(err) }),
    );
    // Never a complete-looking 200: either a cut connection or a clean 502.
    if (outcome.status !== 0) {
      expect(outcome.status).toBe(502);
      expect(JSON.parse(outcome.body)).toEqual({ error: 'upstream_unavailable', message: expect.any(String) });
    }
    expect((await raw(app.url, '/api/echo/still-alive', { headers: api(cookie) })).status).toBe(200);
    expect((await request(app.url).get('/healthz')).status).toBe(200);
  });
});

describe('large bodies', () => {
  let cookie: string;
  beforeAll(async () => {
    cookie = await signInCookie(app);
  });

  it('two_mib_request_body_with_content_length_streams_to_upstream_intact', async () => {
    const body = randomBytes(2 * 1024 * 1024);
    h.upstream.reset();
    const res = await raw(app.url, '/api/status/200', { method: 'POST', headers: api(cookie, { 'content-type': 'application/octet-stream' }), body });
    expect(res.status).toBe(200);
    const [seen] = upstreamCalls('/api/status/200');
    expect(seen?.body.length).toBe(body.length);
    expect(sha256(seen?.body ?? Buffer.alloc(0))).toBe(sha256(body));
  });

  it('two_mib_chunked_request_body_streams_to_upstream_intact', async () => {
    const chunks = Array.from({ length: 32 }, () => randomBytes(64 * 1024));
    h.upstream.reset();
    const res = await raw(app.url, '/api/status/200', { method: 'POST', headers: api(cookie, { 'content-type': 'application/octet-stream' }), body: chunks });
    expect(res.status).toBe(200);
    const [seen] = upstreamCalls('/api/status/200');
    const sent = Buffer.concat(chunks);
    expect(seen?.body.length).toBe(sent.length);
    expect(sha256(seen?.body ?? Buffer.alloc(0))).toBe(sha256(sent));
  });

  /** Opens `path` and hands back the response paused, before any byte is read. */
  function openPaused(path: string): Promise<IncomingMessage> {
    const { hostname, port } = new URL(app.url);
    return new Promise((resolve, reject) => {
      const req = httpRequest({ host: hostname, port, path, headers: api(cookie), agent: false }, (res) => {
        res.pause();
        resolve(res);
      });
      req.on('error', reject);
      req.end();
    });
  }

  const openDownload = (size: number) => openPaused(`/api/download?size=${size}`);

  /** Reads the rest of a paused response; resolves with the number of bytes. */
  function readAll(res: IncomingMessage): Promise<number> {
    let bytes = 0;
    return new Promise((resolve, reject) => {
      res.on('data', (c: Buffer) => {
        bytes += c.length;
      });
      res.on('end', () => resolve(bytes));
      res.on('error', reject);
      res.resume();
    });
  }

  const downloadOf = (size: number) => h.upstream.downloads.find((d) => d.size === size);

  it('a_download_the_browser_does_not_read_is_not_pulled_from_upstream_any_faster', async () => {
    const size = 128 * 1024 * 1024;
    const res = await openDownload(size);
    expect(res.statusCode).toBe(200);
    await sleep(400);
    // Socket buffers on the two hops hold a few MiB; without backpressure cloakroom would
    // have read all 128 MiB into memory by now.
    const held = downloadOf(size);
    expect(held?.finished).toBe(false);
    expect(held?.sent).toBeLessThan(48 * 1024 * 1024);
    expect(await readAll(res)).toBe(size);
    expect(downloadOf(size)?.finished).toBe(true);
  });

  it('an_overlong_json_answer_read_slowly_arrives_whole_without_piling_up_listeners', async () => {
    // The answer cloakroom writes for this request, watched from the server side.
    let answer: ServerResponse | undefined;
    const onRequest = (req: IncomingMessage, res: ServerResponse) => {
      if (req.url?.startsWith('/api/chunked')) answer = res;
    };
    app.server.on('request', onRequest);
    let mostDrainListeners = 0;
    const watch = setInterval(() => {
      mostDrainListeners = Math.max(mostDrainListeners, answer?.listenerCount('drain') ?? 0);
    }, 5);
    try {
      // 12,000 pieces of 1 KiB, chunked, read slowly: backpressure all the way through the cleaning stages.
      const res = await openPaused('/api/chunked?items=12000');
      await sleep(500); // the browser reads nothing while the buffered head is flushed
      expect(res.statusCode).toBe(200);
      expect(await readAll(res)).toBeGreaterThan(12_000 * 1024);
      // One wait for the browser's socket at a time, not one per piece written while it was full.
      expect(answer).toBeDefined();
      expect(mostDrainListeners).toBeLessThanOrEqual(2);
    } finally {
      clearInterval(watch);
      app.server.off('request', onRequest);
    }
  });

  it('a_browser_leaving_mid_download_stops_the_upstream_transfer', async () => {
    const size = 200 * 1024 * 1024;
    const res = await openDownload(size);
    await new Promise<void>((resolve) => {
      res.once('data', () => resolve());
      res.resume();
    });
    res.destroy();
    const deadline = Date.now() + 3000;
    while (!downloadOf(size)?.aborted && !downloadOf(size)?.finished && Date.now() < deadline) await sleep(20);
    expect(downloadOf(size)?.aborted).toBe(true);
    expect(downloadOf(size)?.sent).toBeLessThan(size);
    expect((await raw(app.url, '/api/echo/still-alive', { headers: api(cookie) })).status).toBe(200);
  });

  it('large_json_answer_streams_back_intact', async () => {
    const res = await raw(app.url, '/api/data?size=3000000', { headers: api(cookie) });
    expect(res.status).toBe(200);
    expect(res.body.length).toBe(3_000_000);
    expect((JSON.parse(res.body.toString('utf8')) as { size: number }).size).toBe(3_000_000);
  });
});
