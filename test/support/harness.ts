import { expect } from '@jest/globals';
import type { Server } from 'node:http';
import { createCloakroomServer } from '../../src/http/server.js';
import type { AddressInfo, Socket } from 'node:net';
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import request from 'supertest';
import { createApp, type Cloakroom } from '../../src/app.js';
import { loadConfig, type Config } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { createRedisClient, reviveWhenEnded, waitForReady, type RedisClient } from '../../src/store/redis-client.js';
import { startFakeUpstream, type FakeUpstream, type FakeUpstreamOptions } from '../../scripts/fake-upstream/index.js';
import { startRedisServer, type RedisServer } from '../../scripts/redis-server.js';

export const TEST_SESSION_SECRET = 'test-session-secret-0123456789-abcdefghij';
export const TEST_TOKEN_KEY = Buffer.alloc(32, 7).toString('base64');
export const DEMO = { email: 'demo@example.com', password: 'demo-password' } as const;

export interface Instance {
  readonly url: string;
  readonly config: Readonly<Config>;
  readonly cloakroom: Cloakroom;
  readonly redisClient: RedisClient | null;
  readonly server: Server;
  close(): Promise<void>;
}

export interface Harness {
  readonly redis: RedisServer;
  readonly upstream: FakeUpstream;
  /** Every log line every instance wrote. */
  readonly logs: string[];
  /** A direct Redis connection for assertions. */
  readonly inspect: Redis;
  /** `configure` may change the parsed config (values the variables refuse, e.g. a 2 s idle timeout). */
  start(env?: Record<string, string>, configure?: (config: Config) => Config): Promise<Instance>;
  /** A supertest agent signed in as `who` (cookie kept by the agent). */
  signIn(instance: Instance, who?: { email: string; password: string }): Promise<ReturnType<typeof request.agent>>;
  /** Every token string found where it must not be: browser bytes, logs, Redis values. */
  findLeaks(): Promise<string[]>;
  /** Text the contract lets reach the browser (oidc mode's `logoutUrl`, with its id_token_hint). */
  allowInBrowser(text: string): void;
  close(): Promise<void>;
}

export async function startHarness(opts: { upstream?: FakeUpstreamOptions; persistRedis?: boolean } = {}): Promise<Harness> {
  const redis = await startRedisServer({ persist: opts.persistRedis ?? false });
  const upstream = await startFakeUpstream(opts.upstream ?? {});
  const inspect = new Redis(redis.port, '127.0.0.1', { lazyConnect: false, maxRetriesPerRequest: 1 });
  inspect.on('error', () => undefined);
  const logs: string[] = [];
  const browserBytes: Buffer[] = [];
  // Location headers of signed links are the two places a token may legitimately appear.
  const allowedLocations: string[] = [];
  const instances: Instance[] = [];

  const start = async (env: Record<string, string> = {}, configure?: (config: Config) => Config): Promise<Instance> => {
    const loaded = loadConfig({
      NODE_ENV: 'test',
      UPSTREAM_URL: upstream.url,
      REDIS_URL: `redis://127.0.0.1:${redis.port}`,
      SESSION_SECRET: TEST_SESSION_SECRET,
      TOKEN_ENCRYPTION_KEY: TEST_TOKEN_KEY,
      LOG_LEVEL: 'info',
      UPSTREAM_TIMEOUT: '2',
      ...env,
    });
    const config = configure ? Object.freeze(configure({ ...loaded })) : loaded;
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(line);
        cb();
      },
    });
    const logger = createLogger(config.logLevel, sink);
    const redisClient = createRedisClient(config);
    // As src/main.ts does: a connection ioredis gave up on is connected again.
    const revival = redisClient instanceof Redis ? reviveWhenEnded(redisClient, { onRevive: () => logger.warn('redis connection had ended; connecting again') }) : null;
    if (redisClient) {
      redisClient.on('error', () => undefined);
      await waitForReady(redisClient, 5000);
    }
    // As src/main.ts decides it for Sentinel and Cluster (a REDIS_URL primary is asked at start there).
    const replicated = config.redis.kind === 'sentinel' || config.redis.kind === 'cluster';
    const cloakroom = createApp({ config, logger, redis: redisClient, hasReplicas: () => replicated });
    const server = createCloakroomServer((req, res) => {
      if (req.url?.startsWith('/links/')) {
        const writeHead = res.writeHead.bind(res);
        res.writeHead = ((...args: Parameters<typeof res.writeHead>) => {
          const loc = res.getHeader('location');
          if (typeof loc === 'string') allowedLocations.push(loc);
          return writeHead(...args);
        }) as typeof res.writeHead;
      }
      cloakroom.handler(req, res);
    }, cloakroom.websockets.handleUpgrade);
    const sockets = new Set<Socket>();
    server.on('connection', (sock: Socket) => {
      sockets.add(sock);
      sock.once('close', () => sockets.delete(sock));
      const write = sock.write.bind(sock) as (...a: unknown[]) => boolean;
      sock.write = ((chunk: unknown, ...rest: unknown[]) => {
        if (typeof chunk === 'string') browserBytes.push(Buffer.from(chunk));
        else if (chunk instanceof Uint8Array) browserBytes.push(Buffer.from(chunk));
        return write(chunk, ...rest);
      }) as typeof sock.write;
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const instance: Instance = {
      url: `http://127.0.0.1:${port}`,
      config,
      cloakroom,
      redisClient,
      server,
      close: async () => {
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          for (const s of sockets) s.destroy();
        });
        await cloakroom.close();
        revival?.stop();
        redisClient?.disconnect();
      },
    };
    instances.push(instance);
    return instance;
  };

  const signIn = async (instance: Instance, who: { email: string; password: string } = DEMO) => {
    const agent = request.agent(instance.url);
    const res = await agent.post('/auth/login').set('X-CSRF', '1').send({ email: who.email, password: who.password });
    if (res.status !== 200) throw new Error(`sign-in failed: ${res.status} ${JSON.stringify(res.body)}`);
    return agent;
  };

  const findLeaks = async (): Promise<string[]> => {
    const tokens = upstream.issuedTokens().filter((t) => t.length >= 16);
    const found: string[] = [];
    let browser = Buffer.concat(browserBytes).toString('latin1');
    for (const loc of allowedLocations) browser = browser.split(loc).join('<allowed-location>');
    const logText = logs.join('\n');
    const redisValues: string[] = [];
    if (inspect.status === 'ready') {
      for (const key of await inspect.keys('*')) {
        const type = await inspect.type(key);
        if (type === 'string') redisValues.push(`${key}=${(await inspect.get(key)) ?? ''}`);
        else if (type === 'hash') redisValues.push(`${key}=${JSON.stringify(await inspect.hgetall(key))}`);
        else redisValues.push(key);
      }
    }
    const redisText = redisValues.join('\n');
    for (const token of tokens) {
      const encoded = encodeURIComponent(token);
      if (browser.includes(token) || browser.includes(encoded)) found.push(`browser response carries ${token.slice(0, 8)}...`);
      if (logText.includes(token)) found.push(`log carries ${token.slice(0, 8)}...`);
      if (redisText.includes(token)) found.push(`redis carries ${token.slice(0, 8)}...`);
    }
    return found;
  };

  return {
    redis,
    upstream,
    logs,
    inspect,
    start,
    signIn,
    findLeaks,
    allowInBrowser: (text) => {
      allowedLocations.push(text);
    },
    close: async () => {
      for (const i of instances) await i.close();
      inspect.disconnect();
      await upstream.close();
      await redis.stop();
    },
  };
}

/**
 * The end of every suite that starts the app: stop everything, then fail the suite if any
 * token reached a browser, a log line or Redis in clear text during it.
 */
export async function closeExpectingNoLeaks(h: Harness): Promise<void> {
  const leaks = await h.findLeaks();
  await h.close();
  expect(leaks).toEqual([]);
}
