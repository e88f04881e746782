/**
 * The bench's cloakroom processes run with NODE_ENV=production, so they must pass production's
 * configuration checks; when they stopped passing (a key of one repeated byte), the WebSocket
 * bench exited at start-up and nothing in the suite noticed.
 */
import { describe, expect, it } from '@jest/globals';
import { loadConfig } from '../src/config.js';
import { cloakroomEnv, SESSION_SECRET, TOKEN_KEY } from '../bench/lib/bed.js';

const upstream = { url: 'http://127.0.0.1:9' };

describe('the bench configuration', () => {
  it.each([
    ['one Redis', { REDIS_URL: 'redis://127.0.0.1:6390' }, 'url'],
    ['a Cluster', { REDIS_CLUSTER_NODES: '127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003' }, 'cluster'],
    ['Sentinel', { REDIS_SENTINELS: '127.0.0.1:26390', REDIS_SENTINEL_NAME: 'cloakroom' }, 'sentinel'],
  ])('the cloakroom child on %s passes production checks', (_name, topologyEnv, kind) => {
    const env = JSON.parse(cloakroomEnv({ topology: { env: topologyEnv }, upstream }).BENCH_CLOAKROOM_ENV ?? '{}') as Record<string, string>;
    expect(env['NODE_ENV']).toBe('production');
    const config = loadConfig(env);
    expect(config.redis.kind).toBe(kind);
  });

  it('the WebSocket bench uses the same secret and key (production accepts them)', () => {
    expect(() => loadConfig({ NODE_ENV: 'production', UPSTREAM_URL: 'http://127.0.0.1:9', REDIS_URL: 'redis://127.0.0.1:6390', SESSION_SECRET, TOKEN_ENCRYPTION_KEY: TOKEN_KEY, COOKIE_SECURE: 'false' })).not.toThrow();
  });
});
