/**
 * Contract, Operations: the metrics a scraper sees after a short session, request ids on every
 * answer (and upstream, and in the log lines), and the access log with its off switch.
 */
import { request as httpRequest, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { createMetrics } from '../src/metrics.js';
import { DEMO, startHarness, type Harness, type Instance, closeExpectingNoLeaks } from './support/harness.js';

let h: Harness;
let app: Instance;
let quiet: Instance;

beforeAll(async () => {
  h = await startHarness({ persistRedis: true });
  app = await h.start();
  quiet = await h.start({ ACCESS_LOG: 'false' });
}, 30_000);
afterAll(() => closeExpectingNoLeaks(h));

/** A raw request, so that header values supertest would refuse (control characters, raw UTF-8) reach the server. */
function raw(base: string, path: string, headers: OutgoingHttpHeaders): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: hostname, port, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** A request written byte for byte (Node's client refuses control characters in header values). */
function rawBytes(base: string, head: Buffer): Promise<string> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const sock = connect(Number(port), hostname, () => sock.write(head));
    const chunks: Buffer[] = [];
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('end', () => resolve(Buffer.concat(chunks).toString('latin1')));
    sock.on('error', reject);
  });
}

/** After an outage: Redis answers again and both instances are ready (readiness pings the store). */
async function redisBack(): Promise<void> {
  await h.redis.start();
  for (const i of [app, quiet]) {
    for (let n = 0; n < 100 && (await request(i.url).get('/readyz')).status !== 200; n += 1) await new Promise((r) => setTimeout(r, 50));
  }
}

const logLines = () => h.logs.map((l) => JSON.parse(l) as Record<string, unknown>);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('request ids', () => {
  it('a_valid_browser_id_is_answered_sent_upstream_and_logged', async () => {
    const agent = await h.signIn(app);
    const id = 'Abc.def_ghi:jkl-0123456789';
    const res = await agent.get('/api/echo/id').set('X-CSRF', '1').set('X-Request-Id', id);
    expect(res.status).toBe(200);
    expect(res.headers['x-request-id']).toBe(id);
    expect((res.body as { headers: Record<string, string> }).headers['x-request-id']).toBe(id);
    const line = logLines().find((l) => l.requestId === id && l.msg === 'request');
    expect(line).toMatchObject({ route: '/api/*', method: 'GET', path: '/api/echo/id', status: 200 });
  });

  it('the longest valid id of 128 characters is kept', async () => {
    const id = 'a'.repeat(128);
    const res = await request(app.url).get('/healthz').set('X-Request-Id', id);
    expect(res.headers['x-request-id']).toBe(id);
  });

  it.each([
    ['129 characters', 'a'.repeat(129)],
    ['a space', 'abc def'],
    ['a slash', 'abc/def'],
    ['an empty value', ''],
  ])('an_id_with_%s_is_replaced_by_a_new_one', async (_why, id) => {
    const agent = await h.signIn(app);
    const res = await agent.get('/api/echo/replaced').set('X-CSRF', '1').set('X-Request-Id', id);
    expect(res.status).toBe(200);
    const answered = res.headers['x-request-id'];
    expect(answered).toMatch(UUID);
    expect((res.body as { headers: Record<string, string> }).headers['x-request-id']).toBe(answered);
  });

  it('an_id_in_raw_utf8_is_replaced', async () => {
    const res = await raw(app.url, '/healthz', { 'X-Request-Id': Buffer.from('caf\u00e9-\u2603', 'utf8').toString('latin1') });
    expect(res.headers['x-request-id']).toMatch(UUID);
  });

  it('an_id_with_a_tab_is_replaced', async () => {
    const res = await raw(app.url, '/healthz', { 'X-Request-Id': 'abc\tdef' });
    expect(res.status).toBe(200);
    expect(res.headers['x-request-id']).toMatch(UUID);
  });

  it('an_id_with_another_control_character_never_reaches_a_handler', async () => {
    // Node's parser refuses the request before there is a request object: the raw JSON 400, no id to echo.
    const text = await rawBytes(app.url, Buffer.from('GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc\x01def\r\nConnection: close\r\n\r\n', 'latin1'));
    expect(text).toMatch(/^HTTP\/1\.1 400/);
    expect(text).not.toContain('abc\x01def');
  });

  it('two_ids_in_one_request_are_replaced', async () => {
    const text = await rawBytes(app.url, Buffer.from('GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: one\r\nX-Request-Id: two\r\nConnection: close\r\n\r\n'));
    expect(/\r\nx-request-id: ([^\r]*)\r\n/i.exec(text)?.[1]).toMatch(UUID);
  });

  it('refusals_carry_the_id_401_403_404_and_503', async () => {
    const id = 'refusal-1';
    const unauth = await request(app.url).get('/api/echo/x').set('X-CSRF', '1').set('X-Request-Id', id);
    expect(unauth.status).toBe(401);
    expect(unauth.headers['x-request-id']).toBe(id);
    const forged = await request(app.url).get('/api/echo/x').set('X-Request-Id', id);
    expect(forged.status).toBe(403);
    expect(forged.headers['x-request-id']).toBe(id);
    const missing = await request(app.url).get('/nowhere').set('X-Request-Id', id);
    expect(missing.status).toBe(404);
    expect(missing.headers['x-request-id']).toBe(id);
    const connectRefusal = await rawBytes(app.url, Buffer.from('CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nX-Request-Id: via-connect\r\n\r\n'));
    expect(connectRefusal).toMatch(/^HTTP\/1\.1 405/);
    expect(connectRefusal).toContain('X-Request-Id: via-connect\r\n');
    const noHost = await rawBytes(app.url, Buffer.from('GET /healthz HTTP/1.1\r\nX-Request-Id: no-host\r\nConnection: close\r\n\r\n'));
    expect(noHost).toMatch(/^HTTP\/1\.1 400/);
    expect(noHost.toLowerCase()).toContain('x-request-id: no-host\r\n');

    const agent = await h.signIn(app);
    await h.redis.stop();
    try {
      // The tracked cache notices the outage within about two health intervals; then reads go to Redis.
      let down: request.Response | undefined;
      for (let i = 0; i < 40; i += 1) {
        down = await agent.get('/api/echo/x').set('X-CSRF', '1').set('X-Request-Id', 'outage-1');
        if (down.status === 503) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(down?.status).toBe(503);
      expect(down?.headers['x-request-id']).toBe('outage-1');
      const failed = logLines().find((l) => l.requestId === 'outage-1' && l.msg === 'request failed');
      expect(failed).toMatchObject({ code: 'session_store_unavailable', path: '/api/echo/x' });
    } finally {
      await redisBack();
    }
  });
});

/** What upstream received as cloakroom's own calls for `path` with this grant, newest last. */
const upstreamCalls = (path: string, grant?: string) =>
  h.upstream.requests.filter((r) => r.url.split('?')[0] === path && (grant === undefined || new URLSearchParams(r.body.toString('utf8')).get('grant_type') === grant));

describe('request ids on cloakroom\'s own upstream calls', () => {
  it('a_sign_in_sends_the_browser_request_id_on_the_token_and_profile_calls', async () => {
    const id = 'sign-in-id-1';
    const res = await request(app.url).post('/auth/login').set('X-CSRF', '1').set('X-Request-Id', id).send(DEMO);
    expect(res.status).toBe(200);
    expect(upstreamCalls('/api/token', 'password').at(-1)?.headers['x-request-id']).toBe(id);
    expect(upstreamCalls('/api/auth/me').at(-1)?.headers['x-request-id']).toBe(id);
  });

  it('a_sign_in_with_an_invalid_id_sends_the_new_id_it_answers_with', async () => {
    const res = await request(app.url).post('/auth/login').set('X-CSRF', '1').set('X-Request-Id', 'not valid').send(DEMO);
    expect(res.status).toBe(200);
    expect(res.headers['x-request-id']).toMatch(UUID);
    expect(upstreamCalls('/api/token', 'password').at(-1)?.headers['x-request-id']).toBe(res.headers['x-request-id']);
  });

  it('a_refresh_ahead_of_expiry_sends_the_id_of_the_request_that_needed_it', async () => {
    // A token shorter-lived than REFRESH_SKEW is due after half its life.
    h.upstream.accessTokenTtlSeconds = 2;
    try {
      const agent = await h.signIn(app);
      await new Promise((r) => setTimeout(r, 1100));
      const id = 'refresh-due-1';
      const res = await agent.get('/api/echo/due').set('X-CSRF', '1').set('X-Request-Id', id);
      expect(res.status).toBe(200);
      expect(upstreamCalls('/api/token', 'refresh_token').at(-1)?.headers['x-request-id']).toBe(id);
    } finally {
      h.upstream.accessTokenTtlSeconds = 3600;
    }
  });

  it('a_refresh_after_an_upstream_401_sends_the_id_of_the_rejected_request', async () => {
    const agent = await h.signIn(app);
    h.upstream.expireAllAccessTokens();
    const id = 'refresh-401-1';
    const res = await agent.get('/api/echo/rejected').set('X-CSRF', '1').set('X-Request-Id', id);
    expect(res.status).toBe(200);
    expect(upstreamCalls('/api/token', 'refresh_token').at(-1)?.headers['x-request-id']).toBe(id);
    // The replay is the same request: same id.
    expect(upstreamCalls('/api/echo/rejected').map((r) => r.headers['x-request-id'])).toEqual([id, id]);
  });
});

describe('access log', () => {
  it('one_info_line_per_proxied_request_with_its_fields_and_no_query_or_secret', async () => {
    const agent = await h.signIn(app);
    const res = await agent.get('/api/echo/logged?code=secret-query-value').set('X-CSRF', '1').set('X-Request-Id', 'access-1');
    expect(res.status).toBe(200);
    const lines = logLines().filter((l) => l.requestId === 'access-1');
    expect(lines).toHaveLength(1);
    const [line] = lines;
    expect(line).toMatchObject({ level: 30, msg: 'request', route: '/api/*', method: 'GET', path: '/api/echo/logged', status: 200 });
    expect(typeof line?.ms).toBe('number');
    expect(typeof line?.upstreamMs).toBe('number');
    expect(h.logs.join('\n')).not.toContain('secret-query-value');
    expect(h.logs.join('\n')).not.toContain('cr.sid');
  });

  it('access_log_false_writes_no_request_line', async () => {
    const agent = await h.signIn(quiet);
    const res = await agent.get('/api/echo/quiet').set('X-CSRF', '1').set('X-Request-Id', 'quiet-1');
    expect(res.status).toBe(200);
    expect(res.headers['x-request-id']).toBe('quiet-1');
    expect(logLines().filter((l) => l.requestId === 'quiet-1')).toEqual([]);
  });
});

/** Sum of a counter's samples in the exposition text, optionally only those with this label text. */
function sampleSum(text: string, name: string, labels = ''): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (labels && !line.includes(labels)) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

describe('metrics', () => {
  it('a_short_session_shows_every_contract_metric_with_its_type', async () => {
    const agent = await h.signIn(app);
    await agent.get('/api/echo/one').set('X-CSRF', '1').expect(200);
    h.upstream.expireAllAccessTokens();
    await agent.get('/api/echo/after-expiry').set('X-CSRF', '1').expect(200);
    await request(app.url).get('/api/echo/x').set('X-CSRF', '1').expect(401);

    const text = (await request(app.url).get('/metrics')).text;
    expect(text).toContain('# TYPE cloakroom_http_requests_total counter');
    expect(text).toContain('# TYPE cloakroom_http_request_duration_seconds histogram');
    expect(text).toContain('# TYPE cloakroom_upstream_duration_seconds histogram');
    expect(text).toContain('# TYPE cloakroom_token_refreshes_total counter');
    expect(text).toContain('# TYPE cloakroom_refresh_lock_wait_seconds histogram');
    expect(text).toContain('# TYPE cloakroom_redis_errors_total counter');
    expect(text).toContain('# TYPE cloakroom_websockets_open gauge');
    // Node's default process metrics: main.ts's registry (the harness's instances have none).
    expect(await createMetrics({ defaultMetrics: true }).registry.metrics()).toContain('# TYPE process_cpu_seconds_total counter');

    expect(sampleSum(text, 'cloakroom_http_requests_total', 'route="/api/*",status="200"')).toBeGreaterThanOrEqual(2);
    expect(sampleSum(text, 'cloakroom_http_requests_total', 'route="/api/*",status="401"')).toBeGreaterThanOrEqual(1);
    expect(sampleSum(text, 'cloakroom_http_requests_total', 'route="/auth/login",status="200"')).toBeGreaterThanOrEqual(1);
    expect(text).toMatch(/cloakroom_http_request_duration_seconds_bucket\{le="0.005",route="\/api\/\*"\}/);
    expect(text).toMatch(/cloakroom_http_request_duration_seconds_bucket\{le="30",route="\/api\/\*"\}/);
    expect(sampleSum(text, 'cloakroom_token_refreshes_total', 'outcome="ok"')).toBeGreaterThanOrEqual(1);
    expect(sampleSum(text, 'cloakroom_refresh_lock_wait_seconds_count')).toBeGreaterThanOrEqual(1);
    expect(text).toMatch(/cloakroom_refresh_lock_wait_seconds_bucket\{le="0.001"\}/);
    expect(text).toMatch(/cloakroom_refresh_lock_wait_seconds_bucket\{le="10"\}/);
    expect(sampleSum(text, 'cloakroom_upstream_duration_seconds_count', 'kind="api"')).toBeGreaterThanOrEqual(2);
    expect(text).toMatch(/^cloakroom_websockets_open \d+$/m);
    // Bounded labels: no raw path reaches the route label.
    expect(text).not.toContain('/api/echo');
  });

  it('redis_failures_are_counted_from_the_throttle_and_from_the_token_store', async () => {
    const agent = await h.signIn(app);
    const before = (await request(app.url).get('/metrics')).text;
    await h.redis.stop();
    try {
      const login = await request(app.url).post('/auth/login').set('X-CSRF', '1').send(DEMO);
      expect(login.status).toBe(503);
      let proxied = 0;
      for (let i = 0; i < 40 && proxied !== 503; i += 1) {
        proxied = (await agent.get('/api/echo/x').set('X-CSRF', '1')).status;
        if (proxied !== 503) await new Promise((r) => setTimeout(r, 50));
      }
      expect(proxied).toBe(503);
    } finally {
      await redisBack();
    }
    const after = (await request(app.url).get('/metrics')).text;
    for (const part of ['throttle', 'tokens']) {
      expect(sampleSum(after, 'cloakroom_redis_errors_total', `part="${part}"`)).toBeGreaterThan(sampleSum(before, 'cloakroom_redis_errors_total', `part="${part}"`));
    }
  });
});
