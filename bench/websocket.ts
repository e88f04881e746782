/**
 * WebSocket spike: echo messages per second through cloakroom against a bare ws
 * pass-through (no checks, no session), and RSS per idle connection for 1,000 sockets.
 * Not a test; `npm run build && node dist/bench/websocket.js [seconds] [clients]`.
 *
 * The parent runs redis-server, the fake upstream with its WebSocket echo front and the
 * clients; each proxy runs in its own child process, so its RSS is its own.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { WebSocket, WebSocketServer } from 'ws';
import { createApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { createCloakroomServer } from '../src/http/server.js';
import { createLogger } from '../src/logger.js';
import { createRedisClient, waitForReady } from '../src/store/redis-client.js';
import { startFakeUpstream } from '../scripts/fake-upstream/index.js';
import { startRedisServer } from '../scripts/redis-server.js';
import { startWsUpstream } from '../test/support/ws-upstream.js';
import { DEMO_USERS } from '../scripts/fake-upstream/index.js';
import { SESSION_SECRET, TOKEN_KEY } from './lib/bed.js';


type Msg = { type: 'ready'; port: number } | { type: 'rss'; rss: number; open: number };

// ---- children -------------------------------------------------------------

async function runCloakroomChild(): Promise<void> {
  const env = JSON.parse(process.env['BENCH_ENV'] ?? '{}') as Record<string, string>;
  const config = loadConfig(env);
  const logger = createLogger('warn');
  const redis = createRedisClient(config);
  if (redis) await waitForReady(redis, 10_000);
  const cloakroom = createApp({ config, logger, redis, hasReplicas: () => false });
  const server = createCloakroomServer(cloakroom.handler, cloakroom.websockets.handleUpgrade);
  serveChild(server, () => cloakroom.websockets.openCount());
}

/** The floor: frames relayed by the same ws library, nothing checked, nothing watched. */
function runBareChild(): void {
  const target = (process.env['BENCH_UPSTREAM'] ?? '').replace(/^http/, 'ws');
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, autoPong: false, maxPayload: 16 << 20 });
  let open = 0;
  const server = createServer((_req, res) => res.writeHead(404).end());
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const up = new WebSocket(`${target}${req.url ?? '/'}`, { perMessageDeflate: false, autoPong: false });
    up.once('error', () => socket.destroy());
    up.once('open', () => {
      wss.handleUpgrade(req, socket, head, (ws) => {
        open++;
        ws.on('message', (d, b) => up.send(d, { binary: b }));
        up.on('message', (d, b) => ws.send(d, { binary: b }));
        ws.on('close', () => {
          open--;
          up.close();
        });
        up.on('close', () => ws.close());
      });
    });
  });
  serveChild(server, () => open);
}

function serveChild(server: ReturnType<typeof createServer>, openCount: () => number): void {
  server.listen(0, '127.0.0.1', () => {
    process.send?.({ type: 'ready', port: (server.address() as AddressInfo).port } satisfies Msg);
  });
  process.on('message', (m: unknown) => {
    if (m === 'rss') {
      (globalThis as { gc?: () => void }).gc?.();
      setTimeout(() => process.send?.({ type: 'rss', rss: process.memoryUsage().rss, open: openCount() } satisfies Msg), 200);
    }
  });
  process.on('disconnect', () => process.exit(0));
}

// ---- parent ---------------------------------------------------------------

interface Child {
  port: number;
  proc: ChildProcess;
  rss(): Promise<{ rss: number; open: number }>;
}

async function startChild(role: 'cloakroom' | 'bare', env: Record<string, string>): Promise<Child> {
  const proc = fork(fileURLToPath(import.meta.url), [role], { env: { PATH: process.env['PATH'] ?? '', ...env }, execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const port = await new Promise<number>((resolve, reject) => {
    proc.once('exit', (c) => reject(new Error(`${role} exited ${c}`)));
    proc.on('message', (m: unknown) => {
      if ((m as Msg).type === 'ready') resolve((m as { port: number }).port);
    });
  });
  return {
    port,
    proc,
    rss: () =>
      new Promise((resolve) => {
        const on = (m: unknown) => {
          if ((m as Msg).type !== 'rss') return;
          proc.off('message', on);
          resolve(m as { rss: number; open: number });
        };
        proc.on('message', on);
        proc.send('rss');
      }),
  };
}

function openSocket(url: string, headers: Record<string, string>): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers, perMessageDeflate: false });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (_q, res) => reject(new Error(`handshake refused: ${res.statusCode}`)));
  });
}

/** `clients` sockets, each sending one message and waiting for its echo, for `seconds`. */
async function echoRun(url: string, headers: Record<string, string>, clients: number, seconds: number) {
  const sockets = await Promise.all(Array.from({ length: clients }, () => openSocket(url, headers)));
  const payload = Buffer.alloc(128, 'x').toString();
  const latencies: number[] = [];
  const end = performance.now() + seconds * 1000;
  await Promise.all(
    sockets.map(
      (ws) =>
        new Promise<void>((resolve) => {
          let sent = 0;
          const next = () => {
            if (performance.now() >= end) return resolve();
            sent = performance.now();
            ws.send(payload);
          };
          ws.on('message', () => {
            latencies.push(performance.now() - sent);
            next();
          });
          next();
        }),
    ),
  );
  for (const ws of sockets) ws.close();
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
  return { perSecond: latencies.length / seconds, p50: at(0.5), p99: at(0.99) };
}

async function idleRss(child: Child, url: string, headers: Record<string, string>, count: number): Promise<number> {
  const before = await child.rss();
  const sockets: WebSocket[] = [];
  for (let i = 0; i < count; i += 50) sockets.push(...(await Promise.all(Array.from({ length: Math.min(50, count - i) }, () => openSocket(url, headers)))));
  await new Promise((r) => setTimeout(r, 1000));
  const after = await child.rss();
  if (after.open < count) throw new Error(`only ${after.open} of ${count} sockets open`);
  for (const ws of sockets) ws.close();
  return (after.rss - before.rss) / count;
}

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 5);
  const clients = Number(process.argv[3] ?? 50);
  const redis = await startRedisServer();
  const fake = await startFakeUpstream();
  const front = await startWsUpstream(fake.port, { checkBearer: false, keepSockets: false });
  const env = {
    NODE_ENV: 'production',
    UPSTREAM_URL: front.url,
    REDIS_URL: `redis://127.0.0.1:${redis.port}`,
    // The bench bed's: a secret and a key that production accepts (test/bench-config.test.ts).
    SESSION_SECRET,
    TOKEN_ENCRYPTION_KEY: TOKEN_KEY,
    COOKIE_SECURE: 'false',
    LOG_LEVEL: 'warn',
    WEBSOCKET_MAX_PER_SESSION: '5000',
  };
  const cloakroom = await startChild('cloakroom', { BENCH_ENV: JSON.stringify(env) });
  const bare = await startChild('bare', { BENCH_UPSTREAM: front.url });
  try {
    const user = DEMO_USERS[0];
    if (!user) throw new Error('no demo user');
    const login = await fetch(`http://127.0.0.1:${cloakroom.port}/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-csrf': '1' },
      body: JSON.stringify({ email: user.email, password: user.password }),
    });
    const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
    if (login.status !== 200 || !cookie) throw new Error(`sign-in failed: ${login.status}`);
    const crHeaders = { cookie, origin: `http://127.0.0.1:${cloakroom.port}` };
    const crUrl = `ws://127.0.0.1:${cloakroom.port}/api/ws/echo`;
    const bareUrl = `ws://127.0.0.1:${bare.port}/api/ws/echo`;

    // Warm both paths first.
    await echoRun(bareUrl, {}, clients, 1);
    await echoRun(crUrl, crHeaders, clients, 1);
    // Two rounds each, alternating, so neither arm always runs on the quieter machine; best round counts.
    const best = (x: Awaited<ReturnType<typeof echoRun>>, y: Awaited<ReturnType<typeof echoRun>>) => (x.perSecond >= y.perSecond ? x : y);
    const b1 = await echoRun(bareUrl, {}, clients, seconds);
    const c1 = await echoRun(crUrl, crHeaders, clients, seconds);
    const c2 = await echoRun(crUrl, crHeaders, clients, seconds);
    const b2 = await echoRun(bareUrl, {}, clients, seconds);
    const b = best(b1, b2);
    const c = best(c1, c2);
    const fmt = (r: { perSecond: number; p50: number; p99: number }) => `${Math.round(r.perSecond)} msg/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms`;
    process.stdout.write(`echo, ${clients} clients, 128-byte text, best of two ${seconds} s rounds each (alternating)\n`);
    process.stdout.write(`  bare pass-through: ${fmt(b)}\n  cloakroom:         ${fmt(c)}\n`);
    process.stdout.write(`  cloakroom/bare: ${(c.perSecond / b.perSecond).toFixed(2)}x msg/s, ${(c.p99 / b.p99).toFixed(2)}x p99\n`);

    const count = 1000;
    const crRss = await idleRss(cloakroom, crUrl, crHeaders, count);
    const bareRss = await idleRss(bare, bareUrl, {}, count);
    process.stdout.write(`idle RSS per connection (${count} sockets, after gc): cloakroom ${(crRss / 1024).toFixed(1)} KB, bare ${(bareRss / 1024).toFixed(1)} KB\n`);
  } finally {
    cloakroom.proc.kill();
    bare.proc.kill();
    await front.close();
    await fake.close();
    await redis.stop();
  }
}

const role = process.argv[2];
if (role === 'cloakroom') await runCloakroomChild();
else if (role === 'bare') runBareChild();
else await main().then(() => process.exit(0), (err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
