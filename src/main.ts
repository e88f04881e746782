import { existsSync } from 'node:fs';
import { createServer, type RequestListener, type Server } from 'node:http';
import type { Registry } from 'prom-client';
import { pathOf, sendJson } from './http/respond.js';
import { createApp } from './app.js';
import { createCloakroomServer } from './http/server.js';
import { ConfigError, loadConfig } from './config.js';
import { createLogger } from './logger.js';
import { createMetrics } from './metrics.js';
import { probeKey } from './store/keys.js';
import { requestIdOf } from './http/observe.js';
import { startTracing } from './tracing.js';
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
      const probe = probeKey(process.pid);
      await redis.set(probe, '1', 'PX', 5000);
      if ((await redis.get(probe)) !== '1') throw new Error('Redis read back a different value');
      await redis.del(probe);
    } catch (err) {
      logger.fatal({ err }, 'Redis is not usable; refusing to start');
      process.exit(1);
    }
    if (config.redis.kind === 'url') hasReplicas = await countReplicas(redis).then((n) => n > 0, () => false);
  }

  // Only with an endpoint is the OpenTelemetry SDK even imported (src/tracing.ts).
  const tracing = config.otlpEndpoint ? await startTracing() : undefined;
  if (tracing) logger.info({ endpoint: config.otlpEndpoint }, 'tracing: spans are exported over OTLP/HTTP');
  const cloakroom = createApp({ config, logger, redis, metrics: createMetrics({ defaultMetrics: true }), hasReplicas: () => hasReplicas, ...(tracing ? { tracing } : {}) });
  const metricsServer = config.metricsPort !== undefined ? createMetricsServer(cloakroom.metrics.registry) : null;
  // With METRICS_PORT the public port must not show the metrics: answer it like any unknown path.
  const server = createCloakroomServer(metricsServer ? withoutMetricsRoute(cloakroom.handler) : cloakroom.handler, cloakroom.websockets.handleUpgrade);
  await listenOrExit(server, 'PORT', config.port, config.host);
  if (metricsServer && config.metricsPort !== undefined) await listenOrExit(metricsServer, 'METRICS_PORT', config.metricsPort, config.host);
  const addr = server.address();
  logger.info({ port: typeof addr === 'object' && addr ? addr.port : config.port, metricsPort: config.metricsPort, mode: config.authMode }, 'cloakroom listening');

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    const started = Date.now();
    // SIGINT is a person at a terminal: no load balancer to wait for.
    const delayMs = signal === 'SIGTERM' ? config.shutdownDelayMs : 0;
    logger.info({ signal, delayMs }, 'shutting down: readiness is 503, finishing in-flight requests');
    cloakroom.beginShutdown();
    // Upgraded sockets keep server.close() waiting: they are told 1001 (going away) first.
    void cloakroom.websockets.closeAll(1001);
    // The whole shutdown ends within SHUTDOWN_TIMEOUT, a second before it, so that a container
    // runtime's kill (its grace usually equals our default of 10 s) lands after the exit, not on the drain.
    const force = setTimeout(() => {
      logger.warn('shutdown timeout reached: closing remaining connections');
      server.closeAllConnections();
    }, Math.max(0, config.shutdownTimeoutMs - 1000 - delayMs) + delayMs);
    force.unref();
    server.once('close', () => {
      void (async () => {
        clearTimeout(force);
        await cloakroom.close();
        metricsServer?.close();
        revival?.stop();
        if (redis) await redis.quit().catch(() => redis.disconnect());
        // The last spans are sent before the exit; an unreachable collector does not hold it up.
        await tracing?.shutdown().catch(() => undefined);
        logger.info({ ms: Date.now() - started }, 'stopped');
        logger.flush();
        process.exit(0);
      })();
    });
    // Readiness is already 503; the listener stays open for the delay so the load balancer can see it.
    const closeListener = () => {
      server.close();
      server.closeIdleConnections();
    };
    if (delayMs > 0) setTimeout(closeListener, delayMs).unref();
    else closeListener();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

/** A busy or forbidden port is an operator's mistake: one line naming the variable, exit 1, no stack. */
function listenOrExit(server: Server, variable: string, port: number, host: string): Promise<void> {
  return new Promise((resolve) => {
    const onError = (err: NodeJS.ErrnoException) => {
      const why =
        err.code === 'EADDRINUSE' ? 'is already in use' : err.code === 'EACCES' ? 'may not be used by this user' : err.code === 'EADDRNOTAVAIL' ? 'is not on an address of this machine (HOST)' : `cannot be listened on (${err.code ?? err.message})`;
      process.stderr.write(`config error: ${variable}: ${host}:${port} ${why}\n`);
      process.exit(1);
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

function withoutMetricsRoute(handler: RequestListener): RequestListener {
  return (req, res) => {
    if (pathOf(req.url) === '/metrics') return sendJson(res, 404, { error: 'not_found', message: 'No such route.' }, { 'x-request-id': requestIdOf(req) });
    handler(req, res);
  };
}

/** `/metrics` alone, on its own port (METRICS_PORT), for a scraper on a private network. */
function createMetricsServer(registry: Registry): Server {
  return createServer((req, res) => {
    res.setHeader('x-request-id', requestIdOf(req));
    if (pathOf(req.url) !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      sendJson(res, 404, { error: 'not_found', message: 'No such route.' });
      return;
    }
    registry.metrics().then(
      (text) => {
        res.writeHead(200, { 'content-type': registry.contentType, 'cache-control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      () => sendJson(res, 500, { error: 'server_error', message: 'An internal error occurred.' }),
    );
  });
}

async function countReplicas(redis: RedisClient): Promise<number> {
  const info = String(await redis.info('replication'));
  return Number(/connected_slaves:(\d+)/.exec(info)?.[1] ?? 0);
}

main().catch((err: unknown) => {
  process.stderr.write(`cloakroom failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
