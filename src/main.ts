import { existsSync } from 'node:fs';
import { createApp } from './app.js';
import { createCloakroomServer } from './http/server.js';
import { ConfigError, loadConfig } from './config.js';
import { createLogger } from './logger.js';
import { Redis } from 'ioredis';
import { createRedisClient, reviveWhenEnded, waitForReady, type RedisClient } from './store/redis-client.js';

/** The only module with side effects: read config, connect Redis, listen, drain on SIGTERM. */
async function main(): Promise<void> {
  // A .env file is a convenience for development, never required.
  if (existsSync('.env') && typeof process.loadEnvFile === 'function') process.loadEnvFile('.env');

  let config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const line of err.problems) process.stderr.write(`config error: ${line}\n`);
      process.exit(1);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);

  if (config.redis.kind === 'memory') {
    logger.warn('NO REDIS CONFIGURED: sessions live in this process only, are lost on restart and are not shared between instances. Development only; set REDIS_URL.');
  }
  if (config.generatedSecrets.length > 0) {
    logger.warn({ variables: config.generatedSecrets }, 'secrets were generated for this run: sessions will not survive a restart. Set them for anything but development.');
  }

  const redis = createRedisClient(config);
  let hasReplicas = config.redis.kind === 'sentinel' || config.redis.kind === 'cluster';
  const revival = redis instanceof Redis ? reviveWhenEnded(redis, { onRevive: () => logger.warn('redis connection had ended; connecting again') }) : null;
  if (redis) {
    redis.on('error', (err: Error) => logger.warn({ err }, 'redis connection error'));
    try {
      await waitForReady(redis, 10_000);
      // Like oauth2-proxy: prove the store works (set, get, delete) before taking traffic.
      const probe = `cr:probe:{${process.pid}}`;
      await redis.set(probe, '1', 'PX', 5000);
      if ((await redis.get(probe)) !== '1') throw new Error('Redis read back a different value');
      await redis.del(probe);
    } catch (err) {
      logger.fatal({ err }, 'Redis is not usable; refusing to start');
      process.exit(1);
    }
    if (config.redis.kind === 'url') hasReplicas = await countReplicas(redis).then((n) => n > 0, () => false);
  }

  const cloakroom = createApp({ config, logger, redis, hasReplicas: () => hasReplicas });
  const server = createCloakroomServer(cloakroom.handler, cloakroom.websockets.handleUpgrade);
  server.listen(config.port, config.host, () => {
    const addr = server.address();
    logger.info({ port: typeof addr === 'object' && addr ? addr.port : config.port, mode: config.authMode }, 'cloakroom listening');
  });

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down: readiness is 503, finishing in-flight requests');
    cloakroom.beginShutdown();
    // Upgraded sockets keep server.close() waiting: they are told 1001 (going away) first.
    void cloakroom.websockets.closeAll(1001);
    server.close();
    server.closeIdleConnections();
    const force = setTimeout(() => {
      logger.warn('shutdown timeout reached: closing remaining connections');
      server.closeAllConnections();
    }, config.shutdownTimeoutMs);
    force.unref();
    server.once('close', () => {
      void (async () => {
        clearTimeout(force);
        await cloakroom.close();
        revival?.stop();
        if (redis) await redis.quit().catch(() => redis.disconnect());
        logger.info('stopped');
        logger.flush();
        process.exit(0);
      })();
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

async function countReplicas(redis: RedisClient): Promise<number> {
  const info = String(await redis.info('replication'));
  return Number(/connected_slaves:(\d+)/.exec(info)?.[1] ?? 0);
}

main().catch((err: unknown) => {
  process.stderr.write(`cloakroom failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
