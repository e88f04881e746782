import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Redis } from 'ioredis';
import { startRedisServer, type RedisServer } from '../scripts/redis-server.js';
import { failFastOptions, reviveWhenEnded, waitForReady } from '../src/store/redis-client.js';

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
