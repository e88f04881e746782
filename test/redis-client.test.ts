import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Redis } from 'ioredis';
import { startRedisServer, type RedisServer } from '../scripts/redis-server.js';
import type { Socket } from 'node:net';
import { loadConfig } from '../src/config.js';
import { createRedisClient, failFastOptions, reviveWhenEnded, waitForReady } from '../src/store/redis-client.js';

let redis: RedisServer;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  redis = await startRedisServer();
});
afterAll(() => redis.stop());

describe('a connection ioredis gives up on', () => {
  it('is_connected_again_when_redis_is_back_and_left_alone_once_stopped', async () => {
    // retryStrategy null: ioredis ends the connection at the first loss, as its Sentinel race does.
    const client = new Redis(redis.port, '127.0.0.1', { ...failFastOptions, retryStrategy: () => null });
    client.on('error', () => undefined);
    const revival = reviveWhenEnded(client, { delayMs: 50 });
    await waitForReady(client, 2000);
    expect(await client.set('k', 'v')).toBe('OK');

    await redis.stop();
    for (let i = 0; i < 40 && client.status !== 'end'; i++) await sleep(25);
    expect(client.status).toBe('end');
    await expect(client.get('k')).rejects.toThrow();

    await redis.start();
    let answer: string | null = null;
    for (let i = 0; i < 60 && answer === null; i++) {
      answer = await client.set('k', 'again').catch(() => null);
      if (answer === null) await sleep(50);
    }
    expect(answer).toBe('OK');

    // Closed on purpose: stays closed.
    revival.stop();
    client.disconnect();
    await sleep(300);
    expect(client.status).toBe('end');
  });
});

describe('the production connection', () => {
  it('writes_a_command_when_it_is_issued_not_after_the_event_loop_has_taken_in_every_ready_request', async () => {
    // With ioredis auto-pipelining a command waits for a setImmediate, i.e. until Node has parsed
    // every request that is ready: in a burst on a due token that held the refresh claim back
    // 6-15 ms (docs/performance.md). Here the bytes must be on the socket before this returns.
    const client = createRedisClient(
      loadConfig({ UPSTREAM_URL: 'http://127.0.0.1:9', REDIS_URL: `redis://127.0.0.1:${redis.port}`, NODE_ENV: 'test' }),
    );
    if (!client || !(client instanceof Redis)) throw new Error('expected a standalone client');
    client.on('error', () => undefined);
    try {
      await waitForReady(client, 2000);
      const socket = (client as unknown as { stream: Socket }).stream;
      const before = socket.bytesWritten;
      const answer = client.set('written-at-once', 'yes');
      const after = socket.bytesWritten;
      expect(after - before).toBeGreaterThanOrEqual('*3\r\n$3\r\nset\r\n'.length);
      expect(await answer).toBe('OK');
    } finally {
      client.disconnect();
    }
  });
});
