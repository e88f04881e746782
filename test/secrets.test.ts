import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { DEMO_USERS } from '../scripts/fake-upstream/index.js';
import { createTokenSealer } from '../src/core/token-crypto.js';
import { decodeRecord } from '../src/store/token-store.js';
import { DEMO, startHarness, type Harness, type Instance, closeExpectingNoLeaks } from './support/harness.js';
import { freePort } from '../scripts/redis-server.js';

/**
 * SESSION_SECRET and TOKEN_ENCRYPTION_KEY rotation across instances that share one Redis:
 * the first entry signs and seals, every entry verifies and opens. And nothing secret in the
 * logs of everything this file does.
 */

const OLD_SECRET = 'old-session-secret-0123456789-abcdefghijkl';
const NEW_SECRET = 'new-session-secret-0123456789-abcdefghijkl';
const OLD_KEY = Buffer.alloc(32, 1);
const NEW_KEY = Buffer.alloc(32, 2);
const b64 = (k: Buffer) => k.toString('base64');

let h: Harness;
/** Before rotation: old secret, old key. */
let a: Instance;
/** During rotation: new first (signs, seals), old still accepted. */
let b: Instance;
/** After rotation: the old ones are gone. */
let c: Instance;
/** Key dropped too early: the old cookie still verifies, the old tokens no longer open. */
let d: Instance;

/** Every session cookie value handed out in this file, to look for in the logs. */
const cookieValues: string[] = [];

beforeAll(async () => {
  h = await startHarness();
  // debug: the proxy's per-request log lines are written too, so there is more to scan.
  a = await h.start({ SESSION_SECRET: OLD_SECRET, TOKEN_ENCRYPTION_KEY: b64(OLD_KEY), LOG_LEVEL: 'debug' });
  b = await h.start({ SESSION_SECRET: `${NEW_SECRET},${OLD_SECRET}`, TOKEN_ENCRYPTION_KEY: `${b64(NEW_KEY)},${b64(OLD_KEY)}`, LOG_LEVEL: 'debug' });
  c = await h.start({ SESSION_SECRET: NEW_SECRET, TOKEN_ENCRYPTION_KEY: b64(NEW_KEY), LOG_LEVEL: 'debug' });
  d = await h.start({ SESSION_SECRET: `${NEW_SECRET},${OLD_SECRET}`, TOKEN_ENCRYPTION_KEY: b64(NEW_KEY), LOG_LEVEL: 'debug' });
});
afterAll(() => closeExpectingNoLeaks(h));

interface Answer {
  status: number;
  body: Record<string, unknown>;
  location: string | null;
}

async function call(instance: Instance, path: string, cookie: string, init: { method?: string; headers?: Record<string, string> } = {}): Promise<Answer> {
  const res = await fetch(`${instance.url}${path}`, {
    method: init.method ?? 'GET',
    headers: { cookie, 'x-csrf': '1', ...init.headers },
    redirect: 'manual',
  });
  const text = await res.text();
  return { status: res.status, body: text && (res.headers.get('content-type') ?? '').includes('json') ? (JSON.parse(text) as Record<string, unknown>) : {}, location: res.headers.get('location') };
}

/** Signs in on `instance`; returns the `bff.sid=...` pair and the session id. */
async function signIn(instance: Instance): Promise<{ cookie: string; sid: string }> {
  const res = await fetch(`${instance.url}/auth/login`, {
    method: 'POST',
    headers: { 'x-csrf': '1', 'content-type': 'application/json' },
    body: JSON.stringify(DEMO),
  });
  expect(res.status).toBe(200);
  await res.arrayBuffer();
  const cookie = (res.headers.getSetCookie().find((s) => s.startsWith('bff.sid=')) ?? '').split(';')[0] ?? '';
  const value = cookie.slice('bff.sid='.length);
  cookieValues.push(value, decodeURIComponent(value));
  const decoded = decodeURIComponent(value);
  return { cookie, sid: decoded.slice(2, decoded.lastIndexOf('.')) };
}

/** Which of the keys opens what Redis holds for `sid`. */
async function sealedWith(sid: string): Promise<'old' | 'new' | 'none'> {
  const rec = decodeRecord((await h.inspect.get(`cr:tok:${sid}`)) ?? '');
  if (!rec) return 'none';
  if (createTokenSealer([OLD_KEY]).open(rec.sealed, sid) !== null) return 'old';
  if (createTokenSealer([NEW_KEY]).open(rec.sealed, sid) !== null) return 'new';
  return 'none';
}

async function storedRefreshToken(sid: string): Promise<{ refreshToken: string; clientId: string }> {
  const rec = decodeRecord((await h.inspect.get(`cr:tok:${sid}`)) ?? '');
  const opened = rec ? createTokenSealer([NEW_KEY, OLD_KEY]).open(rec.sealed, sid) : null;
  const part = JSON.parse(opened ?? '{}') as { r: string; c: string };
  return { refreshToken: part.r, clientId: part.c };
}

const unauthenticatedEverywhere = async (instance: Instance, cookie: string) => {
  expect(await call(instance, '/auth/session', cookie)).toMatchObject({ status: 200, body: { authenticated: false } });
  expect(await call(instance, '/api/echo/x', cookie)).toMatchObject({ status: 401, body: { error: 'unauthenticated' } });
  expect(await call(instance, '/links/download?path=/api/public/files/a.pdf', cookie)).toMatchObject({ status: 401, body: { error: 'unauthenticated' } });
};

describe('rotation of SESSION_SECRET and TOKEN_ENCRYPTION_KEY', () => {
  it('a_session_made_before_rotation_works_on_an_instance_with_new_then_old', async () => {
    const { cookie, sid } = await signIn(a);
    expect(await sealedWith(sid)).toBe('old');
    expect(await call(b, '/auth/session', cookie)).toMatchObject({ status: 200, body: { authenticated: true, user: { email: DEMO.email } } });
    expect((await call(b, '/api/echo/on-b', cookie)).status).toBe(200);
    const link = await call(b, '/links/download?path=/api/public/files/a.pdf', cookie);
    expect(link.status).toBe(302);
    expect(link.location).toMatch(/\/api\/public\/files\/a\.pdf\?t=/);
  });

  it('tokens_refreshed_on_the_new_instance_are_sealed_with_the_new_key_and_keep_working_there', async () => {
    const { cookie, sid } = await signIn(a);
    h.upstream.expireAllAccessTokens();
    expect((await call(b, '/api/echo/refresh-on-b', cookie)).status).toBe(200);
    expect(await sealedWith(sid)).toBe('new');
    const stored = await storedRefreshToken(sid);
    expect(stored.refreshToken).toBe(h.upstream.liveRefreshToken(stored.clientId));
    expect((await call(b, '/api/echo/again-on-b', cookie)).status).toBe(200);
    expect((await call(b, '/auth/session', cookie)).body.authenticated).toBe(true);
  });

  it('a_session_made_during_rotation_is_signed_and_sealed_with_the_new_secrets_and_works_after_it', async () => {
    const { cookie, sid } = await signIn(b);
    expect(await sealedWith(sid)).toBe('new');
    expect((await call(c, '/api/echo/on-c', cookie)).status).toBe(200);
    expect((await call(c, '/auth/session', cookie)).body.authenticated).toBe(true);
    // The old-only instance cannot verify a cookie signed with the new secret.
    await unauthenticatedEverywhere(a, cookie);
  });

  it('after_rotation_a_session_from_before_it_is_unauthenticated_not_a_500', async () => {
    const { cookie } = await signIn(a);
    await unauthenticatedEverywhere(c, cookie);
    expect((await call(c, '/auth/logout', cookie, { method: 'POST' })).status).toBe(204);
    // Nothing was deleted by those refusals: the session still works where its secrets are known.
    expect((await call(b, '/api/echo/still-on-b', cookie)).status).toBe(200);
  });

  it('with_the_old_key_dropped_too_early_the_old_session_is_unauthenticated_on_every_route_not_a_500', async () => {
    const { cookie } = await signIn(a);
    await unauthenticatedEverywhere(d, cookie);
  });
});

describe('what the logs never carry', () => {
  it('failures_that_get_logged_carry_no_password_cookie_or_authorization', async () => {
    const secretPassword = 'correct-horse-battery-staple-4711';
    const basic = `Basic ${Buffer.from(`someone:${secretPassword}`).toString('base64')}`;
    const { cookie } = await signIn(b);
    // A refresh failing upstream is logged (warn) with its cause.
    h.upstream.expireAllAccessTokens();
    h.upstream.faults.refresh.push('http500');
    expect((await call(b, '/api/echo/refresh-fails', cookie, { headers: { authorization: basic } })).status).toBe(502);
    // A sign-in whose upstream is unreachable is logged (warn) too, with the password in its body.
    const dead = await h.start({ UPSTREAM_URL: `http://127.0.0.1:${await freePort()}`, LOG_LEVEL: 'debug' });
    const res = await fetch(`${dead.url}/auth/login`, {
      method: 'POST',
      headers: { 'x-csrf': '1', 'content-type': 'application/json', authorization: basic },
      body: JSON.stringify({ email: DEMO.email, password: secretPassword }),
    });
    expect(res.status).toBe(502);
    await res.arrayBuffer();
    // Both failures were logged, so there was something to leak into.
    expect(h.logs.filter((l) => /"level":40/.test(l) && /request failed/.test(l)).length).toBeGreaterThanOrEqual(2);
    expect(h.logs.join('\n')).not.toContain(secretPassword);
  });

  it('the_whole_files_logs_carry_no_token_password_cookie_value_or_authorization_value', async () => {
    const text = h.logs.join('\n');
    // Not vacuous: every request of this file was logged (its access line at info), failures at warn.
    expect(h.logs.length).toBeGreaterThan(20);
    expect(text).toMatch(/"level":30,.*"path":"\/api\/echo\//);
    expect(text).toMatch(/"level":40,/);
    const findings: string[] = [];
    for (const u of DEMO_USERS) if (text.includes(u.password)) findings.push(`password of ${u.email}`);
    for (const value of cookieValues) if (text.includes(value)) findings.push(`cookie value ${value.slice(0, 12)}...`);
    // The signature part alone, in case a value is logged after decoding or splitting.
    for (const value of cookieValues) {
      const sig = decodeURIComponent(value).split('.').pop() ?? '';
      if (sig.length >= 20 && text.includes(sig)) findings.push(`cookie signature ${sig.slice(0, 8)}...`);
    }
    if (/Bearer /i.test(text)) findings.push('a Bearer value');
    if (/Basic [A-Za-z0-9+/=]{8,}/.test(text)) findings.push('a Basic authorization value');
    if (/"authorization":"(?!\[redacted\])/i.test(text)) findings.push('an authorization header');
    if (/"cookie":"(?!\[redacted\])/i.test(text)) findings.push('a cookie header');
    for (const token of h.upstream.issuedTokens()) if (token.length >= 16 && text.includes(token)) findings.push(`token ${token.slice(0, 8)}...`);
    expect(findings).toEqual([]);
  });
});
