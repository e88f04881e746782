import { readFileSync } from 'node:fs';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { jwtExpiryMs } from '../src/core/link-signing.js';
import { DEMO, startHarness, type Harness, type Instance, closeExpectingNoLeaks } from './support/harness.js';
import { freePort } from '../scripts/redis-server.js';

const PORTAL = 'https://portal.example.com/en';
const PORTAL_ORIGIN = 'https://portal.example.com';
const MEDIA = 'https://media.example.com';
const INVOICE = '/api/public/billing/invoices/42/pdf';
const OTHER = { email: 'other@example.com', password: 'other-password' } as const;

let h: Harness;
/** PORTAL_URL, LOGIN_PAGE_URL and MEDIA_BASE_URL set. */
let app: Instance;
/** Nothing link-related configured: no portal, 401 without a session, media on UPSTREAM_URL. */
let bare: Instance;
/** A portal whose login path has no query of its own, and no login page. */
let plainLogin: Instance;

beforeAll(async () => {
  h = await startHarness();
  app = await h.start({ PORTAL_URL: PORTAL, LOGIN_PAGE_URL: '/login', MEDIA_BASE_URL: MEDIA });
  bare = await h.start();
  plainLogin = await h.start({ PORTAL_URL: PORTAL, PORTAL_LOGIN_PATH: '/user/login' });
});
afterAll(() => closeExpectingNoLeaks(h));

/** A fresh session's cookie header; sessions live in the shared Redis, so it works on every instance. */
async function signIn(who: { email: string; password: string } = DEMO): Promise<string> {
  const res = await request(app.url).post('/auth/login').set('X-CSRF', '1').send(who);
  expect(res.status).toBe(200);
  const set = (res.headers['set-cookie'] as unknown as string[] | undefined) ?? [];
  const cookie = set.find((c) => c.startsWith('bff.sid='));
  if (!cookie) throw new Error('no session cookie');
  return cookie.split(';')[0] ?? '';
}

const download = (inst: Instance, path: string, cookie?: string) => {
  const r = request(inst.url).get(`/links/download?path=${encodeURIComponent(path)}`);
  return cookie ? r.set('Cookie', cookie) : r;
};

const portal = (inst: Instance, redirectUrl: string | undefined, cookie?: string) => {
  const r = request(inst.url).get(redirectUrl === undefined ? '/links/portal' : `/links/portal?redirectUrl=${encodeURIComponent(redirectUrl)}`);
  return cookie ? r.set('Cookie', cookie) : r;
};

/** The `t` of a signed Location. */
const tOf = (location: string): string => new URL(location).searchParams.get('t') ?? '';

const lastIssued = (): string => h.upstream.issuedTokens().at(-1) ?? '';

const linksCount = async (inst: Instance, kind: string, outcome: string): Promise<number> => {
  const metric = (await inst.cloakroom.metrics.links.get()).values.find((v) => v.labels['kind'] === kind && v.labels['outcome'] === outcome);
  return metric?.value ?? 0;
};

function expectBare302(res: request.Response): void {
  expect(res.status).toBe(302);
  expect(res.headers['cache-control']).toBe('no-store');
  expect(res.headers['referrer-policy']).toBe('no-referrer');
  expect(res.text).toBe('');
  expect(res.headers['content-length'] ?? '0').toBe('0');
  expect(res.headers['content-type']).toBeUndefined();
}

describe('GET /links/download', () => {
  let cookie: string;
  beforeAll(async () => {
    cookie = await signIn();
  });

  it('download_link_redirects_to_media_base_url_path_with_media_token', async () => {
    h.upstream.reset();
    const res = await download(app, INVOICE, cookie);
    expect(res.status).toBe(302);
    const jwt = lastIssued();
    expect(jwt.split('.')).toHaveLength(3);
    expect(res.headers.location).toBe(`${MEDIA}${INVOICE}?t=${jwt}`);
  });

  it('download_link_fetches_the_media_token_with_the_sessions_bearer', async () => {
    const fresh = await signIn();
    h.upstream.reset();
    await download(app, INVOICE, fresh).expect(302);
    const calls = h.upstream.requests.filter((r) => r.url === '/api/auth/media/customer');
    expect(calls).toHaveLength(1);
    expect(calls[0]?.method).toBe('GET');
    expect(calls[0]?.headers['authorization']).toMatch(/^Bearer at_/);
  });

  it('download_link_written_unencoded_in_an_href_works', async () => {
    const res = await request(app.url).get(`/links/download?path=${INVOICE}`).set('Cookie', cookie);
    expect(res.status).toBe(302);
    expect(String(res.headers.location).startsWith(`${MEDIA}${INVOICE}?t=`)).toBe(true);
  });

  it('download_link_with_query_in_path_appends_t_with_ampersand', async () => {
    const res = await download(app, '/api/public/files/report.pdf?inline=1', cookie);
    expect(res.status).toBe(302);
    expect(res.headers.location).toMatch(/^https:\/\/media\.example\.com\/api\/public\/files\/report\.pdf\?inline=1&t=[\w-]+\.[\w-]+\.[\w-]+$/);
  });

  it('download_link_answers_a_bare_302_with_no_store_and_no_referrer', async () => {
    expectBare302(await download(app, INVOICE, cookie));
  });

  it('download_link_needs_no_csrf_header_and_accepts_a_foreign_origin_navigation', async () => {
    const res = await download(app, INVOICE, cookie).set('Origin', 'https://elsewhere.example').set('Sec-Fetch-Mode', 'navigate');
    expect(res.status).toBe(302);
  });

  it('download_link_defaults_media_base_url_to_upstream_url_and_the_file_opens', async () => {
    const res = await download(bare, INVOICE, cookie);
    expect(res.status).toBe(302);
    const location = String(res.headers.location);
    expect(location.startsWith(`${h.upstream.url}${INVOICE}?t=`)).toBe(true);
    // The browser follows the link without any cookie or bearer: the media token alone opens it.
    const file = await fetch(location);
    expect(file.status).toBe(200);
    expect(await file.text()).toContain('fake invoice 42');
  });

  it.each([
    ['absolute', `https://evil.example${INVOICE}`],
    ['protocol_relative', `//evil.example${INVOICE}`],
    ['backslash_authority', `/\\evil.example${INVOICE}`],
    ['no_leading_slash', INVOICE.slice(1)],
    ['not_matching', '/api/sys/users/token/refresh'],
    ['not_matching_prefix', '/api/public/billing/invoices/42'],
    ['too_deep_for_single_star', '/api/public/billing/invoices/42/43/pdf'],
    ['encoded_dot_dot', '/api/public/files/%2e%2e/%2e%2e/auth/media/customer'],
    ['double_encoded_dot_dot', '/api/public/files/%252e%252e/x'],
    ['plain_dot_dot', '/api/public/files/../../token'],
    ['empty_rest', '/api/public/files/'],
    ['fragment', `${INVOICE}#x`],
    ['control_character', '/api/public/files/a\nb'],
    ['own_t_parameter', '/api/public/files/a.pdf?t=attacker'],
  ])('download_link_with_%s_path_should_fail_with_invalid_path', async (_name, path) => {
    h.upstream.reset();
    const res = await download(app, path, cookie);
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ error: 'invalid_path', message: expect.any(String) });
    expect(res.headers['content-type']).toMatch(/application\/json/);
    expect(h.upstream.stats.mediaTokens).toBe(0);
  });

  it('download_link_without_path_should_fail_with_invalid_path', async () => {
    const res = await request(app.url).get('/links/download').set('Cookie', cookie);
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_path');
  });

  it('download_link_with_repeated_path_should_fail_with_invalid_path', async () => {
    const p = encodeURIComponent(INVOICE);
    const res = await request(app.url).get(`/links/download?path=${p}&path=${p}`).set('Cookie', cookie);
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_path');
  });

  it('download_link_honours_configured_download_paths', async () => {
    const custom = await h.start({ DOWNLOAD_PATHS: '/api/public/files/*' });
    expect((await download(custom, '/api/public/files/a.pdf', cookie)).status).toBe(302);
    expect((await download(custom, INVOICE, cookie)).body.error).toBe('invalid_path');
    expect((await download(custom, '/api/public/files/a/b.pdf', cookie)).body.error).toBe('invalid_path');
  });
});

describe('media token cache', () => {
  it('fifty_concurrent_download_links_of_one_session_cost_one_media_token', async () => {
    const cookie = await signIn();
    h.upstream.reset();
    const answers = await Promise.all(
      Array.from({ length: 50 }, (_, i) => download(app, `/api/public/billing/invoices/${i}/pdf`, cookie)),
    );
    expect(answers.map((r) => r.status)).toEqual(Array(50).fill(302));
    expect(h.upstream.stats.mediaTokens).toBe(1);
    expect(new Set(answers.map((r) => tOf(String(r.headers.location)))).size).toBe(1);
  });

  it('later_download_links_reuse_the_cached_media_token', async () => {
    const cookie = await signIn();
    h.upstream.reset();
    const first = await download(app, INVOICE, cookie);
    const second = await download(app, '/api/public/files/a.pdf', cookie);
    expect(h.upstream.stats.mediaTokens).toBe(1);
    expect(tOf(String(second.headers.location))).toBe(tOf(String(first.headers.location)));
  });

  it('media_token_cache_is_shared_by_instances_through_redis', async () => {
    const cookie = await signIn();
    h.upstream.reset();
    await download(app, INVOICE, cookie).expect(302);
    const res = await download(bare, INVOICE, cookie);
    expect(res.status).toBe(302);
    expect(h.upstream.stats.mediaTokens).toBe(1);
  });

  it('media_token_is_refetched_once_the_cached_one_is_within_30_seconds_of_exp', async () => {
    const cookie = await signIn();
    // exp = now + 32 s, cached until exp - 30 s: between 1 and 2 s from now (exp is in whole seconds).
    h.upstream.mediaTokenTtlSeconds = 32;
    try {
      h.upstream.reset();
      const first = await download(app, INVOICE, cookie);
      const cached = await download(app, INVOICE, cookie);
      expect(h.upstream.stats.mediaTokens).toBe(1);
      expect(tOf(String(cached.headers.location))).toBe(tOf(String(first.headers.location)));
      // Extends every key of the session, the media cache included: its own expiry must still hold.
      await request(app.url).get('/auth/session').set('Cookie', cookie).expect(200);
      const mediaKeys = await h.inspect.keys('cr:media:*');
      const ttls = await Promise.all(mediaKeys.map((k) => h.inspect.pttl(k)));
      expect(Math.max(...ttls)).toBeGreaterThan(60_000);
      await new Promise((resolve) => setTimeout(resolve, 2100));
      const later = await download(app, INVOICE, cookie);
      expect(h.upstream.stats.mediaTokens).toBe(2);
      expect(tOf(String(later.headers.location))).not.toBe(tOf(String(first.headers.location)));
    } finally {
      h.upstream.mediaTokenTtlSeconds = 300;
    }
  });

  it('media_token_is_not_cached_when_it_expires_within_30_seconds', async () => {
    const cookie = await signIn();
    h.upstream.mediaTokenTtlSeconds = 20;
    try {
      h.upstream.reset();
      await download(app, INVOICE, cookie).expect(302);
      await download(app, INVOICE, cookie).expect(302);
      expect(h.upstream.stats.mediaTokens).toBe(2);
    } finally {
      h.upstream.mediaTokenTtlSeconds = 300;
    }
  });

  it('media_tokens_are_cached_per_session_and_never_cross_users', async () => {
    const [demo, other] = await Promise.all([signIn(), signIn(OTHER)]);
    h.upstream.reset();
    const [a, b] = await Promise.all([download(app, INVOICE, demo), download(app, INVOICE, other)]);
    expect(h.upstream.stats.mediaTokens).toBe(2);
    const subOf = (res: request.Response) => {
      const payload = tOf(String(res.headers.location)).split('.')[1] ?? '';
      return (JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { sub: string }).sub;
    };
    expect(subOf(a)).toBe('1001');
    expect(subOf(b)).toBe('1004');
  });

  it('media_cache_in_redis_holds_a_sealed_value_not_the_jwt', async () => {
    const before = new Set(await h.inspect.keys('cr:media:*'));
    const cookie = await signIn();
    const res = await download(app, INVOICE, cookie);
    const jwt = tOf(String(res.headers.location));
    const added = (await h.inspect.keys('cr:media:*')).filter((k) => !before.has(k));
    expect(added).toHaveLength(1);
    const stored = (await h.inspect.get(added[0] ?? '')) ?? '';
    expect(stored).toMatch(/^v1\./);
    expect(stored).not.toContain(jwt);
    expect(stored).not.toContain(jwt.split('.')[1] ?? 'x');
    // A short TTL of its own, not the session's idle timeout.
    const ttl = await h.inspect.pttl(added[0] ?? '');
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(300_000 - 30_000);
  });

  it('logout_removes_the_media_cache', async () => {
    const before = new Set(await h.inspect.keys('cr:media:*'));
    const cookie = await signIn();
    await download(app, INVOICE, cookie).expect(302);
    const added = (await h.inspect.keys('cr:media:*')).filter((k) => !before.has(k));
    expect(added).toHaveLength(1);
    await request(app.url).post('/auth/logout').set('X-CSRF', '1').set('Cookie', cookie).expect(204);
    expect(await h.inspect.exists(added[0] ?? '')).toBe(0);
  });

  it.each([
    ['a_numeric_exp', `h.${Buffer.from('{"exp":1700000000}').toString('base64url')}.s`, 1_700_000_000_000],
    ['no_exp', `h.${Buffer.from('{"sub":"1"}').toString('base64url')}.s`, null],
    ['a_string_exp', `h.${Buffer.from('{"exp":"1700000000"}').toString('base64url')}.s`, null],
    ['a_negative_exp', `h.${Buffer.from('{"exp":-1}').toString('base64url')}.s`, null],
    ['a_payload_that_is_not_json', `h.${Buffer.from('nope').toString('base64url')}.s`, null],
    ['an_array_payload', `h.${Buffer.from('[1]').toString('base64url')}.s`, null],
    ['two_parts', 'h.p', null],
    ['no_dots', 'opaque', null],
  ])('jwt_expiry_of_a_token_with_%s', (_name, jwt, expected) => {
    expect(jwtExpiryMs(jwt)).toBe(expected);
  });
});

describe('GET /links/portal', () => {
  let cookie: string;
  beforeAll(async () => {
    cookie = await signIn();
  });

  it('portal_link_redirects_to_portal_login_with_one_time_token_and_encoded_redirect', async () => {
    h.upstream.reset();
    const res = await portal(app, '/en/invoices?page=2', cookie);
    expect(res.status).toBe(302);
    const value = lastIssued();
    expect(value).toMatch(/^[0-9a-f]{32}$/);
    expect(res.headers.location).toBe(`${PORTAL}/user/login?server=true&t=${value}&redirectUrl=%2Fen%2Finvoices%3Fpage%3D2`);
  });

  it('portal_link_without_redirect_url_leaves_it_out', async () => {
    const res = await portal(app, undefined, cookie);
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe(`${PORTAL}/user/login?server=true&t=${lastIssued()}`);
  });

  it('portal_link_with_empty_redirect_url_leaves_it_out', async () => {
    const res = await portal(app, '', cookie);
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe(`${PORTAL}/user/login?server=true&t=${lastIssued()}`);
  });

  it('portal_link_with_login_path_without_query_uses_question_mark_for_t', async () => {
    const res = await portal(plainLogin, '/en/invoices', cookie);
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe(`${PORTAL}/user/login?t=${lastIssued()}&redirectUrl=%2Fen%2Finvoices`);
  });

  it('portal_link_asks_upstream_with_a_bodyless_post_and_the_bearer', async () => {
    h.upstream.reset();
    await portal(app, '/en', cookie).expect(302);
    const calls = h.upstream.requests.filter((r) => r.url === '/api/sys/users/token/refresh');
    expect(calls).toHaveLength(1);
    expect(calls[0]?.method).toBe('POST');
    expect(calls[0]?.body.length).toBe(0);
    expect(calls[0]?.headers['authorization']).toMatch(/^Bearer at_/);
  });

  it('portal_and_download_links_send_the_browser_request_id_upstream', async () => {
    // A new session: no media token cached yet.
    const fresh = await signIn();
    h.upstream.reset();
    await portal(app, '/en', fresh).set('X-Request-Id', 'portal-link-1').expect(302);
    await download(app, INVOICE, fresh).set('X-Request-Id', 'download-link-1').expect(302);
    const idsOf = (url: string) => h.upstream.requests.filter((r) => r.url === url).map((r) => r.headers['x-request-id']);
    expect(idsOf('/api/sys/users/token/refresh')).toEqual(['portal-link-1']);
    expect(idsOf('/api/auth/media/customer')).toEqual(['download-link-1']);
  });

  it('portal_link_answers_a_bare_302_with_no_store_and_no_referrer', async () => {
    expectBare302(await portal(app, '/en/invoices', cookie));
  });

  it('two_portal_links_fetch_two_different_one_time_tokens', async () => {
    h.upstream.reset();
    const a = await portal(app, '/en', cookie);
    const b = await portal(app, '/en', cookie);
    expect(h.upstream.stats.oneTimeTokens).toBe(2);
    expect(tOf(String(a.headers.location))).not.toBe(tOf(String(b.headers.location)));
  });

  it('concurrent_portal_links_each_get_their_own_one_time_token', async () => {
    h.upstream.reset();
    const answers = await Promise.all(Array.from({ length: 10 }, () => portal(app, '/en', cookie)));
    expect(h.upstream.stats.oneTimeTokens).toBe(10);
    expect(new Set(answers.map((r) => tOf(String(r.headers.location)))).size).toBe(10);
  });

  it('portal_link_when_upstream_says_not_successful_should_fail_with_token_unavailable', async () => {
    h.upstream.reset();
    h.upstream.oneTimeTokenFails = true;
    try {
      // Seed 000: the envelope's Status mirrors the HTTP status, 500 on failure.
      const direct = await fetch(`${h.upstream.url}/api/sys/users/token/refresh`, {
        method: 'POST',
        headers: { authorization: `Bearer ${h.upstream.mintAccessToken(DEMO.email, 60)}` },
      });
      expect(direct.status).toBe(500);
      expect(await direct.json()).toEqual({ WasSuccessful: false, Value: null, Status: 500, Message: 'failed', Errors: null });
      const res = await portal(app, '/en', cookie);
      expect(res.status).toBe(502);
      expect(res.body).toEqual({ error: 'token_unavailable', message: expect.any(String) });
      expect(res.headers.location).toBeUndefined();
    } finally {
      h.upstream.oneTimeTokenFails = false;
    }
  });

  it('portal_link_without_portal_url_should_fail_with_not_found', async () => {
    h.upstream.reset();
    const res = await portal(bare, '/en', cookie);
    expect(res.status).toBe(404);
    expect(res.body.error).toBe('not_found');
    expect(h.upstream.stats.oneTimeTokens).toBe(0);
  });

  it.each([
    ['protocol_relative', '//evil.example'],
    ['backslash', '/\\evil.example'],
    ['absolute', 'https://evil.example/en'],
    ['javascript', 'javascript:alert(1)'],
    ['no_leading_slash', 'en/invoices'],
    ['encoded_slashes', '/%2f%2fexample.com'],
    ['encoded_tab', '//%09/example.com'],
    ['encoded_backslash', '/%5cexample.com'],
    ['fully_encoded_url', '%68%74%74%70%3a%2f%2f%67%6f%6f%67%6c%65%2e%63%6f%6d'],
    ['double_encoded_slashes', '/%252f%252fevil.example'],
    ['control_character', '/en\r\nSet-Cookie: x=1'],
    ['undecodable', '/en/%zz'],
    ['too_long', `/${'a'.repeat(2048)}`],
  ])('portal_link_with_%s_redirect_url_should_fail_with_invalid_redirect', async (_name, target) => {
    h.upstream.reset();
    const res = await portal(app, target, cookie);
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ error: 'invalid_redirect', message: expect.any(String) });
    expect(h.upstream.stats.oneTimeTokens).toBe(0);
  });

  it('portal_link_with_a_redirect_url_of_2048_characters_is_accepted', async () => {
    const res = await portal(app, `/${'a'.repeat(2047)}`, cookie);
    expect(res.status).toBe(302);
  });

  it('portal_link_with_repeated_redirect_url_should_fail_with_invalid_redirect', async () => {
    const res = await request(app.url).get('/links/portal?redirectUrl=%2Fa&redirectUrl=%2Fb').set('Cookie', cookie);
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_redirect');
  });

  it('portal_link_with_every_known_open_redirect_either_refuses_or_stays_on_the_portal', async () => {
    const lines = readFileSync(new URL('../../shared/data/openredirects.txt', import.meta.url), 'utf8').split('\n');
    if (lines.at(-1) === '') lines.pop();
    expect(lines.length).toBeGreaterThan(500);
    const problems: string[] = [];
    let accepted = 0;
    for (const line of lines) {
      const res = await portal(app, line, cookie);
      if (res.status === 400 && res.body.error === 'invalid_redirect') continue;
      if (res.status !== 302) {
        problems.push(`${JSON.stringify(line)}: ${res.status}`);
        continue;
      }
      accepted += 1;
      const location = new URL(String(res.headers.location));
      const redirect = location.searchParams.get('redirectUrl');
      if (line === '') {
        if (redirect !== null) problems.push('empty line: redirectUrl present');
        continue;
      }
      if (redirect !== line) problems.push(`${JSON.stringify(line)}: forwarded as ${JSON.stringify(redirect)}`);
      // Every decoding the portal might apply must still be a single-slash path on the portal's origin.
      let stage = redirect ?? '';
      for (;;) {
        const local = /^\/(?![/\\])/.test(stage) && !/[\\\u0000-\u001f\u007f-\u009f]/.test(stage)
          && new URL(stage, PORTAL_ORIGIN).origin === PORTAL_ORIGIN && !new URL(stage, PORTAL_ORIGIN).pathname.startsWith('//');
        if (!local) {
          problems.push(`${JSON.stringify(line)}: ${JSON.stringify(stage)} leaves the portal`);
          break;
        }
        let next: string;
        try {
          next = decodeURIComponent(stage);
        } catch {
          problems.push(`${JSON.stringify(line)}: undecodable yet accepted`);
          break;
        }
        if (next === stage) break;
        stage = next;
      }
    }
    expect(problems).toEqual([]);
    // Some harmless local paths are in the list; the property must not pass by refusing everything.
    expect(accepted).toBeGreaterThan(0);
  }, 60_000);
});

describe('links without a session', () => {
  it('download_link_without_session_should_fail_with_unauthenticated', async () => {
    h.upstream.reset();
    const res = await download(bare, INVOICE);
    expect(res.status).toBe(401);
    expect(res.body).toEqual({ error: 'unauthenticated', message: expect.any(String) });
    expect(h.upstream.stats.mediaTokens).toBe(0);
  });

  it('portal_link_without_session_should_fail_with_unauthenticated', async () => {
    const res = await portal(plainLogin, '/en');
    expect(res.status).toBe(401);
    expect(res.body.error).toBe('unauthenticated');
  });

  it('download_link_without_session_redirects_to_login_page_with_return_to', async () => {
    const res = await download(app, INVOICE);
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe(`/login?returnTo=${encodeURIComponent(`/links/download?path=${encodeURIComponent(INVOICE)}`)}`);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.text).toBe('');
  });

  it('portal_link_without_session_redirects_to_login_page_with_return_to', async () => {
    const res = await portal(app, '/en/invoices');
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe(`/login?returnTo=${encodeURIComponent('/links/portal?redirectUrl=%2Fen%2Finvoices')}`);
    expect(res.headers['cache-control']).toBe('no-store');
  });

  it('login_redirect_keeps_a_login_page_url_query_and_fragment_in_place', async () => {
    const inst = await h.start({ LOGIN_PAGE_URL: 'https://app.example.com/sign-in?lang=en#top' });
    const res = await download(inst, INVOICE);
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe(`https://app.example.com/sign-in?lang=en&returnTo=${encodeURIComponent(`/links/download?path=${encodeURIComponent(INVOICE)}`)}#top`);
  });

  it('link_with_a_forged_cookie_is_treated_as_no_session', async () => {
    const res = await download(bare, INVOICE, 'bff.sid=s%3A%7Babc%7D.forged');
    expect(res.status).toBe(401);
    expect(res.body.error).toBe('unauthenticated');
  });

  it('link_with_an_ended_session_redirects_to_login_page', async () => {
    const cookie = await signIn();
    await request(app.url).post('/auth/logout').set('X-CSRF', '1').set('Cookie', cookie).expect(204);
    const res = await download(app, INVOICE, cookie);
    expect(res.status).toBe(302);
    expect(String(res.headers.location)).toMatch(/^\/login\?returnTo=/);
    const plain = await download(bare, INVOICE, cookie);
    expect(plain.status).toBe(401);
    expect(plain.body.error).toBe('unauthenticated');
  });

  it('bad_link_without_session_is_a_400_not_a_login_redirect', async () => {
    const a = await download(app, '//evil.example/x');
    expect(a.status).toBe(400);
    expect(a.body.error).toBe('invalid_path');
    const b = await portal(app, '//evil.example');
    expect(b.status).toBe(400);
    expect(b.body.error).toBe('invalid_redirect');
  });
});

describe('links and token refresh', () => {
  it('download_link_after_upstream_rejects_the_access_token_refreshes_once_and_succeeds', async () => {
    const cookie = await signIn();
    h.upstream.expireAllAccessTokens();
    h.upstream.reset();
    const res = await download(app, INVOICE, cookie);
    expect(res.status).toBe(302);
    expect(h.upstream.stats.refreshGrants).toBe(1);
    expect(h.upstream.stats.mediaTokens).toBe(1);
    // The new access token was stored: the next call needs no refresh.
    await request(app.url).get('/api/auth/me').set('X-CSRF', '1').set('Cookie', cookie).expect(200);
    expect(h.upstream.stats.refreshGrants).toBe(1);
  });

  it('concurrent_portal_links_after_access_token_rejection_cause_exactly_one_refresh', async () => {
    const cookie = await signIn();
    h.upstream.expireAllAccessTokens();
    h.upstream.reset();
    const answers = await Promise.all(Array.from({ length: 10 }, () => portal(app, '/en', cookie)));
    expect(answers.map((r) => r.status)).toEqual(Array(10).fill(302));
    expect(h.upstream.stats.refreshGrants).toBe(1);
    expect(h.upstream.stats.oneTimeTokens).toBe(10);
  });

  it('link_whose_refresh_is_refused_ends_the_session_and_asks_to_sign_in', async () => {
    const cookie = await signIn();
    h.upstream.expireAllAccessTokens();
    h.upstream.reset();
    h.upstream.faults.refresh.push('invalid_grant');
    const res = await download(app, INVOICE, cookie);
    expect(res.status).toBe(302);
    expect(String(res.headers.location)).toMatch(/^\/login\?returnTo=/);
    const again = await download(bare, INVOICE, cookie);
    expect(again.status).toBe(401);
  });

  it('link_whose_refresh_fails_upstream_keeps_the_session_and_answers_502', async () => {
    const cookie = await signIn();
    h.upstream.expireAllAccessTokens();
    h.upstream.reset();
    h.upstream.faults.refresh.push('http500');
    const res = await download(app, INVOICE, cookie);
    expect(res.status).toBe(502);
    expect(res.body.error).toBe('upstream_unavailable');
    expect((await download(app, INVOICE, cookie)).status).toBe(302);
  });
});

/** A stand-in upstream that misbehaves in one chosen way on the two link endpoints. */
type StubMode = 'http500' | 'garbage' | 'hang' | 'null_value' | 'no_jwt';

async function startStub(): Promise<{ url: string; mode: { current: StubMode }; close(): Promise<void> }> {
  const mode = { current: 'http500' as StubMode };
  const sockets = new Set<Socket>();
  const send = (res: ServerResponse, status: number, body: string) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(body);
  };
  const server: Server = createServer((req, res) => {
    req.resume();
    switch (mode.current) {
      case 'http500':
        return send(res, 500, '{"Message":"boom"}');
      case 'garbage':
        return send(res, 200, '{not json');
      case 'hang':
        return;
      case 'null_value':
        return send(res, 200, '{"WasSuccessful":true,"Value":null,"Status":200}');
      case 'no_jwt':
        return send(res, 200, '{"jwt":42}');
    }
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    mode,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}

describe('the one-time token at the portal (seed 000: single use)', () => {
  /** PORTAL_URL on the fake upstream, whose portal login takes a one-time token once. */
  let viaFake: Instance;
  let cookie: string;
  beforeAll(async () => {
    viaFake = await h.start({ PORTAL_URL: `${h.upstream.url}/en` });
    cookie = await signIn();
  });
  const follow = (location: string) => fetch(location, { redirect: 'manual' });

  it('a_portal_link_signs_in_at_the_portal_once_and_following_it_again_is_refused', async () => {
    const link = await portal(viaFake, '/en/invoices', cookie);
    expect(link.status).toBe(302);
    const location = String(link.headers.location);
    const first = await follow(location);
    expect(first.status).toBe(302);
    expect(first.headers.get('location')).toBe('/en/invoices');
    expect((await follow(location)).status).toBe(401);
    // The next link is a new token, taken once too.
    const next = String((await portal(viaFake, '/en/invoices', cookie)).headers.location);
    expect(tOf(next)).not.toBe(tOf(location));
    expect((await follow(next)).status).toBe(302);
    expect((await follow(next)).status).toBe(401);
  });
});

describe('links when upstream misbehaves', () => {
  let stub: Awaited<ReturnType<typeof startStub>>;
  let broken: Instance;
  let down: Instance;
  let cookie: string;
  beforeAll(async () => {
    stub = await startStub();
    broken = await h.start({ UPSTREAM_URL: stub.url, PORTAL_URL: PORTAL, UPSTREAM_TIMEOUT: '1' });
    down = await h.start({ UPSTREAM_URL: `http://127.0.0.1:${await freePort()}`, PORTAL_URL: PORTAL });
    // The session is made against the real fake upstream and read from the shared Redis.
    cookie = await signIn();
  });
  afterAll(async () => {
    await stub.close();
  });

  it.each<['http500' | 'garbage' | 'no_jwt' | 'hang', number, string]>([
    ['http500', 502, 'upstream_unavailable'],
    ['garbage', 502, 'upstream_unavailable'],
    ['no_jwt', 502, 'upstream_unavailable'],
    ['hang', 504, 'upstream_timeout'],
  ])('download_link_when_media_endpoint_gives_%s_should_fail_with_%i', async (mode, status, code) => {
    stub.mode.current = mode;
    const res = await download(broken, INVOICE, cookie);
    expect(res.status).toBe(status);
    expect(res.body).toEqual({ error: code, message: expect.any(String) });
  });

  it.each<['http500' | 'garbage' | 'null_value' | 'hang']>([
    ['http500'],
    ['garbage'],
    ['null_value'],
    ['hang'],
  ])('portal_link_when_one_time_endpoint_gives_%s_should_fail_with_token_unavailable', async (mode) => {
    stub.mode.current = mode;
    const res = await portal(broken, '/en', cookie);
    expect(res.status).toBe(502);
    expect(res.body).toEqual({ error: 'token_unavailable', message: expect.any(String) });
  });

  it('download_link_with_upstream_unreachable_should_fail_with_upstream_unavailable', async () => {
    const res = await download(down, INVOICE, cookie);
    expect(res.status).toBe(502);
    expect(res.body.error).toBe('upstream_unavailable');
  });

  it('portal_link_with_upstream_unreachable_should_fail_with_token_unavailable', async () => {
    const res = await portal(down, '/en', cookie);
    expect(res.status).toBe(502);
    expect(res.body.error).toBe('token_unavailable');
  });

  it('failed_download_link_is_not_cached_and_the_next_one_works', async () => {
    stub.mode.current = 'http500';
    await download(broken, INVOICE, cookie).expect(502);
    h.upstream.reset();
    await download(app, INVOICE, cookie).expect(302);
    expect(h.upstream.stats.mediaTokens).toBe(1);
  });
});

describe('link metrics', () => {
  it('links_are_counted_by_kind_and_outcome', async () => {
    const cookie = await signIn();
    const before = {
      issued: await linksCount(app, 'download', 'issued'),
      refused: await linksCount(app, 'download', 'refused'),
      portalIssued: await linksCount(app, 'portal', 'issued'),
      portalFailed: await linksCount(app, 'portal', 'failed'),
    };
    await download(app, INVOICE, cookie).expect(302);
    await download(app, '/nope', cookie).expect(400);
    await download(app, INVOICE).expect(302); // to the login page: refused
    await portal(app, '/en', cookie).expect(302);
    h.upstream.oneTimeTokenFails = true;
    try {
      await portal(app, '/en', cookie).expect(502);
    } finally {
      h.upstream.oneTimeTokenFails = false;
    }
    expect(await linksCount(app, 'download', 'issued')).toBe(before.issued + 1);
    expect(await linksCount(app, 'download', 'refused')).toBe(before.refused + 2);
    expect(await linksCount(app, 'portal', 'issued')).toBe(before.portalIssued + 1);
    expect(await linksCount(app, 'portal', 'failed')).toBe(before.portalFailed + 1);
    const text = await request(app.url).get('/metrics');
    expect(text.text).toMatch(/cloakroom_links_total\{kind="download",outcome="issued"\} \d+/);
    expect(text.text).toMatch(/cloakroom_http_requests_total\{route="\/links\/download",status="302"\}/);
  });
});
