import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, connect } from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A real redis-server on a free loopback port, owned by one test run or bench run (never a fixed port). */
export interface RedisServer {
  readonly port: number;
  readonly url: string;
  stop(): Promise<void>;
  /** Starts it again on the same port after stop(), for outage tests. */
  start(): Promise<void>;
  /** The running redis-server's process id (undefined while stopped). */
  readonly pid: number | undefined;
  /** SIGSTOP: the process keeps its sockets open but answers nothing, like a hung Redis. */
  pause(): void;
  /** SIGCONT after pause(). */
  resume(): void;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = (): void => {
      const sock = connect(port, '127.0.0.1');
      sock.once('connect', () => { sock.destroy(); resolve(); });
      sock.once('error', () => {
        sock.destroy();
        if (Date.now() > deadline) reject(new Error(`redis-server did not listen on ${port}`));
        else setTimeout(attempt, 25);
      });
    };
    attempt();
  });
}

/**
 * `persist: true` keeps the data across stop()/start() (an RDB in a temp dir, written on
 * SIGTERM), like a production Redis that restarts; otherwise stop() is a hard kill.
 */
export async function startRedisServer(opts: { port?: number; persist?: boolean } = {}): Promise<RedisServer> {
  const port = opts.port ?? (await freePort());
  const dir = opts.persist ? mkdtempSync(join(tmpdir(), 'cloakroom-redis-')) : undefined;
  const persistence = dir ? ['--save', '3600 1', '--dir', dir, '--dbfilename', 'dump.rdb'] : ['--save', ''];
  let child: ChildProcess | undefined;
  const start = async (): Promise<void> => {
    const c = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', ...persistence, '--appendonly', 'no', '--loglevel', 'warning'], { stdio: 'ignore' });
    child = c;
    const failed = new Promise<never>((_, reject) => {
      c.once('error', (err) => reject(new Error(`cannot start redis-server (is it installed?): ${err.message}`)));
    });
    await Promise.race([waitForPort(port, 5000), failed]);
  };
  const stop = async (): Promise<void> => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null) return;
    await new Promise<void>((resolve) => { c.once('exit', () => resolve()); c.kill(dir ? 'SIGTERM' : 'SIGKILL'); });
  };
  const signal = (sig: NodeJS.Signals): void => {
    if (!child?.pid || child.exitCode !== null) throw new Error('redis-server is not running');
    process.kill(child.pid, sig);
  };
  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    start,
    stop,
    get pid() {
      return child?.pid;
    },
    pause: () => signal('SIGSTOP'),
    resume: () => signal('SIGCONT'),
  };
}
