/**
 * The operator command line on a real redis-server, beside two running instances: it lists what
 * GET /auth/sessions lists, its revokes reach both instances and spare other users, and it
 * answers configuration and usage errors as the contract says (1 and 2, one line per variable,
 * no stack trace). The built `npx cloakroom` is run once as a process.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import request from 'supertest';
import { parseCommand, runCli } from '../src/cli.js';
import { DEMO, TEST_TOKEN_KEY, startHarness, closeExpectingNoLeaks, type Harness, type Instance } from './support/harness.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const OTHER = { email: 'other@example.com', password: 'other-password' } as const;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let h: Harness;
let a: Instance;
let b: Instance;
let env: Record<string, string>;

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runCli(argv, { env, out: (t) => (out += t), err: (t) => (err += t) });
  return { code, out, err };
}

function run(cmd: string, args: string[], runEnv: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(cmd, args, { cwd: ROOT, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...runEnv } }, (error, stdout, stderr) => {
      const code = error && typeof error.code === 'number' ? error.code : error ? 1 : 0;
      done({ code, stdout, stderr });
    });
  });
}

async function signIn(instance: Instance, who: { email: string; password: string } = DEMO, userAgent = 'cli-test'): Promise<string> {
  const res = await request(instance.url).post('/auth/login').set('X-CSRF', '1').set('User-Agent', userAgent).send(who);
  expect(res.status).toBe(200);
  return ([] as string[]).concat(res.headers['set-cookie'] ?? [])[0]?.split(';')[0] ?? '';
}
const api = (instance: Instance, cookie: string) => request(instance.url).get('/api/data').set('X-CSRF', '1').set('Cookie', cookie);

async function eventually401(instance: Instance, cookie: string): Promise<void> {
  const started = Date.now();
  while ((await api(instance, cookie)).status !== 401) {
    if (Date.now() - started > 3000) throw new Error('session still answers after 3 s');
    await sleep(20);
  }
}

beforeAll(async () => {
  h = await startHarness();
  a = await h.start();
  b = await h.start();
  env = { REDIS_URL: `redis://127.0.0.1:${h.redis.port}`, TOKEN_ENCRYPTION_KEY: TEST_TOKEN_KEY };
  // The process tests below need the built command (tsc emits even past type errors elsewhere).
  await new Promise<void>((done) => execFile(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.build.json')], { cwd: ROOT }, () => done()));
}, 90_000);

afterAll(async () => {
  await closeExpectingNoLeaks(h);
});

describe('cloakroom sessions', () => {
  it('sessions_list_json_is_the_body_of_get_auth_sessions_without_a_current_session', async () => {
    const cookie = await signIn(a, OTHER, 'Listed/1.0');
    await signIn(b, OTHER, 'Listed/2.0');
    const viaHttp = (await request(b.url).get('/auth/sessions').set('Cookie', cookie)).body as { sessions: { current: boolean }[] };
    const listed = await cli('sessions', 'list', '--user', '1004', '--json');
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.out)).toEqual({ sessions: viaHttp.sessions.map((s) => ({ ...s, current: false })) });
    const text = await cli('sessions', 'list', '--user', '1004');
    expect(text.out).toMatch(/^2 live sessions for user "1004" \(AUTH_MODE=nexudus\)/);
    expect(text.out).toContain('"Listed/2.0"');
    // The same id in another mode is another user.
    const json = await runCli(['sessions', 'list', '--user', '1004', '--json'], { env: { ...env, AUTH_MODE: 'json' }, out: (t) => expect(JSON.parse(t)).toEqual({ sessions: [] }), err: () => undefined });
    expect(json).toBe(0);
  });

  it('sessions_revoke_session_ends_that_session_on_every_instance', async () => {
    const cookie = await signIn(a, DEMO, 'Revoked/1.0');
    const keep = await signIn(a, DEMO, 'Kept/1.0');
    expect((await api(b, cookie)).status).toBe(200);
    const handle = ((await request(a.url).get('/auth/sessions').set('Cookie', cookie)).body as { sessions: { id: string; current: boolean }[] }).sessions.find((s) => s.current)?.id ?? '';
    const res = await cli('sessions', 'revoke', '--session', handle);
    expect(res).toEqual({ code: 0, out: 'ended 1 session\n', err: '' });
    await eventually401(b, cookie);
    expect((await api(a, cookie)).status).toBe(401);
    expect((await api(b, keep)).status).toBe(200);
    expect((await cli('sessions', 'revoke', '--session', handle)).out).toBe('ended 0 sessions\n');
  });

  it('sessions_revoke_user_ends_every_session_of_that_user_and_spares_others', async () => {
    const mine = [await signIn(a), await signIn(b), await signIn(b)];
    const other = await signIn(a, OTHER);
    for (const c of mine) expect((await api(b, c)).status).toBe(200);
    const res = await cli('sessions', 'revoke', '--user', '1001');
    expect(res.code).toBe(0);
    expect(res.out).toMatch(/^ended \d+ sessions\n$/);
    expect(Number(/\d+/.exec(res.out)?.[0])).toBeGreaterThanOrEqual(3);
    for (const c of mine) {
      await eventually401(b, c);
      await eventually401(a, c);
    }
    expect((await api(b, other)).status).toBe(200);
    expect((await cli('sessions', 'list', '--user', '1001', '--json')).out).toBe('{"sessions":[]}\n');
  });
});

describe('errors', () => {
  it('usage_errors_exit_2_and_print_the_usage', async () => {
    for (const argv of [[], ['sessions'], ['sessions', 'list'], ['sessions', 'revoke', '--user', 'x', '--session', 'y'], ['reseal', 'now'], ['sessions', 'list', '--user', 'x', '--bogus'], ['frobnicate']]) {
      const res = await cli(...argv);
      expect({ argv, code: res.code }).toEqual({ argv, code: 2 });
      expect(res.err).toContain('Usage: cloakroom');
      expect(res.out).toBe('');
    }
  });

  it('a_handle_or_user_id_that_starts_with_a_dash_is_the_option_s_value', () => {
    // Handles are base64url: one in 64 starts with '-', and the list prints it as it is.
    expect(parseCommand(['sessions', 'revoke', '--session', '-Ab_cd-EfGhIjKlMnOpQrStUvWxYz012345'])).toEqual({ kind: 'revoke', target: { session: '-Ab_cd-EfGhIjKlMnOpQrStUvWxYz012345' } });
    expect(parseCommand(['sessions', 'revoke', '--session', '--Ab_cdEfGhIjKlMnOpQrStUvWxYz012345'])).toEqual({ kind: 'revoke', target: { session: '--Ab_cdEfGhIjKlMnOpQrStUvWxYz012345' } });
    expect(parseCommand(['sessions', 'list', '--user', '-42', '--json'])).toEqual({ kind: 'list', user: '-42', json: true });
    // One of our own options after it is still no value.
    expect(() => parseCommand(['sessions', 'revoke', '--session', '--json'])).toThrow();
  });

  it('bad_configuration_exits_1_with_one_line_per_variable', async () => {
    let err = '';
    const code = await runCli(['reseal'], { env: { REDIS_URL: 'http://nope', TOKEN_ENCRYPTION_KEY: 'short', AUTH_MODE: 'ldap' }, out: () => undefined, err: (t) => (err += t) });
    expect(code).toBe(1);
    expect(err.trim().split('\n').sort()).toEqual([
      'config error: AUTH_MODE: Invalid option: expected one of "nexudus"|"json"|"oidc"',
      'config error: REDIS_URL: must be a redis:// or rediss:// URL',
      'config error: TOKEN_ENCRYPTION_KEY: every key must be base64 of exactly 32 bytes',
    ]);
    let missing = '';
    expect(await runCli(['sessions', 'list', '--user', '1'], { env: {}, out: () => undefined, err: (t) => (missing += t) })).toBe(1);
    expect(missing).toMatch(/^config error: REDIS_URL: is required.*\nconfig error: TOKEN_ENCRYPTION_KEY: is required.*\n$/);
  });

  it('an_unreachable_redis_exits_1_with_one_line', async () => {
    let err = '';
    const code = await runCli(['reseal'], { env: { ...env, REDIS_URL: 'redis://127.0.0.1:1' }, out: () => undefined, err: (t) => (err += t) });
    expect(code).toBe(1);
    expect(err).toMatch(/^cloakroom: Redis is not usable: .*\n$/);
  }, 20_000);

  it('the_built_command_runs_as_npx_cloakroom_with_help_and_config_errors', async () => {
    expect(existsSync(join(ROOT, 'dist', 'src', 'cli.js'))).toBe(true);
    const help = await run('npx', ['--no-install', 'cloakroom', '--help'], {});
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('sessions list --user <id>');
    const bad = await run(process.execPath, [join(ROOT, 'dist', 'src', 'cli.js'), 'reseal'], { REDIS_URL: 'nope', TOKEN_ENCRYPTION_KEY: TEST_TOKEN_KEY });
    expect(bad).toEqual({ code: 1, stdout: '', stderr: 'config error: REDIS_URL: must be a redis:// or rediss:// URL\n' });
    const usage = await run(process.execPath, [join(ROOT, 'dist', 'src', 'cli.js'), 'nonsense'], {});
    expect(usage.code).toBe(2);
    const listed = await run(process.execPath, [join(ROOT, 'dist', 'src', 'cli.js'), 'sessions', 'list', '--user', 'nobody', '--json'], env);
    expect(listed).toEqual({ code: 0, stdout: '{"sessions":[]}\n', stderr: '' });
  }, 60_000);
});
