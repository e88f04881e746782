/**
 * Short session timeouts work as set (contract: "short values are how operators try timeouts
 * out in staging, and they must work as set"): SESSION_IDLE_TIMEOUT=3, SESSION_ABSOLUTE_TIMEOUT=8,
 * real Redis, two instances, wall-clock time. Both sessions run side by side (about 9 s).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { DEMO, startHarness, type Harness, type Instance, closeExpectingNoLeaks } from './support/harness.js';

let h: Harness;
let a: Instance;
let b: Instance;

beforeAll(async () => {
  h = await startHarness();
  const env = { SESSION_IDLE_TIMEOUT: '3', SESSION_ABSOLUTE_TIMEOUT: '8' };
  a = await h.start(env);
  b = await h.start(env);
});
afterAll(() => closeExpectingNoLeaks(h));

const until = (t: number) => new Promise((r) => setTimeout(r, Math.max(0, t - Date.now())));

async function signIn(instance: Instance): Promise<{ cookie: string; before: number; after: number }> {
  const before = Date.now();
  const res = await fetch(`${instance.url}/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-csrf': '1' },
    body: JSON.stringify(DEMO),
  });
  const after = Date.now();
  expect(res.status).toBe(200);
  const cookie = (res.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
  expect(cookie).toMatch(/^bff\.sid=s%3A/);
  return { cookie, before, after };
}

interface Probe { sent: number; answered: number; status: number }
async function api(instance: Instance, cookie: string): Promise<Probe> {
  const sent = Date.now();
  const res = await fetch(`${instance.url}/api/auth/me`, { headers: { cookie, 'x-csrf': '1' } });
  await res.arrayBuffer();
  return { sent, answered: Date.now(), status: res.status };
}
async function session(instance: Instance, cookie: string) {
  const sent = Date.now();
  const res = await fetch(`${instance.url}/auth/session`, { headers: { cookie } });
  const body = (await res.json()) as { authenticated: boolean; expiresAt?: string };
  return { sent, answered: Date.now(), body };
}

describe('short session timeouts through two instances', () => {
  it('requests_every_second_keep_a_session_until_the_absolute_end_and_an_idle_one_ends_after_the_idle_timeout', async () => {
    const busy = async () => {
      const login = await signIn(a);
      const first = await session(b, login.cookie);
      // Idle end from now, before the absolute end: the earlier of the two (contract).
      expect(Date.parse(first.body.expiresAt ?? '')).toBeGreaterThanOrEqual(first.sent + 3000 - 5);
      expect(Date.parse(first.body.expiresAt ?? '')).toBeLessThanOrEqual(first.answered + 3000 + 5);
      const probes: Probe[] = [];
      let late: { sent: number; answered: number; body: { authenticated: boolean; expiresAt?: string } } | null = null;
      for (let i = 0; Date.now() < login.after + 8000 + 700; i++) {
        await until(login.before + 900 * (i + 1));
        probes.push(await api(i % 2 ? a : b, login.cookie));
        // Past the idle window of the sign-in: the absolute end is now the earlier one.
        if (!late && Date.now() > login.after + 5500) late = await session(i % 2 ? b : a, login.cookie);
      }
      return { login, probes, late };
    };

    const idle = async () => {
      const login = await signIn(a);
      await until(login.after + 100);
      const touched = await api(a, login.cookie);
      await until(login.after + 900);
      // Within what used to be one touch interval (1 s) of the previous request, on the same instance.
      const last = await api(a, login.cookie);
      await until(last.answered + 2500);
      const stillThere = await api(b, login.cookie);
      await until(stillThere.answered + 4000);
      const gone = await api(a, login.cookie);
      return { touched, last, stillThere, gone };
    };

    const [kept, left] = await Promise.all([busy(), idle()]);

    const { login, probes, late } = kept;
    const end = { earliest: login.before + 8000, latest: login.after + 8000 };
    expect(probes.filter((p) => p.answered < end.earliest - 50).map((p) => p.status).every((s) => s === 200)).toBe(true);
    expect(probes.filter((p) => p.answered < end.earliest - 50).length).toBeGreaterThanOrEqual(7);
    const after = probes.filter((p) => p.sent > end.latest + 50);
    expect(after.length).toBeGreaterThanOrEqual(1);
    expect(after.map((p) => p.status)).toEqual(after.map(() => 401));
    expect(late?.body.authenticated).toBe(true);
    expect(Date.parse(late?.body.expiresAt ?? '')).toBeGreaterThanOrEqual(end.earliest);
    expect(Date.parse(late?.body.expiresAt ?? '')).toBeLessThanOrEqual(end.latest);

    expect([left.touched.status, left.last.status]).toEqual([200, 200]);
    // 2.5 s after the last request the session still lives (it may end one touch interval early, no more)...
    expect(left.stillThere.status).toBe(200);
    // ...and 4 s after the last one (idle 3 s) it is gone, on the other instance too.
    expect(left.gone.status).toBe(401);
  }, 20_000);
});
