import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { startHarness, type Harness, type Instance, closeExpectingNoLeaks } from './support/harness.js';

let h: Harness;
let app: Instance;

beforeAll(async () => {
  h = await startHarness();
  app = await h.start();
});
afterAll(() => closeExpectingNoLeaks(h));

const cookiesOf = (res: request.Response): string[] => (res.headers['set-cookie'] as unknown as string[] | undefined) ?? [];

describe('HEAD under /auth needs the anti-forgery header', () => {
  it('head_exchange_without_x_csrf_answers_csrf_required_and_makes_no_session', async () => {
    h.upstream.reset();
    const jwt = h.upstream.issueExchangeJwt('demo@example.com');
    const res = await request(app.url).head(`/auth/exchange?t=${encodeURIComponent(jwt)}`);
    expect(res.status).toBe(403);
    expect(res.headers['content-type']).toMatch(/application\/json/);
    expect(cookiesOf(res).filter((c) => c.startsWith('bff.sid='))).toEqual([]);
    expect(h.upstream.requests.filter((r) => r.url.startsWith('/api/sys/users/exchange'))).toEqual([]);
  });

  it('head_auth_routes_with_x_csrf_pass_and_get_stays_exempt', async () => {
    expect((await request(app.url).head('/auth/session')).status).toBe(403);
    expect((await request(app.url).head('/auth/session').set('X-CSRF', '1')).status).toBe(200);
    expect((await request(app.url).get('/auth/session')).status).toBe(200);
  });

  it('head_on_links_and_ops_needs_no_header', async () => {
    expect((await request(app.url).head('/healthz')).status).toBe(200);
    // /links are navigations: a HEAD without a session is the same 401 as a GET.
    expect((await request(app.url).head('/links/download?path=/api/public/files/x')).status).toBe(401);
  });
});

describe('metrics route labels stay bounded', () => {
  /** Letters only: names a scanner would try, and the shape the old label rule let through. */
  const word = (n: number) => {
    let s = '';
    for (let i = n + 26; i > 0; i = Math.floor(i / 26)) s += String.fromCharCode(97 + (i % 26));
    return s;
  };

  it('thousands_of_distinct_auth_and_links_paths_add_no_route_label_and_keep_metrics_small', async () => {
    await request(app.url).get('/metrics');
    const before = (await request(app.url).get('/metrics')).text;
    const labels = (text: string) => new Set([...text.matchAll(/cloakroom_http_requests_total\{route="([^"]*)"/g)].map((m) => m[1]));
    const paths = Array.from({ length: 3000 }, (_, i) => (i % 2 ? `/auth/${word(i)}` : `/links/${word(i)}-${word(i + 7)}`));
    for (let i = 0; i < paths.length; i += 100) {
      await Promise.all(paths.slice(i, i + 100).map((p) => fetch(app.url + p).then((r) => r.arrayBuffer())));
    }
    const after = (await request(app.url).get('/metrics')).text;
    const added = [...labels(after)].filter((l) => !labels(before).has(l));
    expect(added.filter((l) => l !== 'other')).toEqual([]);
    expect(after.length).toBeLessThan(before.length + 4096);
  });
});

describe('a failed sign-in upstream is logged with its cause', () => {
  it('login_against_an_upstream_on_a_closed_port_answers_502_and_logs_econnrefused_once_at_warn', async () => {
    const { createServer } = await import('node:net');
    const closed = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const { port } = s.address() as { port: number };
        s.close(() => resolve(port));
      });
    });
    const down = await h.start({ UPSTREAM_URL: `http://127.0.0.1:${closed}` });
    const from = h.logs.length;
    const password = 'a-password-that-must-not-be-logged';
    const res = await request(down.url).post('/auth/login').set('X-CSRF', '1').send({ email: 'demo@example.com', password });
    expect(res.status).toBe(502);
    expect(res.body.error).toBe('upstream_unavailable');
    const failures = h.logs.slice(from).map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'request failed');
    expect(failures).toHaveLength(1);
    expect(failures[0]?.level).toBe(40);
    expect(JSON.stringify(failures[0])).toContain('ECONNREFUSED');
    expect(h.logs.slice(from).join('\n')).not.toContain(password);
  });
});

describe('a refresh that fails on the transport is logged with its cause', () => {
  it.each<['reset' | 'hang', number, string, string]>([
    ['reset', 502, 'upstream_unavailable', 'UND_ERR_SOCKET'],
    ['hang', 504, 'upstream_timeout', 'UND_ERR_HEADERS_TIMEOUT'],
  ])('a_refresh_whose_connection_%s_answers_%i_and_logs_one_warn_line_with_the_cause_and_no_token', async (fault, status, code, cause) => {
    const agent = await h.signIn(app);
    // The sign-in's pair, issued last: the access token, then the refresh token.
    const [access, refresh] = h.upstream.issuedTokens().slice(-2);
    expect(access).toMatch(/^at_/);
    expect(refresh).toMatch(/^rt_/);
    h.upstream.expireAllAccessTokens();
    h.upstream.faults.refresh.push(fault);
    const from = h.logs.length;
    const id = `refresh-${fault}-1`;
    const res = await agent.get('/api/echo/refresh-fails').set('X-CSRF', '1').set('X-Request-Id', id);
    expect(res.status).toBe(status);
    expect(res.body.error).toBe(code);
    const lines = h.logs.slice(from);
    const warnings = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => (l.level as number) >= 40);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ level: 40, msg: 'request failed', code, requestId: id });
    expect(JSON.stringify(warnings[0]?.err)).toContain(cause);
    for (const token of [access, refresh]) expect(lines.join('\n')).not.toContain(token);
  });
});

describe('a refresh that waits out another holder of the lock is logged with its cause', () => {
  it('a_refresh_whose_lock_another_instance_keeps_answers_504_and_logs_one_warn_line_saying_how_long_it_waited', async () => {
    // UPSTREAM_TIMEOUT=1: the lease, and so the wait, is 2 x 1 s + 5 s.
    const quick = await h.start({ UPSTREAM_TIMEOUT: '1' });
    const before = new Set(await h.inspect.keys('cr:tok:*'));
    const agent = await h.signIn(quick);
    const [access, refresh] = h.upstream.issuedTokens().slice(-2);
    const sid = (await h.inspect.keys('cr:tok:*')).find((k) => !before.has(k))?.slice('cr:tok:'.length) ?? '';
    expect(sid).not.toBe('');
    // Another instance's refresh holds the lock and never finishes.
    await h.inspect.set(`cr:lock:${sid}`, 'another-instance', 'PX', 60_000);
    h.upstream.expireAllAccessTokens();
    const grants = h.upstream.stats.refreshGrants;
    const from = h.logs.length;
    const res = await agent.get('/api/echo/lock-held').set('X-CSRF', '1').set('X-Request-Id', 'lock-held-1');
    expect({ status: res.status, error: res.body.error }).toEqual({ status: 504, error: 'upstream_timeout' });
    expect(h.upstream.stats.refreshGrants).toBe(grants);
    const lines = h.logs.slice(from);
    const warnings = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => (l.level as number) >= 40);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ level: 40, msg: 'request failed', code: 'upstream_timeout', requestId: 'lock-held-1' });
    const err = warnings[0]?.err as { code?: string; message?: string } | undefined;
    expect(err?.code).toBe('REFRESH_LOCK_WAIT_TIMEOUT');
    const waited = Number(/^waited (\d+) ms for the refresh another request holds$/.exec(err?.message ?? '')?.[1]);
    expect(waited).toBeGreaterThanOrEqual(7000);
    expect(waited).toBeLessThan(9000);
    for (const token of [access, refresh]) expect(lines.join('\n')).not.toContain(token);
    await h.inspect.del(`cr:lock:${sid}`);
  });
});

describe('one reading of the session cookie on /auth and /api', () => {
  let value = '';
  let sid = '';
  beforeAll(async () => {
    const res = await request(app.url).post('/auth/login').set('X-CSRF', '1').send({ email: 'demo@example.com', password: 'demo-password' });
    value = (cookiesOf(res).find((c) => c.startsWith('bff.sid=')) ?? '').split(';')[0]?.slice('bff.sid='.length) ?? '';
    sid = decodeURIComponent(value).slice(2).split('.')[0] ?? '';
    expect(value).toMatch(/^s%3A/);
  });

  // [header, is it this session]; the value placeholder V is the signed cookie value.
  const cases: [string, boolean][] = [
    ['bff.sid=V', true],
    ['bff.sid = V', true],
    ['bff.sid =V', true],
    ['  bff.sid=V  ', true],
    ['bff.sid="V"', true],
    ['theme=dark; bff.sid=V', true],
    ['theme=dark;bff.sid=V;x=1', true],
    ['bff.sid=V; bff.sid=s%3Agarbage.sig', true],
    ['bff.sid=s%3Agarbage.sig; bff.sid=V', false],
    ['bff.sid=SID', false],
    ['xbff.sid=V', false],
    ['bff.sidx=V', false],
    ['__Host-bff.sid=V', false],
    ['bff.sid', false],
    ['bff.sid=', false],
    ['BFF.SID=V', false],
  ];
  it.each(cases)('cookie_header_%j_is_a_session_%s_on_both_auth_session_and_api', async (template, expected) => {
    const header = template.replace('V', value).replace('SID', sid);
    const auth = (await request(app.url).get('/auth/session').set('Cookie', header)).body as { authenticated: boolean };
    const api = await request(app.url).get('/api/auth/me').set('X-CSRF', '1').set('Cookie', header);
    expect({ auth: auth.authenticated, api: api.status === 200 }).toEqual({ auth: expected, api: expected });
  });
});
