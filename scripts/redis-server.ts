import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, connect } from 'node:net';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';

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
 * Every server gets a working directory of its own (`dir`, or a new temp dir): a replica
 * writes the RDB it receives there, and a redis-server without `--dir` would write it into
 * the checkout. An own temp dir of a server without persistence goes away on stop().
 */
export async function startRedisServer(opts: { port?: number; persist?: boolean; dir?: string; args?: readonly string[] } = {}): Promise<RedisServer> {
  const port = opts.port ?? (await freePort());
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'cloakroom-redis-'));
  const removeOnStop = opts.dir === undefined && !opts.persist;
  const persistence = opts.persist ? ['--save', '3600 1', '--dbfilename', 'dump.rdb'] : ['--save', ''];
  let child: ChildProcess | undefined;
  const start = async (): Promise<void> => {
    mkdirSync(dir, { recursive: true });
    const c = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, ...persistence, '--appendonly', 'no', '--loglevel', 'warning', ...(opts.args ?? [])], { stdio: 'ignore' });
    child = c;
    const failed = new Promise<never>((_, reject) => {
      c.once('error', (err) => reject(new Error(`cannot start redis-server (is it installed?): ${err.message}`)));
    });
    await Promise.race([waitForPort(port, 5000), failed]);
  };
  const stop = async (): Promise<void> => {
    const c = child;
    child = undefined;
    if (c && c.exitCode === null) {
      await new Promise<void>((resolve) => { c.once('exit', () => resolve()); c.kill(opts.persist ? 'SIGTERM' : 'SIGKILL'); });
    }
    if (removeOnStop) rmSync(dir, { recursive: true, force: true });
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

/**
 * A Redis Sentinel (redis-server in sentinel mode) on a free port, watching `masterPort` as
 * `name` with a quorum of one. Failure detection and failover are tuned for tests: the master
 * is down after `downAfterMs` without answers.
 */
export async function startSentinel(opts: { masterPort: number; name: string; downAfterMs?: number }): Promise<{ port: number; stop(): Promise<void> }> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'cloakroom-sentinel-'));
  const conf = join(dir, 'sentinel.conf');
  writeFileSync(
    conf,
    [
      `port ${port}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      `sentinel monitor ${opts.name} 127.0.0.1 ${opts.masterPort} 1`,
      `sentinel down-after-milliseconds ${opts.name} ${opts.downAfterMs ?? 1000}`,
      `sentinel failover-timeout ${opts.name} 5000`,
      `sentinel parallel-syncs ${opts.name} 1`,
      '',
    ].join('\n'),
  );
  const c = spawn('redis-server', [conf, '--sentinel', '--loglevel', 'warning'], { stdio: 'ignore' });
  const failed = new Promise<never>((_, reject) => {
    c.once('error', (err) => reject(new Error(`cannot start redis-server --sentinel: ${err.message}`)));
  });
  await Promise.race([waitForPort(port, 5000), failed]);
  return {
    port,
    stop: async () => {
      if (c.exitCode === null) await new Promise<void>((resolve) => { c.once('exit', () => resolve()); c.kill('SIGKILL'); });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A Redis Cluster of `masters` redis-servers (cluster mode, each on a free port), the 16384
 * slots split evenly, every node met, `cluster_state:ok` on all of them before it resolves.
 * With `replicasPerMaster`, each master gets that many replicas (`replicas`, in master order),
 * in sync before it resolves: a killed master is then replaced by its replica after the node
 * timeout. A node keeps its cluster config in its own temp dir, so `node.stop()` then
 * `node.start()` brings it back into the cluster with its slots (and, without persistence,
 * none of its keys).
 */
export async function startCluster(opts: { masters?: number; nodeTimeoutMs?: number; replicasPerMaster?: number } = {}): Promise<{ nodes: RedisServer[]; replicas: RedisServer[]; stop(): Promise<void> }> {
  const count = opts.masters ?? 3;
  const perMaster = opts.replicasPerMaster ?? 0;
  const nodes: RedisServer[] = [];
  const replicas: RedisServer[] = [];
  const busPorts: number[] = [];
  const dirs: string[] = [];
  const startNode = async (): Promise<{ server: RedisServer; bus: number }> => {
    const dir = mkdtempSync(join(tmpdir(), 'cloakroom-cluster-'));
    dirs.push(dir);
    // The bus port is chosen too: the default (port + 10000) may be taken, or above 65535.
    const bus = await freePort();
    const server = await startRedisServer({
      dir,
      args: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-port', String(bus), '--cluster-node-timeout', String(opts.nodeTimeoutMs ?? 1000)],
    });
    return { server, bus };
  };
  for (let i = 0; i < count; i++) {
    const { server, bus } = await startNode();
    nodes.push(server);
    busPorts.push(bus);
  }
  for (let i = 0; i < count * perMaster; i++) replicas.push((await startNode()).server);
  const all = [...nodes, ...replicas];
  const admin = all.map((n) => new Redis(n.port, '127.0.0.1', { maxRetriesPerRequest: 1 }));
  try {
    const per = Math.ceil(16384 / count);
    for (const [i, c] of admin.entries()) {
      if (i < count) await c.call('CLUSTER', 'ADDSLOTSRANGE', String(i * per), String(Math.min(16383, (i + 1) * per - 1)));
      if (i > 0) await c.call('CLUSTER', 'MEET', '127.0.0.1', String(nodes[0]?.port), String(busPorts[0]));
    }
    const deadline = Date.now() + 20_000;
    const wait = async (what: string, ok: () => Promise<boolean>): Promise<void> => {
      for (;;) {
        if (await ok()) return;
        if (Date.now() > deadline) throw new Error(`the test cluster: ${what} not within 20 s`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    await wait('every node known', async () => {
      const states = await Promise.all(admin.map(async (c) => String(await c.call('CLUSTER', 'INFO'))));
      return states.every((s) => s.includes(`cluster_known_nodes:${all.length}`));
    });
    const ids = await Promise.all(admin.slice(0, count).map(async (c) => String(await c.call('CLUSTER', 'MYID'))));
    for (let r = 0; r < replicas.length; r++) {
      const c = admin[count + r] as Redis;
      // The replica must have heard of its master through the bus before it can follow it.
      await wait('replica sees its master', async () => String(await c.call('CLUSTER', 'NODES')).includes(ids[r % count] ?? '?'));
      await c.call('CLUSTER', 'REPLICATE', ids[r % count] ?? '');
    }
    await wait('cluster_state:ok and replicas in sync', async () => {
      const states = await Promise.all(admin.map(async (c) => String(await c.call('CLUSTER', 'INFO'))));
      if (!states.every((s) => s.includes('cluster_state:ok'))) return false;
      const links = await Promise.all(admin.slice(count).map(async (c) => String(await c.info('replication'))));
      return links.every((l) => l.includes('master_link_status:up'));
    });
  } finally {
    for (const c of admin) c.disconnect();
  }
  return {
    nodes,
    replicas,
    stop: async () => {
      await Promise.all(all.map((n) => n.stop()));
      for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    },
  };
}
