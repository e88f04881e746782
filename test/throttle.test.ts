import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { DEMO, startHarness, type Harness, type Instance, closeExpectingNoLeaks } from './support/harness.js';

/**
 * Failed sign-ins are counted in Redis per email (LOGIN_MAX_FAILURES) and per client address
 * (five times that), shared by every instance. Two instances, one Redis, max 3.
 */

const MAX = 3;
const OTHER = { email: 'other@example.com', password: 'other-password' } as const;

let h: Harness;
let a: Instance;
let b: Instance;

beforeAll(async () => {
  h = await startHarness();
  a = await h.start({ LOGIN_MAX_FAILURES: String(MAX) });
  b = await h.start({ LOGIN_MAX_FAILURES: String(MAX) });
});
afterAll(() => closeExpectingNoLeaks(h));
// Every test starts from clean counters; they all come from 127.0.0.1.
beforeEach(async () => {
  const keys = await h.inspect.keys('cr:rl:*');
  if (keys.length > 0) await h.inspect.del(...keys);
});

interface LoginAnswer {
  status: number;
  error: string | undefined;
  retryAfter: string | null;
  contentType: string | null;
}

async function login(instance: Instance, email: string, password: string, headers: Record<string, string> = {}): Promise<LoginAnswer> {
  const res = await fetch(`${instance.url}/auth/login`, {
    method: 'POST',
    headers: { 'x-csrf': '1', 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ email, password }),
  });
  const body = (await res.json()) as { error?: string };
  return { status: res.status, error: body.error, retryAfter: res.headers.get('retry-after'), contentType: res.headers.get('content-type') };
}

const fail = (instance: Instance, email: string, headers: Record<string, string> = {}) => login(instance, email, 'wrong-password', headers);

function expectRateLimited(res: LoginAnswer): void {
  expect(res.status).toBe(429);
  expect(res.error).toBe('rate_limited');
  expect(res.contentType).toMatch(/^application\/json/);
  expect(res.retryAfter).toMatch(/^\d+$/);
  const seconds = Number(res.retryAfter);
  expect(seconds).toBeGreaterThanOrEqual(1);
  expect(seconds).toBeLessThanOrEqual(15 * 60);
}

describe('per email', () => {
  it('spellings_with_zero_width_characters_fullwidth_letters_or_other_case_share_one_count', async () => {
    const variants = ['o\u200Bther@example.com', 'ＯＴＨＥＲ@example.com', ' Other@Example.com\u00AD', 'oth\uFEFFer@exa\u2060mple.com'];
    for (const v of variants.slice(0, MAX)) expect((await fail(a, v)).status).toBe(401);
    expectRateLimited(await fail(b, variants[MAX] ?? OTHER.email));
    expectRateLimited(await login(a, OTHER.email, OTHER.password));
  });

  it('failures_on_instance_a_count_on_instance_b_and_then_even_the_right_password_gets_429_without_calling_upstream', async () => {
    expect((await fail(a, OTHER.email)).status).toBe(401);
    expect((await fail(a, OTHER.email)).status).toBe(401);
    expect((await fail(b, OTHER.email)).status).toBe(401);

    const grants = h.upstream.stats.passwordGrants;
    expectRateLimited(await login(a, OTHER.email, OTHER.password));
    expectRateLimited(await login(b, OTHER.email, OTHER.password));
    // Case and surrounding spaces do not make a new email.
    expectRateLimited(await login(b, ` ${OTHER.email.toUpperCase()} `, OTHER.password));
    expect(h.upstream.stats.passwordGrants).toBe(grants);
  });

  it('a_successful_login_resets_the_emails_count', async () => {
    expect((await fail(a, OTHER.email)).status).toBe(401);
    expect((await fail(b, OTHER.email)).status).toBe(401);
    expect((await login(a, OTHER.email, OTHER.password)).status).toBe(200);
    // Without the reset these two would make four failures, and the next attempt a 429.
    expect((await fail(b, OTHER.email)).status).toBe(401);
    expect((await fail(a, OTHER.email)).status).toBe(401);
    expect((await login(b, OTHER.email, OTHER.password)).status).toBe(200);
  });

  it('the_limit_is_per_email_another_user_from_the_same_address_still_signs_in', async () => {
    for (let i = 0; i < MAX; i += 1) expect((await fail(i % 2 ? a : b, OTHER.email)).status).toBe(401);
    expectRateLimited(await login(a, OTHER.email, OTHER.password));
    expect((await login(a, DEMO.email, DEMO.password)).status).toBe(200);
  });

  it('a_burst_of_concurrent_wrong_passwords_reaches_upstream_at_most_max_times', async () => {
    const grants = h.upstream.stats.passwordGrants;
    const answers = await Promise.all(Array.from({ length: 24 }, (_, i) => fail(i % 2 ? a : b, OTHER.email)));
    const statuses = answers.map((r) => r.status);
    // Counting after the upstream answer would let every parallel guess through the check.
    expect(h.upstream.stats.passwordGrants - grants).toBeLessThanOrEqual(MAX);
    expect(statuses.filter((s) => s === 401)).toHaveLength(h.upstream.stats.passwordGrants - grants);
    expect(statuses.filter((s) => s === 429)).toHaveLength(24 - (h.upstream.stats.passwordGrants - grants));
    expectRateLimited(await login(a, OTHER.email, OTHER.password));
  });
});

describe('per client address', () => {
  it('five_times_max_failures_with_different_emails_from_one_address_give_429_and_forwarded_for_does_not_help', async () => {
    for (let i = 0; i < 5 * MAX; i += 1) {
      // Spoofed client addresses: TRUST_PROXY is false, so only the socket address counts.
      const res = await fail(i % 2 ? a : b, `nobody-${i}@example.com`, { 'x-forwarded-for': `198.51.100.${i + 1}` });
      expect(res.status).toBe(401);
    }
    expect(await h.inspect.get('cr:rl:addr:127.0.0.1')).toBe(String(5 * MAX));
    expect(await h.inspect.keys('cr:rl:addr:198.51.100.*')).toEqual([]);

    const grants = h.upstream.stats.passwordGrants;
    expectRateLimited(await login(a, DEMO.email, DEMO.password, { 'x-forwarded-for': '203.0.113.50' }));
    expectRateLimited(await fail(b, 'fresh@example.com'));
    expect(h.upstream.stats.passwordGrants).toBe(grants);
  });

  it('behind_a_trusted_proxy_the_address_counted_is_the_forwarded_client_not_the_proxy', async () => {
    const behindProxy = await h.start({ LOGIN_MAX_FAILURES: String(MAX), TRUST_PROXY: 'loopback' });
    expect((await fail(behindProxy, 'someone@example.com', { 'x-forwarded-for': '203.0.113.9' })).status).toBe(401);
    expect(await h.inspect.get('cr:rl:addr:203.0.113.9')).toBe('1');
    expect(await h.inspect.exists('cr:rl:addr:127.0.0.1')).toBe(0);
  });

  it('successful_sign_ins_and_must_reset_answers_are_not_failures_and_never_reach_the_limit', async () => {
    for (let i = 0; i <= 5 * MAX; i += 1) expect((await login(i % 2 ? a : b, DEMO.email, DEMO.password)).status).toBe(200);
    for (let i = 0; i <= MAX; i += 1) expect((await login(a, 'reset@example.com', 'reset-password')).error).toBe('must_reset_password');
    expect(Number((await h.inspect.get('cr:rl:addr:127.0.0.1')) ?? 0)).toBe(0);
  });

  it('the_counters_hold_digests_not_emails', async () => {
    expect((await fail(a, OTHER.email)).status).toBe(401);
    const keys = await h.inspect.keys('cr:rl:email:*');
    expect(keys).toHaveLength(1);
    expect(keys[0]).not.toContain('example.com');
  });
});
