import { expect } from '@jest/globals';
import { createHash, randomBytes } from 'node:crypto';
import request from 'supertest';
import { runCli } from '../../src/cli.js';
import { DEMO, TEST_TOKEN_KEY, type Harness, type Instance } from './harness.js';

const OTHER = { email: 'other@example.com', password: 'other-password' } as const;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const keyId = (b64: string) => createHash('sha256').update(Buffer.from(b64, 'base64')).digest('base64url').slice(0, 8);

async function signIn(instance: Instance, who: { email: string; password: string }): Promise<string> {
  const res = await request(instance.url).post('/auth/login').set('X-CSRF', '1').send(who);
  expect(res.status).toBe(200);
  return ([] as string[]).concat(res.headers['set-cookie'] ?? [])[0]?.split(';')[0] ?? '';
}
const api = (instance: Instance, cookie: string) => request(instance.url).get('/api/data').set('X-CSRF', '1').set('Cookie', cookie);

async function reseal(env: Record<string, string>): Promise<{ resealed: number; skipped: number; unreadable: number }> {
  let out = '';
  let err = '';
  const code = await runCli(['reseal'], { env, out: (t) => (out += t), err: (t) => (err += t) });
  expect({ code, err }).toEqual({ code: 0, err: '' });
  const m = /^resealed (\d+), skipped (\d+) .*unreadable (\d+) /.exec(out);
  if (!m) throw new Error(`unexpected reseal output: ${out}`);
  return { resealed: Number(m[1]), skipped: Number(m[2]), unreadable: Number(m[3]) };
}

/**
 * Sessions sealed under an old key; instances that seal with a new one and still open the old;
 * `cloakroom reseal` while every session refreshes on both instances (upstream rotates the
 * refresh token each time); then the old key removed: every session still works, and refreshes
 * once more, so no rotated refresh token was lost.
 */
export async function resealWhileRefreshing(h: Harness, opts: { env: Record<string, string>; sessions: number; tokenRecords: () => Promise<string[]> }): Promise<void> {
  const NEW = randomBytes(32).toString('base64');
  const cliEnv = { ...opts.env, TOKEN_ENCRYPTION_KEY: `${NEW},${TEST_TOKEN_KEY}` };
  const old = await h.start({ ...opts.env, TOKEN_ENCRYPTION_KEY: TEST_TOKEN_KEY });
  const cookies: string[] = [];
  for (let i = 0; i < opts.sessions; i++) cookies.push(await signIn(old, i % 2 ? OTHER : DEMO));
  const a = await h.start({ ...opts.env, TOKEN_ENCRYPTION_KEY: `${NEW},${TEST_TOKEN_KEY}`, REFRESH_SKEW: '0' });
  const b = await h.start({ ...opts.env, TOKEN_ENCRYPTION_KEY: `${NEW},${TEST_TOKEN_KEY}`, REFRESH_SKEW: '0' });

  // Refreshes in flight across the reseal: each round revokes every access token upstream, so
  // every request refreshes (single-flight) and upstream rotates that session's refresh token.
  h.upstream.refreshDelayMs = 15;
  const refreshesBefore = h.upstream.stats.refreshGrants;
  const failures: string[] = [];
  let stop = false;
  let rounds = 0;
  const storm = (async () => {
    while (!stop || rounds < 2) {
      h.upstream.expireAllAccessTokens();
      await Promise.all(cookies.map(async (c, i) => {
        const res = await api(i % 2 ? a : b, c);
        if (res.status !== 200) failures.push(`${i}: ${res.status} ${JSON.stringify(res.body)}`);
      }));
      rounds += 1;
    }
  })();
  let first;
  try {
    await sleep(5);
    first = await reseal(cliEnv);
  } finally {
    stop = true;
    await storm;
  }
  h.upstream.refreshDelayMs = 0;
  expect(failures).toEqual([]);
  expect(h.upstream.stats.refreshGrants - refreshesBefore).toBeGreaterThanOrEqual(opts.sessions * 2);
  // Every record was looked at once: resealed by us, or already resealed by a refresh.
  expect(first.resealed + first.skipped).toBe(opts.sessions);
  expect(first.unreadable).toBe(0);

  // Idempotent: nothing left to do.
  expect(await reseal(cliEnv)).toEqual({ resealed: 0, skipped: opts.sessions, unreadable: 0 });
  const records = await opts.tokenRecords();
  expect(records).toHaveLength(opts.sessions);
  for (const raw of records) expect((JSON.parse(raw) as { s: string }).s.split('.')[1]).toBe(keyId(NEW));

  // An instance without the old key: every session works, and its stored refresh token is the live one.
  const c = await h.start({ ...opts.env, TOKEN_ENCRYPTION_KEY: NEW });
  for (const cookie of cookies) expect((await api(c, cookie)).status).toBe(200);
  h.upstream.expireAllAccessTokens();
  for (const cookie of cookies) {
    const res = await api(c, cookie);
    expect({ status: res.status, body: res.status === 200 ? null : res.body }).toEqual({ status: 200, body: null });
  }
}
