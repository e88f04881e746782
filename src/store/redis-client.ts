import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { Config } from '../config.js';

export type RedisClient = Redis | Cluster;

/**
 * A dead store must answer fast (503), not queue commands for minutes: no offline queue,
 * one retry, a command timeout, and reconnect attempts at most a second apart so service
 * resumes within seconds of Redis coming back.
 */
export const failFastOptions: RedisOptions = {
  enableOfflineQueue: false,
  maxRetriesPerRequest: 1,
  commandTimeout: 1000,
  connectTimeout: 2000,
  retryStrategy: (times: number) => Math.min(50 * times, 1000),
  // No auto-pipelining: ioredis would hold every command back to a setImmediate, which runs
  // only after the event loop has taken in every request that is ready. In a burst of requests
  // on a due token that put the refresh claim, and so the refresh, 6-15 ms late; and with the
  // tracked cache the steady state sends almost no commands to coalesce (docs/performance.md).
  enableAutoPipelining: false,
};

/** The command line builds its client from the same settings (config.ts loadOperatorConfig). */
export function createRedisClient(config: Pick<Config, 'redis' | 'redisUsername' | 'redisPassword' | 'redisTls'>): RedisClient | null {
  const auth: RedisOptions = {
    ...(config.redisUsername ? { username: config.redisUsername } : {}),
    ...(config.redisPassword ? { password: config.redisPassword } : {}),
    ...(config.redisTls ? { tls: {} } : {}),
  };
  const target = config.redis;
  switch (target.kind) {
    case 'memory':
      return null;
    case 'url':
      // URL credentials and rediss:// are honoured by ioredis itself.
      return new Redis(target.url, { ...failFastOptions, ...auth });
    case 'sentinel':
      return new Redis({
        ...failFastOptions,
        ...auth,
        sentinels: target.sentinels,
        name: target.name,
        ...(target.sentinelPassword ? { sentinelPassword: target.sentinelPassword } : {}),
        // A promoted replica must be found again quickly (contract: within 15 s).
        sentinelRetryStrategy: (times: number) => Math.min(100 * times, 1000),
        failoverDetector: true,
      });
    case 'cluster':
      return new Cluster(target.nodes, {
        enableOfflineQueue: false,
        enableAutoPipelining: false,
        clusterRetryStrategy: (times: number) => Math.min(100 * times, 1000),
        // A cluster that says CLUSTERDOWN is an outage: answer the fast 503 now, as a stopped
        // standalone Redis does, rather than retry until the command timeout (1 s).
        retryDelayOnClusterDown: 0,
        redisOptions: { ...failFastOptions, ...auth },
        ...(config.redisTls ? { dnsLookup: (address, callback) => callback(null, address) } : {}),
      });
  }
}

/** Resolves when the client is ready, rejects after timeoutMs. */
export function waitForReady(client: RedisClient, timeoutMs: number): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`Redis not ready after ${timeoutMs} ms`));
    }, timeoutMs);
    const onReady = (): void => {
      cleanup();
      resolve();
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      client.off('ready', onReady);
    };
    client.on('ready', onReady);
  });
}

/**
 * ioredis gives a connection up for good (status `end`, every command "Connection is closed.")
 * when its Sentinel failover detector closes it while a reconnect is still resolving the
 * master (redis/ioredis#1683; in test/sentinel.test.ts, in more than half of the failovers).
 * The contract says service resumes by itself, so an ended connection that we did not close
 * is connected again. Call stop() before closing the client on purpose.
 */
export function reviveWhenEnded(client: Redis, opts: { delayMs?: number; onRevive?: () => void } = {}): { stop(): void } {
  let stopped = false;
  const onEnd = (): void => {
    if (stopped) return;
    const timer = setTimeout(() => {
      if (stopped || client.status !== 'end') return;
      opts.onRevive?.();
      client.connect().catch(() => undefined); // failures go through ioredis's own retries again
    }, opts.delayMs ?? 100);
    timer.unref();
  };
  client.on('end', onEnd);
  return {
    stop() {
      stopped = true;
      client.off('end', onEnd);
    },
  };
}
