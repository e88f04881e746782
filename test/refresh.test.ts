import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createTokenSealer } from '../src/core/token-crypto.js';
import { DEMO, TEST_TOKEN_KEY, startHarness, type Harness, type Instance, closeExpectingNoLeaks } from './support/harness.js';

let h: Harness;
let a: Instance;
let b: Instance;

beforeAll(async () => {
  h = await startHarness();
  a = await h.start();
  b = await h.start();
});
afterAll(() => closeExpectingNoLeaks(h));

const sealer = createTokenSealer([Buffer.from(TEST_TOKEN_KEY, 'base64')]);

/** What Redis holds for the one session of this agent, opened with the test key. */
async function storedTokens(): Promise<{ sid: string; refreshToken: string; clientId: string; version: number }[]> {
  const out = [];
  for (const key of await h.inspect.keys('cr:tok:*')) {
    const sid = key.slice('cr:tok:'.length);
    const rec = JSON.parse((await h.inspect.get(key)) ?? '{}') as { v: number; s: string };
    const opened = JSON.parse(sealer.open(rec.s, sid) ?? '{}') as { r: string; c: string };
    out.push({ sid, refreshToken: opened.r, clientId: opened.c, version: rec.v });
  }
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('single-flight refresh across instances', () => {
  it('fifty_concurrent_requests_on_an_expired_token_over_two_instances_cause_one_refresh_and_all_succeed', async () => {
    await h.inspect.flushall();
    h.upstream.accessTokenTtlSeconds = 1; // refresh due after half the lifetime
    const agentA = await h.signIn(a);
    const cookie = (await storedTokens())[0];
    expect(cookie).toBeDefined();
    h.upstream.accessTokenTtlSeconds = 3600;
    h.upstream.refreshDelayMs = 150; // long enough for every request to pile up on the lock
    await sleep(1100);
    h.upstream.reset();

    const jar = (agentA as unknown as { jar: { getCookies(o: object): { toValueString(): string }[] } }).jar;
    const cookieHeader = jar.getCookies({ domain: '127.0.0.1', path: '/', secure: false, script: false }).map((c) => c.toValueString()).join('; ');
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        fetch(`${(i % 2 === 0 ? a : b).url}/api/echo/storm-${i}`, { headers: { cookie: cookieHeader, 'x-csrf': '1' } }).then(async (r) => ({ status: r.status, body: await r.text() })),
      ),
    );
    h.upstream.refreshDelayMs = 0;

    expect(results.filter((r) => r.status === 200)).toHaveLength(50);
    expect(h.upstream.stats.refreshGrants).toBe(1);
    const [stored] = await storedTokens();
    expect(stored?.version).toBe(2);
    expect(stored?.refreshToken).toBe(h.upstream.liveRefreshToken(stored?.clientId ?? ''));
  });

  it('fifty_concurrent_requests_rejected_with_401_upstream_cause_one_refresh_and_are_replayed', async () => {
    await h.inspect.flushall();
    const agent = await h.signIn(b);
    const jar = (agent as unknown as { jar: { getCookies(o: object): { toValueString(): string }[] } }).jar;
    const cookieHeader = jar.getCookies({ domain: '127.0.0.1', path: '/', secure: false, script: false }).map((c) => c.toValueString()).join('; ');
    h.upstream.expireAllAccessTokens();
    h.upstream.refreshDelayMs = 100;
    h.upstream.reset();
    const statuses = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        fetch(`${(i % 2 === 0 ? a : b).url}/api/echo/replay-${i}`, {
          method: 'POST',
          headers: { cookie: cookieHeader, 'x-csrf': '1', 'content-type': 'application/json' },
          body: JSON.stringify({ n: i }),
        }).then((r) => r.status),
      ),
    );
    h.upstream.refreshDelayMs = 0;
    expect(statuses.every((s) => s === 200)).toBe(true);
    expect(h.upstream.stats.refreshGrants).toBe(1);
    const replayed = h.upstream.requests.filter((r) => r.url === '/api/echo/replay-7' && r.method === 'POST');
    expect(replayed.length).toBeGreaterThanOrEqual(1);
    for (const r of replayed) expect(r.body.toString()).toBe('{"n":7}');
    const [stored] = await storedTokens();
    expect(stored?.refreshToken).toBe(h.upstream.liveRefreshToken(stored?.clientId ?? ''));
  });

  it('a_refresh_that_fails_upstream_keeps_the_session_and_the_next_request_refreshes_again', async () => {
    await h.inspect.flushall();
    const agent = await h.signIn(a);
    h.upstream.expireAllAccessTokens();
    h.upstream.faults.refresh = ['http500'];
    const failed = await agent.get('/api/echo/x').set('X-CSRF', '1');
    expect(failed.status).toBe(502);
    expect(failed.body.error).toBe('upstream_unavailable');
    expect((await agent.get('/auth/session')).body.authenticated).toBe(true);
    const ok = await agent.get('/api/echo/x').set('X-CSRF', '1');
    expect(ok.status).toBe(200);
  });

  it('a_refused_refresh_ends_the_session_with_session_expired', async () => {
    await h.inspect.flushall();
    const agent = await h.signIn(a);
    h.upstream.expireAllAccessTokens();
    h.upstream.faults.refresh = ['invalid_grant'];
    const res = await agent.get('/api/echo/x').set('X-CSRF', '1');
    expect(res.status).toBe(401);
    expect(res.body.error).toBe('session_expired');
    expect(await h.inspect.keys('cr:*:{*')).toEqual([]);
    expect((await agent.get('/auth/session')).body).toEqual({ authenticated: false });
  });

  /** Commands clients send (not those run inside our Lua scripts), in order, while `fn` runs. */
  async function clientCommands(fn: () => Promise<void>): Promise<string[]> {
    const monitor = await h.inspect.monitor();
    const seen: string[] = [];
    monitor.on('monitor', (_time: string, args: string[], source: string) => {
      if (source !== 'lua') seen.push(`${String(args[0]).toLowerCase()} ${args[1] ?? ''}`);
    });
    try {
      await fn();
      await sleep(50);
    } finally {
      monitor.disconnect();
    }
    return seen;
  }

  it('the_instance_that_last_saw_a_session_claims_its_due_refresh_without_reading_the_record_first', async () => {
    await h.inspect.flushall();
    h.upstream.accessTokenTtlSeconds = 1; // due after half the lifetime
    const agent = await h.signIn(a); // A wrote the record, so it knows when it falls due
    h.upstream.accessTokenTtlSeconds = 3600;
    await sleep(700);
    h.upstream.reset();
    const commands = await clientCommands(async () => {
      await agent.get('/api/echo/due').set('X-CSRF', '1').expect(200);
    });
    const tokenCommands = commands.filter((c) => /^(get|eval|evalsha) /.test(c));
    // First the claim (lock attempt + fresh read in one script), then the compare-and-set and the release.
    expect(tokenCommands[0]).toMatch(/^eval /);
    expect(tokenCommands.filter((c) => c.startsWith('get '))).toEqual([]);
    expect(h.upstream.stats.refreshGrants).toBe(1);
  });

  it('a_session_logged_out_elsewhere_while_due_answers_unauthenticated_not_session_expired', async () => {
    await h.inspect.flushall();
    h.upstream.accessTokenTtlSeconds = 1;
    const agent = await h.signIn(a);
    h.upstream.accessTokenTtlSeconds = 3600;
    const cookie = (agent as unknown as { jar: { getCookies(o: object): { toValueString(): string }[] } }).jar
      .getCookies({ domain: '127.0.0.1', path: '/', secure: false, script: false })
      .map((c) => c.toValueString())
      .join('; ');
    await fetch(`${b.url}/auth/logout`, { method: 'POST', headers: { cookie, 'x-csrf': '1' } }).then((r) => expect(r.status).toBe(204));
    await sleep(700);
    h.upstream.reset();
    const res = await agent.get('/api/echo/after-logout').set('X-CSRF', '1');
    expect(res.status).toBe(401);
    expect(res.body.error).toBe('unauthenticated');
    expect(h.upstream.stats.refreshGrants).toBe(0);
  });

  it('every_key_of_a_session_carries_the_same_hash_tag', async () => {
    await h.inspect.flushall();
    h.upstream.accessTokenTtlSeconds = 3600;
    const agent = await h.signIn(a);
    await agent.get('/api/echo/x').set('X-CSRF', '1').expect(200);
    // Not session keys: throttle counters, and the user's own index (its own tag) and handle lookup.
    const keys = (await h.inspect.keys('cr:*')).filter((k) => !k.startsWith('cr:rl:') && !k.startsWith('cr:{u:') && !k.startsWith('cr:hdl:'));
    const tags = new Set(keys.map((k) => /\{([^}]+)\}/.exec(k)?.[1]));
    expect(keys.length).toBeGreaterThanOrEqual(2);
    expect(tags.size).toBe(1);
    expect([...tags][0]).toMatch(/^[A-Za-z0-9_-]{32}$/);
    void DEMO;
  });
});
