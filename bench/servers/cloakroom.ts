/**
 * cloakroom as production runs it (src/main.ts without signals and the .env file):
 * loadConfig, one ioredis client, createApp, a plain node:http server on its handler.
 * The parent passes the environment as JSON in BENCH_CLOAKROOM_ENV.
 */
import { createServer } from 'node:http';
import { createApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { startTracing } from '../../src/tracing.js';
import { Redis } from 'ioredis';
import { createRedisClient, failFastOptions, reviveWhenEnded, waitForReady } from '../../src/store/redis-client.js';
import { runChild } from './child.js';

const env = JSON.parse(process.env['BENCH_CLOAKROOM_ENV'] ?? '{}') as Record<string, string>;
const config = loadConfig(env);
const logger = createLogger(config.logLevel);
// BENCH_AUTOPIPELINE=1 (experiment only): ioredis coalesces the commands of one event-loop
// tick into one socket write, which src/store/redis-client.ts does not enable.
const redis =
  process.env['BENCH_AUTOPIPELINE'] === '1' && config.redis.kind === 'url'
    ? new Redis(config.redis.url, { ...failFastOptions, enableAutoPipelining: true })
    : createRedisClient(config);
// No REDIS_URL (the `cloakroom-memory` experiment only): the in-process store, i.e. cloakroom
// without its one Redis round trip per request.
if (redis instanceof Redis) reviveWhenEnded(redis);
if (redis) {
  redis.on('error', (err: Error) => logger.warn({ err }, 'redis connection error'));
  await waitForReady(redis, 10_000);
}

// As src/main.ts decides it: Sentinel and Cluster have replicas to acknowledge rotated tokens.
const replicated = config.redis.kind === 'sentinel' || config.redis.kind === 'cluster';

// As src/main.ts: the SDK is imported only with an endpoint (the `cloakroom-traced` target). The
// exporter reads the endpoint from the process environment, as it does in production.
if (config.otlpEndpoint) process.env['OTEL_EXPORTER_OTLP_ENDPOINT'] = config.otlpEndpoint;
const tracing = config.otlpEndpoint ? await startTracing() : undefined;
const cloakroom = createApp({ config, logger, redis, hasReplicas: () => replicated, ...(tracing ? { tracing } : {}) });
const server = createServer({ requestTimeout: 5 * 60_000, headersTimeout: 30_000, maxHeaderSize: 16 * 1024 }, cloakroom.handler);

await runChild(server, {
  control: async (op) => {
    if (op === 'refreshes') {
      const metric = await cloakroom.metrics.refreshes.get();
      return Object.fromEntries(metric.values.map((v) => [String(v.labels['outcome']), v.value]));
    }
    if (op === 'cache') {
      // The tracked token cache: on at all, and per tracked server (the failover phase).
      const store = cloakroom.store as { cacheEnabled?: boolean; trackingState?: () => Record<string, boolean> };
      return { enabled: store.cacheEnabled ?? false, servers: store.trackingState?.() ?? {} };
    }
    throw new Error(`unknown op ${op}`);
  },
  onShutdown: async () => {
    await cloakroom.close();
    redis?.disconnect();
  },
});
