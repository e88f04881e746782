import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { ConfigError, loadConfig } from '../src/config.js';
import { startFakeUpstream, type FakeUpstream } from '../scripts/fake-upstream/index.js';
import { DEMO, TEST_SESSION_SECRET, TEST_TOKEN_KEY } from './support/harness.js';
import { freePort, startRedisServer, type RedisServer } from '../scripts/redis-server.js';

const BASE = { UPSTREAM_URL: 'https://spaces.example.com' } as const;
// Keys of distinct bytes: production refuses a key of one repeated byte.
const KEY_A = Buffer.from(Array.from({ length: 32 }, (_, i) => i + 1)).toString('base64');
const KEY_B = Buffer.from(Array.from({ length: 32 }, (_, i) => 200 - i)).toString('base64');
const PRODUCTION = {
  ...BASE,
  NODE_ENV: 'production',
  REDIS_URL: 'redis://redis.internal:6379',
  SESSION_SECRET: 's'.repeat(32),
  TOKEN_ENCRYPTION_KEY: KEY_A,
} as const;

/** The problem lines of a refused configuration, or a failure when it was accepted. */
function problemsOf(env: Record<string, string | undefined>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('configuration was accepted');
}

const variablesOf = (problems: string[]) => problems.map((p) => p.slice(0, p.indexOf(':')));

describe('loadConfig', () => {
  it('defaults_match_the_contract', () => {
    const c = loadConfig({ ...BASE });
    expect(c).toMatchObject({
      production: false,
      port: 3000,
      host: '0.0.0.0',
      upstreamUrl: 'https://spaces.example.com',
      authMode: 'nexudus',
      redis: { kind: 'memory' },
      cookie: { secure: false, name: 'bff.sid', sameSite: 'lax' },
      idleTimeoutSeconds: 28_800,
      absoluteTimeoutSeconds: 1_296_000,
      refreshSkewSeconds: 60,
      portalLoginPath: '/user/login?server=true',
      mediaBaseUrl: 'https://spaces.example.com',
      downloadPaths: ['/api/public/billing/invoices/*/pdf', '/api/public/files/**'],
      trustProxy: false,
      upstreamTimeoutMs: 30_000,
      logLevel: 'info',
      loginMaxFailures: 10,
      jsonLoginPath: '/api/login',
      jsonRefreshPath: '/api/login/refresh-token',
      shutdownTimeoutMs: 10_000,
    });
    expect(c.portalUrl).toBeUndefined();
    expect(c.loginPageUrl).toBeUndefined();
    expect(c.allowedOrigins).toBeUndefined();
    expect(c.staticDir).toBeUndefined();
    // Development only: secrets are made up for the run, and said so.
    expect(c.generatedSecrets).toEqual(['SESSION_SECRET', 'TOKEN_ENCRYPTION_KEY']);
    expect(c.tokenKeys).toHaveLength(1);
    expect(c.tokenKeys[0]?.length).toBe(32);
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('generated_dev_secrets_differ_between_loads', () => {
    const a = loadConfig({ ...BASE });
    const b = loadConfig({ ...BASE });
    expect(a.sessionSecrets[0]).not.toBe(b.sessionSecrets[0]);
    expect(a.tokenKeys[0]?.equals(b.tokenKeys[0] ?? Buffer.alloc(0))).toBe(false);
  });

  it('empty_variables_count_as_not_set', () => {
    const c = loadConfig({ ...BASE, PORT: '', COOKIE_SAMESITE: '', REDIS_URL: '' });
    expect(c.port).toBe(3000);
    expect(c.cookie.sameSite).toBe('lax');
    expect(c.redis).toEqual({ kind: 'memory' });
  });

  it('upstream_url_trailing_slash_is_dropped', () => {
    expect(loadConfig({ UPSTREAM_URL: 'https://spaces.example.com/base/' }).upstreamUrl).toBe('https://spaces.example.com/base');
  });

  it('every_bad_variable_is_reported_together_one_line_each', () => {
    const problems = problemsOf({ ...BASE, PORT: 'abc', COOKIE_SAMESITE: 'none', REFRESH_SKEW: '-1' });
    expect(problems).toHaveLength(3);
    expect(variablesOf(problems).sort()).toEqual(['COOKIE_SAMESITE', 'PORT', 'REFRESH_SKEW']);
    for (const line of problems) expect(line).toMatch(/^[A-Z_]+: \S/);
    expect(problems.find((p) => p.startsWith('PORT:'))).toMatch(/whole number/);
  });

  it('bad_values_and_production_requirements_are_reported_in_one_run', () => {
    const problems = problemsOf({ ...BASE, NODE_ENV: 'production', PORT: 'abc', COOKIE_SAMESITE: 'none' });
    expect(variablesOf(problems).sort()).toEqual(['COOKIE_SAMESITE', 'PORT', 'REDIS_URL', 'SESSION_SECRET', 'TOKEN_ENCRYPTION_KEY']);
  });

  it('a_variable_is_named_once_even_when_it_is_wrong_in_two_ways', () => {
    const problems = problemsOf({ ...PRODUCTION, TOKEN_ENCRYPTION_KEY: 'short', REDIS_URL: 'http://not-redis' });
    expect(variablesOf(problems).sort()).toEqual(['REDIS_URL', 'TOKEN_ENCRYPTION_KEY']);
  });

  it.each<[string, Record<string, string>, string]>([
    ['missing upstream', { UPSTREAM_URL: '' }, 'UPSTREAM_URL'],
    ['upstream with credentials', { UPSTREAM_URL: 'https://user:pw@spaces.example.com' }, 'UPSTREAM_URL'],
    ['upstream not http', { UPSTREAM_URL: 'ftp://spaces.example.com' }, 'UPSTREAM_URL'],
    ['port out of range', { PORT: '70000' }, 'PORT'],
    ['unknown auth mode', { AUTH_MODE: 'saml' }, 'AUTH_MODE'],
    ['redis url with another scheme', { REDIS_URL: 'http://localhost:6379' }, 'REDIS_URL'],
    ['cookie name with a space', { COOKIE_NAME: 'my sid' }, 'COOKIE_NAME'],
    ['cookie secure not a boolean', { COOKIE_SECURE: 'maybe' }, 'COOKIE_SECURE'],
    ['idle timeout not a number', { SESSION_IDLE_TIMEOUT: '8h' }, 'SESSION_IDLE_TIMEOUT'],
    ['absolute shorter than idle', { SESSION_IDLE_TIMEOUT: '7200', SESSION_ABSOLUTE_TIMEOUT: '3600' }, 'SESSION_ABSOLUTE_TIMEOUT'],
    ['upstream timeout zero', { UPSTREAM_TIMEOUT: '0' }, 'UPSTREAM_TIMEOUT'],
    ['unknown log level', { LOG_LEVEL: 'verbose' }, 'LOG_LEVEL'],
    ['origin with a path', { ALLOWED_ORIGINS: 'https://app.example.com/spa' }, 'ALLOWED_ORIGINS'],
    ['portal login path without slash', { PORTAL_LOGIN_PATH: 'user/login' }, 'PORTAL_LOGIN_PATH'],
    ['sentinels without a name', { REDIS_SENTINELS: 'a:26379' }, 'REDIS_SENTINEL_NAME'],
    ['sentinel without a port', { REDIS_SENTINELS: 'a', REDIS_SENTINEL_NAME: 'm' }, 'REDIS_SENTINELS'],
    ['cluster node with a bad port', { REDIS_CLUSTER_NODES: 'a:7000,b:99999' }, 'REDIS_CLUSTER_NODES'],
    ['encryption key of 16 bytes', { TOKEN_ENCRYPTION_KEY: Buffer.alloc(16, 1).toString('base64') }, 'TOKEN_ENCRYPTION_KEY'],
    ['encryption key of 33 bytes', { TOKEN_ENCRYPTION_KEY: Buffer.alloc(33, 1).toString('base64') }, 'TOKEN_ENCRYPTION_KEY'],
    ['encryption key not base64', { TOKEN_ENCRYPTION_KEY: 'not base64 at all!' }, 'TOKEN_ENCRYPTION_KEY'],
    ['one bad key in a rotation list', { TOKEN_ENCRYPTION_KEY: `${KEY_A},short` }, 'TOKEN_ENCRYPTION_KEY'],
    ['idle timeout zero', { SESSION_IDLE_TIMEOUT: '0' }, 'SESSION_IDLE_TIMEOUT'],
    ['absolute timeout zero', { SESSION_ABSOLUTE_TIMEOUT: '0' }, 'SESSION_ABSOLUTE_TIMEOUT'],
    ['trust proxy not something Express takes', { TRUST_PROXY: 'maybe' }, 'TRUST_PROXY'],
    ['trust proxy with one bad address in a list', { TRUST_PROXY: 'loopback, 10.0.0.0/33' }, 'TRUST_PROXY'],
    ['static dir that does not exist', { STATIC_DIR: '/nonexistent/cloakroom-spa' }, 'STATIC_DIR'],
    ['static dir that is a file', { STATIC_DIR: fileURLToPath(import.meta.url) }, 'STATIC_DIR'],
    ['metrics port equal to the port', { PORT: '8080', METRICS_PORT: '8080' }, 'METRICS_PORT'],
    ['metrics port out of range', { METRICS_PORT: '0' }, 'METRICS_PORT'],
    ['shutdown delay not shorter than the timeout', { SHUTDOWN_DELAY: '10', SHUTDOWN_TIMEOUT: '10' }, 'SHUTDOWN_DELAY'],
    ['oidc without issuer, client and redirect', { AUTH_MODE: 'oidc' }, 'OIDC_ISSUER'],
    ['oidc issuer over http off loopback', { AUTH_MODE: 'oidc', OIDC_ISSUER: 'http://idp.example.com', OIDC_CLIENT_ID: 'c', OIDC_REDIRECT_URI: 'https://app.example.com/auth/callback' }, 'OIDC_ISSUER'],
  ])('%s_is_a_config_error_naming_the_variable', (_name, env, variable) => {
    expect(variablesOf(problemsOf({ ...BASE, ...env }))).toContain(variable);
  });

  it.each<[string, string]>([
    ['partial glob', '/api/public/files/*.pdf'],
    ['double star in the middle', '/api/**/pdf'],
    ['empty segment', '/api//files/*'],
    ['trailing slash', '/api/public/files/'],
    ['no leading slash', 'api/public/files/**'],
    ['one bad pattern among good ones', '/api/public/files/**,/api/x*'],
  ])('download_paths_with_%s_is_a_config_error', (_name, patterns) => {
    const problems = problemsOf({ ...BASE, DOWNLOAD_PATHS: patterns });
    expect(variablesOf(problems)).toEqual(['DOWNLOAD_PATHS']);
    expect(problems[0]).toMatch(/^DOWNLOAD_PATHS: .*pattern/);
  });

  it('good_download_paths_are_kept_in_order', () => {
    expect(loadConfig({ ...BASE, DOWNLOAD_PATHS: '/api/a/*/pdf, /api/b/**' }).downloadPaths).toEqual(['/api/a/*/pdf', '/api/b/**']);
  });

  it.each<[string, Record<string, string>]>([
    ['REDIS_URL and REDIS_CLUSTER_NODES', { REDIS_URL: 'redis://a:6379', REDIS_CLUSTER_NODES: 'a:7000' }],
    ['REDIS_URL and REDIS_SENTINELS', { REDIS_URL: 'redis://a:6379', REDIS_SENTINELS: 'a:26379', REDIS_SENTINEL_NAME: 'm' }],
    ['REDIS_SENTINELS and REDIS_CLUSTER_NODES', { REDIS_SENTINELS: 'a:26379', REDIS_SENTINEL_NAME: 'm', REDIS_CLUSTER_NODES: 'a:7000' }],
  ])('more_than_one_redis_topology_%s_is_a_config_error', (_name, env) => {
    const problems = problemsOf({ ...BASE, ...env });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/only one of/);
  });

  it('each_redis_topology_alone_is_parsed', () => {
    expect(loadConfig({ ...BASE, REDIS_URL: 'rediss://u:p@redis.example.com:6380/2' }).redis).toEqual({ kind: 'url', url: 'rediss://u:p@redis.example.com:6380/2' });
    expect(loadConfig({ ...BASE, REDIS_SENTINELS: 's1:26379, [::1]:26380', REDIS_SENTINEL_NAME: 'mymaster', REDIS_SENTINEL_PASSWORD: 'pw' }).redis).toEqual({
      kind: 'sentinel',
      name: 'mymaster',
      sentinelPassword: 'pw',
      sentinels: [{ host: 's1', port: 26379 }, { host: '::1', port: 26380 }],
    });
    const cluster = loadConfig({ ...BASE, REDIS_CLUSTER_NODES: 'n1:7000,n2:7001', REDIS_PASSWORD: 'pw', REDIS_TLS: 'true' });
    expect(cluster.redis).toEqual({ kind: 'cluster', nodes: [{ host: 'n1', port: 7000 }, { host: 'n2', port: 7001 }] });
    expect(cluster.redisPassword).toBe('pw');
    expect(cluster.redisTls).toBe(true);
  });

  describe('production', () => {
    it('complete_production_config_is_accepted_with_secure_host_prefixed_cookie', () => {
      const c = loadConfig({ ...PRODUCTION });
      expect(c.production).toBe(true);
      expect(c.cookie).toEqual({ secure: true, name: '__Host-bff.sid', sameSite: 'lax' });
      expect(c.generatedSecrets).toEqual([]);
    });

    it.each<[string, Record<string, string>, string]>([
      ['missing REDIS_URL', { REDIS_URL: '' }, 'REDIS_URL'],
      ['missing SESSION_SECRET', { SESSION_SECRET: '' }, 'SESSION_SECRET'],
      ['short SESSION_SECRET', { SESSION_SECRET: 's'.repeat(31) }, 'SESSION_SECRET'],
      ['one short secret in a rotation list', { SESSION_SECRET: `${'s'.repeat(32)},short` }, 'SESSION_SECRET'],
      ['missing TOKEN_ENCRYPTION_KEY', { TOKEN_ENCRYPTION_KEY: '' }, 'TOKEN_ENCRYPTION_KEY'],
    ])('production_with_%s_is_refused', (_name, env, variable) => {
      expect(variablesOf(problemsOf({ ...PRODUCTION, ...env }))).toEqual([variable]);
    });

    it('production_accepts_sentinel_or_cluster_instead_of_redis_url', () => {
      expect(loadConfig({ ...PRODUCTION, REDIS_URL: '', REDIS_CLUSTER_NODES: 'n1:7000' }).redis.kind).toBe('cluster');
      expect(loadConfig({ ...PRODUCTION, REDIS_URL: '', REDIS_SENTINELS: 's:26379', REDIS_SENTINEL_NAME: 'm' }).redis.kind).toBe('sentinel');
    });

    it('production_may_turn_secure_cookies_off_explicitly', () => {
      expect(loadConfig({ ...PRODUCTION, COOKIE_SECURE: 'false' }).cookie).toEqual({ secure: false, name: 'bff.sid', sameSite: 'lax' });
    });
  });

  it('cookie_secure_true_gives_the_host_prefix_on_the_configured_name', () => {
    expect(loadConfig({ ...BASE, COOKIE_SECURE: 'true' }).cookie.name).toBe('__Host-bff.sid');
    expect(loadConfig({ ...BASE, COOKIE_SECURE: 'true', COOKIE_NAME: 'sid', COOKIE_SAMESITE: 'strict' }).cookie).toEqual({ secure: true, name: '__Host-sid', sameSite: 'strict' });
    expect(loadConfig({ ...BASE, COOKIE_NAME: 'sid' }).cookie.name).toBe('sid');
  });

  it('secret_lists_are_split_on_commas_and_trimmed', () => {
    const c = loadConfig({ ...BASE, SESSION_SECRET: 'first-secret, second-secret ,third', TOKEN_ENCRYPTION_KEY: `${KEY_A}, ${KEY_B}` });
    expect(c.sessionSecrets).toEqual(['first-secret', 'second-secret', 'third']);
    expect(c.tokenKeys.map((k) => k.toString('base64'))).toEqual([KEY_A, KEY_B]);
    expect(c.generatedSecrets).toEqual([]);
    expect(loadConfig({ ...BASE, ALLOWED_ORIGINS: 'https://a.example.com, http://localhost:5173' }).allowedOrigins).toEqual(['https://a.example.com', 'http://localhost:5173']);
  });

  it.each<[string, string]>([
    ['all zeros', Buffer.alloc(32, 0).toString('base64')],
    ['one repeated byte', Buffer.alloc(32, 0x41).toString('base64')],
  ])('production_refuses_an_encryption_key_of_%s', (_name, key) => {
    const problems = problemsOf({ ...PRODUCTION, TOKEN_ENCRYPTION_KEY: `${KEY_A},${key}` });
    expect(variablesOf(problems)).toEqual(['TOKEN_ENCRYPTION_KEY']);
    expect(problems.join('\n')).not.toContain(key);
  });

  it('production_refuses_the_example_files_placeholders_wherever_they_stand', () => {
    const problems = problemsOf({
      ...PRODUCTION,
      SESSION_SECRET: `${'s'.repeat(32)},change-me-session-secret-at-least-32-characters`,
      REDIS_URL: 'redis://:change-me-redis-password@redis.internal:6379',
    });
    expect(variablesOf(problems).sort()).toEqual(['REDIS_URL', 'SESSION_SECRET']);
    // Development may keep them: nothing is at stake there.
    expect(loadConfig({ ...BASE, SESSION_SECRET: 'change-me-session-secret-at-least-32-characters' }).sessionSecrets).toHaveLength(1);
  });

  it('session_timeouts_of_a_few_seconds_are_taken_as_set', () => {
    expect(loadConfig({ ...BASE, SESSION_IDLE_TIMEOUT: '3', SESSION_ABSOLUTE_TIMEOUT: '8' })).toMatchObject({ idleTimeoutSeconds: 3, absoluteTimeoutSeconds: 8 });
    expect(loadConfig({ ...BASE, SESSION_IDLE_TIMEOUT: '1', SESSION_ABSOLUTE_TIMEOUT: '1' })).toMatchObject({ idleTimeoutSeconds: 1, absoluteTimeoutSeconds: 1 });
  });

  it('static_dir_that_is_a_readable_folder_is_taken', () => {
    expect(loadConfig({ ...BASE, STATIC_DIR: tmpdir() }).staticDir).toBe(tmpdir());
  });

  it('shutdown_waits_for_the_load_balancer_in_production_only_unless_set', () => {
    expect(loadConfig({ ...BASE }).shutdownDelayMs).toBe(0);
    expect(loadConfig({ ...PRODUCTION }).shutdownDelayMs).toBe(2000);
    expect(loadConfig({ ...PRODUCTION, SHUTDOWN_DELAY: '0' }).shutdownDelayMs).toBe(0);
    expect(loadConfig({ ...BASE, SHUTDOWN_DELAY: '1', METRICS_PORT: '9464' })).toMatchObject({ shutdownDelayMs: 1000, metricsPort: 9464 });
  });

  it('trust_proxy_accepts_booleans_hop_counts_and_names', () => {
    expect(loadConfig({ ...BASE, TRUST_PROXY: 'true' }).trustProxy).toBe(true);
    expect(loadConfig({ ...BASE, TRUST_PROXY: '2' }).trustProxy).toBe(2);
    expect(loadConfig({ ...BASE, TRUST_PROXY: 'loopback' }).trustProxy).toBe('loopback');
    expect(loadConfig({ ...BASE, TRUST_PROXY: 'loopback, 10.0.0.0/8, fd00::/8' }).trustProxy).toBe('loopback, 10.0.0.0/8, fd00::/8');
  });

  it('problem_lines_never_repeat_a_secret_value', () => {
    const secret = 'not-a-real-key-but-secret-looking-value';
    const problems = problemsOf({ ...PRODUCTION, TOKEN_ENCRYPTION_KEY: secret, SESSION_SECRET: 'tiny-secret' });
    expect(problems.join('\n')).not.toContain(secret);
    expect(problems.join('\n')).not.toContain('tiny-secret');
  });
});

// ---- the built server as a process -------------------------------------------------

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const MAIN = join(ROOT, 'dist', 'src', 'main.js');
// A folder without a .env file, so only the variables given here count.
const CWD = mkdtempSync(join(tmpdir(), 'cloakroom-proc-'));

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

interface Running {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<Exit>;
}

function launch(env: Record<string, string>): Running {
  const child = spawn(process.execPath, [MAIN], { cwd: CWD, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout?.on('data', (c: Buffer) => (out += c.toString('utf8')));
  child.stderr?.on('data', (c: Buffer) => (err += c.toString('utf8')));
  const exited = new Promise<Exit>((done) => child.once('exit', (code, signal) => done({ code, signal, stdout: out, stderr: err })));
  return { child, stdout: () => out, stderr: () => err, exited };
}

const withDeadline = <T>(p: Promise<T>, ms: number, what: string): Promise<T> =>
  Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms).unref())]);

interface Answer {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
}

function call(port: number, path: string, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Answer> {
  return new Promise((done, fail) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, method: opts.method ?? 'GET', headers: opts.headers ?? {}, agent: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString('utf8')));
      res.on('end', () => done({ status: res.statusCode ?? 0, body, headers: res.headers }));
      res.on('error', fail);
    });
    req.on('error', fail);
    req.end(opts.body);
  });
}

async function waitUntil(check: () => Promise<boolean> | boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await Promise.resolve(check()).catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('the built server process', () => {
  let redis: RedisServer;
  let upstream: FakeUpstream;
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    // Compile errors elsewhere in the tree still emit JavaScript; what matters here is that main.js exists.
    await new Promise<void>((done) => execFile(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.build.json')], { cwd: ROOT }, () => done()));
    if (!existsSync(MAIN)) throw new Error(`build did not produce ${MAIN}`);
    redis = await startRedisServer();
    upstream = await startFakeUpstream();
  }, 60_000);
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await upstream.close();
    await redis.stop();
  });

  const goodEnv = async (): Promise<{ env: Record<string, string>; port: number }> => {
    const port = await freePort();
    return {
      port,
      env: {
        PORT: String(port),
        HOST: '127.0.0.1',
        UPSTREAM_URL: upstream.url,
        REDIS_URL: `redis://127.0.0.1:${redis.port}`,
        SESSION_SECRET: TEST_SESSION_SECRET,
        TOKEN_ENCRYPTION_KEY: TEST_TOKEN_KEY,
        LOG_LEVEL: 'info',
      },
    };
  };

  const startGood = async (): Promise<{ proc: Running; port: number }> => {
    const { env, port } = await goodEnv();
    const proc = launch(env);
    children.push(proc.child);
    await waitUntil(async () => (await call(port, '/healthz')).status === 200, 5000, 'the server to answer /healthz');
    return { proc, port };
  };

  it('bad_environment_exits_1_with_one_line_per_bad_variable_and_no_stack_trace', async () => {
    const proc = launch({ UPSTREAM_URL: 'http://127.0.0.1:1', PORT: 'abc', COOKIE_SAMESITE: 'none', REFRESH_SKEW: '-1' });
    children.push(proc.child);
    const exit = await withDeadline(proc.exited, 5000, 'exit on bad config');
    expect(exit.code).toBe(1);
    const lines = exit.stderr.split('\n').filter((l) => l.trim() !== '');
    expect(lines).toHaveLength(3);
    for (const name of ['PORT', 'COOKIE_SAMESITE', 'REFRESH_SKEW']) expect(lines.filter((l) => l.includes(`${name}:`))).toHaveLength(1);
    expect(exit.stderr).not.toMatch(/^\s+at /m);
    expect(exit.stderr).not.toMatch(/Error:/);
  });

  it('production_without_secrets_or_redis_exits_1_naming_each', async () => {
    const proc = launch({ NODE_ENV: 'production', UPSTREAM_URL: 'http://127.0.0.1:1', DOWNLOAD_PATHS: '/api/files/*.pdf' });
    children.push(proc.child);
    const exit = await withDeadline(proc.exited, 5000, 'exit on bad config');
    expect(exit.code).toBe(1);
    const lines = exit.stderr.split('\n').filter((l) => l.trim() !== '');
    expect(lines).toHaveLength(4);
    for (const name of ['REDIS_URL', 'SESSION_SECRET', 'TOKEN_ENCRYPTION_KEY', 'DOWNLOAD_PATHS']) expect(lines.some((l) => l.includes(`${name}:`))).toBe(true);
    expect(exit.stderr).not.toMatch(/^\s+at /m);
  });

  it('good_environment_serves_healthz_and_sigterm_exits_0_promptly', async () => {
    const { proc, port } = await startGood();
    expect((await call(port, '/readyz')).status).toBe(200);
    proc.child.kill('SIGTERM');
    const exit = await withDeadline(proc.exited, 3000, 'exit after SIGTERM');
    expect(exit).toMatchObject({ code: 0, signal: null });
    expect(exit.stderr).toBe('');
  });

  it('a_port_already_in_use_is_one_line_naming_PORT_and_exit_1', async () => {
    const { proc: first, port } = await startGood();
    const { env } = await goodEnv();
    const second = launch({ ...env, PORT: String(port) });
    children.push(second.child);
    const exit = await withDeadline(second.exited, 5000, 'exit on a busy port');
    expect(exit.code).toBe(1);
    const lines = exit.stderr.split('\n').filter((l) => l.trim() !== '');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^config error: PORT: .*already in use/);
    expect(exit.stderr).not.toMatch(/^\s+at /m);
    first.child.kill('SIGTERM');
    await withDeadline(first.exited, 3000, 'exit after SIGTERM');
  });

  it('metrics_port_serves_metrics_with_process_metrics_and_the_public_port_answers_404', async () => {
    const { env, port } = await goodEnv();
    const metricsPort = await freePort();
    const proc = launch({ ...env, METRICS_PORT: String(metricsPort) });
    children.push(proc.child);
    await waitUntil(async () => (await call(port, '/healthz')).status === 200, 5000, 'the server to answer /healthz');
    const hidden = await call(port, '/metrics');
    expect(hidden.status).toBe(404);
    expect(JSON.parse(hidden.body)).toMatchObject({ error: 'not_found' });
    const scraped = await call(metricsPort, '/metrics');
    expect(scraped.status).toBe(200);
    expect(scraped.body).toContain('cloakroom_http_requests_total');
    expect(scraped.body).toContain('process_cpu_user_seconds_total');
    expect((await call(metricsPort, '/healthz')).status).toBe(404);
    proc.child.kill('SIGTERM');
    expect(await withDeadline(proc.exited, 3000, 'exit after SIGTERM')).toMatchObject({ code: 0 });
  });

  it('shutdown_delay_keeps_accepting_with_readyz_503_then_exits_0', async () => {
    const { env, port } = await goodEnv();
    const proc = launch({ ...env, SHUTDOWN_DELAY: '1', SHUTDOWN_TIMEOUT: '5' });
    children.push(proc.child);
    await waitUntil(async () => (await call(port, '/healthz')).status === 200, 5000, 'the server to answer /healthz');
    const signalled = Date.now();
    proc.child.kill('SIGTERM');
    await waitUntil(() => proc.stdout().includes('shutting down'), 3000, 'the drain to begin');
    // The load balancer's probe still connects during the delay, and is told to stop sending.
    expect((await call(port, '/readyz')).status).toBe(503);
    expect((await call(port, '/healthz')).status).toBe(200);
    const exit = await withDeadline(proc.exited, 5000, 'exit after the delay');
    expect(exit).toMatchObject({ code: 0, signal: null });
    expect(Date.now() - signalled).toBeGreaterThanOrEqual(900);
  });

  it('sigterm_lets_an_in_flight_request_finish_while_readyz_turns_503_and_new_connections_are_refused', async () => {
    const { proc, port } = await startGood();
    const login = await call(port, '/auth/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-csrf': '1' },
      body: JSON.stringify(DEMO),
    });
    expect(login.status).toBe(200);
    const cookie = String((login.headers['set-cookie'] as string[] | undefined)?.[0] ?? '').split(';')[0] ?? '';

    // One keep-alive connection: a slow API call in flight, then (after SIGTERM) a
    // pipelined /readyz on the same connection, which the draining server still reads.
    const socket = connect(port, '127.0.0.1');
    let received = '';
    socket.on('data', (c: Buffer) => (received += c.toString('latin1')));
    const closed = new Promise<void>((done) => socket.once('close', () => done()));
    socket.on('error', () => undefined);
    await new Promise<void>((done) => socket.once('connect', () => done()));
    socket.write(`GET /api/slow-headers?ms=1500 HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nCookie: ${cookie}\r\nX-CSRF: 1\r\n\r\n`);
    await waitUntil(() => upstream.requests.some((r) => r.url === '/api/slow-headers?ms=1500'), 3000, 'the slow call to reach upstream');

    proc.child.kill('SIGTERM');
    await waitUntil(() => proc.stdout().includes('shutting down'), 3000, 'the drain to begin');
    socket.write(`GET /readyz HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`);
    await expect(call(port, '/healthz')).rejects.toThrow(/ECONNREFUSED/);

    await withDeadline(closed, 5000, 'the drained connection to close');
    const statuses = [...received.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
    expect(statuses).toEqual([200, 503]);
    expect(received).toContain('{"ok":true,"slow":"headers"}');
    const exit = await withDeadline(proc.exited, 3000, 'exit after the drain');
    expect(exit).toMatchObject({ code: 0, signal: null });
  });
});
