/**
 * A user's own devices, on a real redis-server with two instances sharing it: the list spans
 * instances, a delete or a sign-out everywhere on one instance ends the session on the other,
 * other users are spared, handles give nothing away, and sessions that time out leave the list
 * by themselves.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { DEMO, startHarness, closeExpectingNoLeaks, type Harness, type Instance } from './support/harness.js';

const OTHER = { email: 'other@example.com', password: 'other-password' } as const;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let h: Harness;
let a: Instance;
let b: Instance;

interface Listed { id: string; current: boolean; createdAt: string; lastSeenAt: string; userAgent: string }

async function signIn(instance: Instance, who: { email: string; password: string } = DEMO, userAgent = 'test-agent'): Promise<string> {
  const res = await request(instance.url).post('/auth/login').set('X-CSRF', '1').set('User-Agent', userAgent).send(who);
  expect(res.status).toBe(200);
  const cookie = ([] as string[]).concat(res.headers['set-cookie'] ?? [])[0]?.split(';')[0];
  if (!cookie) throw new Error('no session cookie');
  return cookie;
}
const list = async (instance: Instance, cookie: string): Promise<Listed[]> => {
  const res = await request(instance.url).get('/auth/sessions').set('Cookie', cookie);
  expect(res.status).toBe(200);
  return (res.body as { sessions: Listed[] }).sessions;
};
const api = (instance: Instance, cookie: string) => request(instance.url).get('/api/data').set('X-CSRF', '1').set('Cookie', cookie);
const sidOf = (cookie: string) => /\{[^}]+\}/.exec(decodeURIComponent(cookie))?.[0] ?? '';
const revoke = (instance: Instance, cookie: string, id: string) => request(instance.url).delete(`/auth/sessions/${id}`).set('X-CSRF', '1').set('Cookie', cookie);

/** Until the other instance answers 401 (the broadcast reaches it within milliseconds). */
async function until401(instance: Instance, cookie: string): Promise<number> {
  const started = Date.now();
  for (;;) {
    const res = await api(instance, cookie);
    if (res.status === 401) return Date.now() - started;
    if (Date.now() - started > 3000) throw new Error(`still ${res.status} after 3 s`);
    await sleep(20);
  }
}

beforeAll(async () => {
  h = await startHarness();
  a = await h.start();
  b = await h.start();
}, 30_000);

afterAll(async () => {
  await closeExpectingNoLeaks(h);
});

describe('GET /auth/sessions', () => {
  it('sessions_list_without_a_session_should_answer_401_unauthenticated', async () => {
    const res = await request(a.url).get('/auth/sessions');
    expect(res.status).toBe(401);
    expect(res.body.error).toBe('unauthenticated');
  });

  it('sessions_list_spans_instances_newest_first_marks_the_current_one_and_hides_ids', async () => {
    const phone = await signIn(a, DEMO, 'Phone/1.0');
    await sleep(5);
    const laptop = await signIn(b, DEMO, `Laptop/2.0 ${'x'.repeat(300)}`);
    const fromPhone = await list(a, phone);
    const mine = fromPhone.filter((s) => s.userAgent.startsWith('Phone/') || s.userAgent.startsWith('Laptop/'));
    expect(mine.map((s) => s.userAgent.slice(0, 6))).toEqual(['Laptop', 'Phone/']);
    expect(mine[0]?.userAgent).toHaveLength(200);
    expect(mine.map((s) => s.current)).toEqual([false, true]);
    expect(fromPhone.filter((s) => s.current)).toHaveLength(1);
    for (const s of mine) {
      expect(Number.isNaN(Date.parse(s.createdAt))).toBe(false);
      expect(Date.parse(s.lastSeenAt)).toBeGreaterThanOrEqual(Date.parse(s.createdAt));
      for (const cookie of [phone, laptop]) {
        expect(cookie).not.toContain(s.id);
        expect(s.id).not.toContain(sidOf(cookie).slice(1, -1));
      }
    }
    const fromLaptop = await list(b, laptop);
    expect(fromLaptop.find((s) => s.current)?.id).toBe(mine[0]?.id);
    // Another user sees none of these.
    const other = await signIn(a, OTHER);
    const theirs = await list(b, other);
    expect(theirs).toHaveLength(1);
    expect(theirs[0]?.current).toBe(true);
  });
});

describe('DELETE /auth/sessions/<id>', () => {
  it('deleting_a_session_listed_on_one_instance_ends_it_on_the_other', async () => {
    // Every instance hears of the end (token cache, hints, WebSockets) on the ended channel.
    const listener = h.inspect.duplicate();
    const announced: string[] = [];
    listener.on('message', (_channel: string, sid: string) => announced.push(sid));
    await listener.subscribe('cr:ended');
    const phone = await signIn(b, DEMO, 'LostPhone/1.0');
    expect((await api(b, phone)).status).toBe(200); // cached on b
    const laptop = await signIn(a, DEMO, 'Laptop/3.0');
    const target = (await list(a, laptop)).find((s) => s.userAgent === 'LostPhone/1.0');
    expect(target).toBeDefined();
    const res = await revoke(a, laptop, target?.id ?? '');
    expect(res.status).toBe(204);
    await until401(b, phone);
    expect((await request(b.url).get('/auth/session').set('Cookie', phone)).body).toEqual({ authenticated: false });
    expect((await list(a, laptop)).some((s) => s.id === target?.id)).toBe(false);
    expect((await api(a, laptop)).status).toBe(200);
    // Gone now: the same handle again is unknown.
    expect((await revoke(a, laptop, target?.id ?? '')).status).toBe(404);
    expect(announced).toContain(sidOf(phone));
    listener.disconnect();
  });

  it('deleting_another_users_handle_answers_exactly_like_an_unknown_one_and_ends_nothing', async () => {
    const mine = await signIn(a, DEMO);
    const theirs = await signIn(b, OTHER, 'Theirs/1.0');
    const theirHandle = (await list(b, theirs)).find((s) => s.current)?.id ?? '';
    const foreign = await revoke(a, mine, theirHandle);
    const unknown = await revoke(a, mine, 'A'.repeat(32));
    const malformed = await revoke(a, mine, 'not-a-handle');
    for (const res of [foreign, unknown, malformed]) {
      expect(res.status).toBe(404);
      expect(res.body).toEqual(unknown.body);
      expect(res.body.error).toBe('not_found');
    }
    expect((await api(b, theirs)).status).toBe(200);
  });

  it('deleting_the_current_session_signs_it_out_and_clears_the_cookie', async () => {
    const cookie = await signIn(a, OTHER, 'Self/1.0');
    const self = (await list(a, cookie)).find((s) => s.current)?.id ?? '';
    const res = await revoke(a, cookie, self);
    expect(res.status).toBe(204);
    expect(String(res.headers['set-cookie'] ?? '')).toMatch(/Expires=Thu, 01 Jan 1970/);
    expect((await api(a, cookie)).status).toBe(401);
  });

  it('deleting_without_the_csrf_header_should_fail_with_403', async () => {
    const cookie = await signIn(a);
    const self = (await list(a, cookie)).find((s) => s.current)?.id ?? '';
    const res = await request(a.url).delete(`/auth/sessions/${self}`).set('Cookie', cookie);
    expect(res.status).toBe(403);
    expect(res.body.error).toBe('csrf_required');
  });
});

describe('POST /auth/logout {"everywhere": true}', () => {
  it('sign_out_everywhere_ends_every_session_of_the_user_on_every_instance_and_spares_other_users', async () => {
    const mine = [await signIn(a), await signIn(b), await signIn(b)];
    const other = await signIn(a, OTHER);
    for (const [i, cookie] of mine.entries()) expect((await api(i ? b : a, cookie)).status).toBe(200);
    const res = await request(a.url).post('/auth/logout').set('X-CSRF', '1').set('Cookie', mine[0] ?? '').send({ everywhere: true });
    expect(res.status).toBe(204);
    for (const cookie of mine) {
      await until401(b, cookie);
      expect((await api(a, cookie)).status).toBe(401);
    }
    expect((await api(b, other)).status).toBe(200);
    expect((await list(b, other)).length).toBeGreaterThanOrEqual(1);
    // Nothing of the user's index is left behind in Redis but empty keys' absence.
    const fresh = await signIn(b);
    expect(await list(a, fresh)).toHaveLength(1);
  });

  it('plain_logout_ends_only_the_asking_session', async () => {
    const one = await signIn(a);
    const two = await signIn(b);
    const before = (await list(a, two)).length;
    expect((await request(a.url).post('/auth/logout').set('X-CSRF', '1').set('Cookie', one)).status).toBe(204);
    expect((await list(a, two)).length).toBe(before - 1);
    expect((await api(b, two)).status).toBe(200);
  });
});

describe('timeouts', () => {
  it('sessions_that_time_out_leave_the_list_by_themselves_and_the_touch_moves_last_seen', async () => {
    const env = { SESSION_IDLE_TIMEOUT: '2', SESSION_ABSOLUTE_TIMEOUT: '30' };
    const x = await h.start(env);
    const y = await h.start(env);
    const idle = await signIn(x, OTHER, 'Idle/1.0');
    const active = await signIn(y, OTHER, 'Active/1.0');
    const firstSeen = (await list(y, active)).find((s) => s.current)?.lastSeenAt ?? '';
    // Keep one session busy for longer than the idle timeout; the other one stays quiet.
    for (let i = 0; i < 6; i++) {
      await sleep(500);
      expect((await api(y, active)).status).toBe(200);
    }
    const listed = await list(y, active);
    expect(listed.map((s) => s.userAgent).filter((ua) => ua === 'Idle/1.0' || ua === 'Active/1.0')).toEqual(['Active/1.0']);
    expect(Date.parse(listed.find((s) => s.current)?.lastSeenAt ?? '')).toBeGreaterThan(Date.parse(firstSeen));
    expect((await api(x, idle)).status).toBe(401);
    // Nothing left of the idle session's device entry either.
    expect(await h.inspect.exists(`cr:dev:${sidOf(idle)}`)).toBe(0);
  }, 20_000);
});

describe('the in-process store (development)', () => {
  it('without_redis_the_list_delete_and_sign_out_everywhere_work_in_the_one_process', async () => {
    const dev = await h.start({ REDIS_URL: '' });
    expect(dev.redisClient).toBeNull();
    const one = await signIn(dev, DEMO, 'Dev/1');
    await sleep(5);
    const two = await signIn(dev, DEMO, 'Dev/2');
    const listed = await list(dev, one);
    expect(listed.map((s) => [s.userAgent, s.current])).toEqual([['Dev/2', false], ['Dev/1', true]]);
    expect((await revoke(dev, one, listed[0]?.id ?? '')).status).toBe(204);
    expect((await api(dev, two)).status).toBe(401);
    const three = await signIn(dev, DEMO, 'Dev/3');
    expect((await request(dev.url).post('/auth/logout').set('X-CSRF', '1').set('Cookie', one).send({ everywhere: true })).status).toBe(204);
    expect((await api(dev, three)).status).toBe(401);
  });
});
