#!/usr/bin/env node
/**
 * `cloakroom`, the operator command line: a user's sessions (list, revoke) and `reseal`. It is
 * built from the server's own modules (config checks, key layout, session lifecycle, sealing),
 * so it cannot drift from what the servers write. Exit codes: 0 done, 1 configuration or Redis
 * trouble, 2 usage.
 */
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ConfigError, loadOperatorConfig, type OperatorConfig } from './config.js';
import { createIdleToucher } from './core/idle-touch.js';
import { createSessionLifecycle, sessionTimeouts, type SessionLifecycle } from './core/session-lifecycle.js';
import { createTokenSealer } from './core/token-crypto.js';
import { createTokenVault } from './core/token-vault.js';
import { isHandleShape, sessionOwner } from './store/keys.js';
import { createRedisClient, waitForReady, type RedisClient } from './store/redis-client.js';
import { createRedisGuard } from './store/redis-guard.js';
import { resealTokenRecords, storeSize, type ResealCounts } from './store/reseal.js';
import { createRedisSessionBroadcast } from './store/session-broadcast.js';
import { createRedisSessionIndex, listedSession } from './store/session-index.js';
import { createRedisTokenStore } from './store/redis-token-store.js';

export const USAGE = `Usage: cloakroom <command>

Commands:
  sessions list --user <id> [--json]         a user's live sessions (--json: the GET /auth/sessions body)
  sessions revoke --user <id>                end every session of a user, on every instance
  sessions revoke --session <handle>         end one session (its id in the sessions list)
  reseal                                     seal every stored token record with the first TOKEN_ENCRYPTION_KEY

Configured by the servers' environment: REDIS_URL (or REDIS_SENTINELS + REDIS_SENTINEL_NAME,
or REDIS_CLUSTER_NODES), REDIS_USERNAME, REDIS_PASSWORD, REDIS_TLS, TOKEN_ENCRYPTION_KEY,
AUTH_MODE (a user is the same id in the same mode).

Exit codes: 0 done, 1 configuration or Redis error, 2 usage error.
`;

export interface CliIo {
  env: Record<string, string | undefined>;
  out: (text: string) => void;
  err: (text: string) => void;
  /** Progress on a terminal: the line is rewritten in place. */
  progress?: ((text: string) => void) | undefined;
}

class UsageError extends Error {}

type Command =
  | { kind: 'help' }
  | { kind: 'list'; user: string; json: boolean }
  | { kind: 'revoke'; target: { user: string } | { session: string } }
  | { kind: 'reseal' };

const VALUE_OPTIONS = new Set(['--user', '--session']);
const FLAGS = new Set(['--user', '--session', '--json', '--help', '-h']);

/**
 * `--session <handle>` as `--session=<handle>`: a handle is base64url and may start with `-`
 * (one in 64 does), which parseArgs would otherwise refuse as an ambiguous option value, and an
 * operator pastes the handle from `sessions list` as it is. The next word stays an option when
 * it is one of ours (`--session --json` is still a usage error).
 */
function joinOptionValues(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const next = argv[i + 1];
    if (VALUE_OPTIONS.has(arg) && next !== undefined && next.startsWith('-') && !FLAGS.has(next)) {
      out.push(`${arg}=${next}`);
      i++;
    } else out.push(arg);
  }
  return out;
}

export function parseCommand(argv: string[]): Command {
  let parsed;
  try {
    parsed = parseArgs({
      args: joinOptionValues(argv),
      allowPositionals: true,
      strict: true,
      options: { user: { type: 'string' }, session: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    });
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  const { values, positionals } = parsed;
  if (values.help || positionals[0] === 'help') return { kind: 'help' };
  const [group, action, ...rest] = positionals;
  if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`);
  if (group === 'reseal' && action === undefined && !values.user && !values.session && !values.json) return { kind: 'reseal' };
  if (group === 'sessions' && action === 'list' && values.user && !values.session) return { kind: 'list', user: values.user, json: values.json === true };
  if (group === 'sessions' && action === 'revoke' && !values.json) {
    if (values.user && !values.session) return { kind: 'revoke', target: { user: values.user } };
    if (values.session && !values.user) return { kind: 'revoke', target: { session: values.session } };
    throw new UsageError('sessions revoke takes exactly one of --user <id> and --session <handle>');
  }
  if (group === undefined) throw new UsageError('no command given');
  throw new UsageError(`unknown command or options: ${positionals.join(' ')}`);
}

function operatorTools(config: OperatorConfig, redis: RedisClient): { sessions: SessionLifecycle; index: ReturnType<typeof createRedisSessionIndex> } {
  const guard = createRedisGuard();
  const store = createRedisTokenStore(redis, { guard });
  const index = createRedisSessionIndex(redis, guard);
  const timeouts = sessionTimeouts(config.idleTimeoutSeconds * 1000, config.absoluteTimeoutSeconds * 1000);
  const sealer = createTokenSealer(config.tokenKeys);
  const vault = createTokenVault(store, sealer, Date.now, 0);
  const toucher = createIdleToucher({ store, index, timeouts, intervalMs: 1000, clock: Date.now });
  // The servers' own lifecycle: ending a session here is what a logout does there, broadcast included.
  const sessions = createSessionLifecycle({ store, vault, toucher, timeouts, clock: Date.now, index, broadcast: createRedisSessionBroadcast(redis, guard) });
  return { sessions, index };
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

function describeCounts(c: ResealCounts): string {
  return `resealed ${c.resealed}, skipped ${c.skipped} (already under the first key or changed meanwhile), unreadable ${c.unreadable} (no configured key opens them)`;
}

/** Runs one command; resolves to the exit code. */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  let command: Command;
  try {
    command = parseCommand(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    io.err(`cloakroom: ${err.message}\n\n${USAGE}`);
    return 2;
  }
  if (command.kind === 'help') {
    io.out(USAGE);
    return 0;
  }

  let config: OperatorConfig;
  try {
    config = loadOperatorConfig(io.env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const line of err.problems) io.err(`config error: ${line}\n`);
    return 1;
  }
  const redis = createRedisClient(config);
  if (!redis) throw new Error('the operator configuration always names a Redis');
  redis.on('error', () => undefined);
  try {
    try {
      await waitForReady(redis, 5000);
    } catch (err) {
      io.err(`cloakroom: Redis is not usable: ${err instanceof Error ? err.message : String(err)}\n`);
      return 1;
    }
    return await runCommand(command, config, redis, io);
  } catch (err) {
    io.err(`cloakroom: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  } finally {
    redis.disconnect();
  }
}

async function runCommand(command: Exclude<Command, { kind: 'help' }>, config: OperatorConfig, redis: RedisClient, io: CliIo): Promise<number> {
  if (command.kind === 'reseal') {
    const sealer = createTokenSealer(config.tokenKeys);
    const total = io.progress ? await storeSize(redis) : 0;
    let shown = Date.now();
    let drawn = false;
    const counts = await resealTokenRecords(redis, sealer, {
      onProgress: (c) => {
        const now = Date.now();
        // Only a run long enough to wait for (a large store) draws the line.
        if (!io.progress || now - shown < 200) return;
        shown = now;
        drawn = true;
        io.progress(`\r${c.scanned} records looked at (store: ${total} keys); ${describeCounts(c)}`);
      },
    });
    if (io.progress && drawn) io.progress('\n');
    io.out(`${describeCounts(counts)}\n`);
    return 0;
  }

  const { sessions, index } = operatorTools(config, redis);
  if (command.kind === 'list') {
    const entries = await sessions.listOwned(sessionOwner(config.authMode, command.user));
    if (command.json) {
      io.out(`${JSON.stringify({ sessions: entries.map((e) => listedSession(e, null)) })}\n`);
      return 0;
    }
    io.out(`${plural(entries.length, 'live session')} for user ${JSON.stringify(command.user)} (AUTH_MODE=${config.authMode})\n`);
    for (const e of entries.map((x) => listedSession(x, null))) {
      io.out(`${e.id}  signed in ${e.createdAt}  last seen ${e.lastSeenAt}  ${JSON.stringify(e.userAgent)}\n`);
    }
    return 0;
  }

  let ended = 0;
  if ('user' in command.target) {
    ended = await sessions.endAllOwned(sessionOwner(config.authMode, command.target.user));
  } else {
    const handle = command.target.session;
    const owner = isHandleShape(handle) ? await index.ownerOfHandle(handle) : null;
    ended = owner && (await sessions.endOwned(owner, handle)) ? 1 : 0;
  }
  io.out(`ended ${plural(ended, 'session')}\n`);
  return 0;
}

// Run only as the program itself (a test imports runCli).
const invokedAs = process.argv[1] ?? '';
if (/(?:^|[\\/])(?:cli\.js|cloakroom)$/.test(invokedAs)) {
  if (existsSync('.env') && typeof process.loadEnvFile === 'function') process.loadEnvFile('.env');
  runCli(process.argv.slice(2), {
    env: process.env,
    out: (t) => process.stdout.write(t),
    err: (t) => process.stderr.write(t),
    progress: process.stderr.isTTY ? (t) => process.stderr.write(t) : undefined,
  }).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`cloakroom: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
