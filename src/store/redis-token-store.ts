import { allSessionKeys, sessionKeys } from './keys.js';
import type { RedisClient } from './redis-client.js';
import { createRedisGuard, type RedisGuard } from './redis-guard.js';
import { decodeRecord, encodeRecord, type ReplaceOutcome, type TokenStore } from './token-store.js';

// Compare-and-set on the record's version: a refresh never overwrites newer tokens.
const REPLACE_LUA = `
local cur = redis.call('GET', KEYS[1])
if not cur then return -1 end
local ok, rec = pcall(cjson.decode, cur)
if not ok or tostring(rec['v']) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return 1`;

// The refresh lock is taken only while the record is still the version the caller saw, and
// the record comes back either way: lock attempt and fresh read in one round trip. KEYS share
// the session's hash tag (store/keys.ts), so this runs on a Cluster too.
const CLAIM_LUA = `
local cur = redis.call('GET', KEYS[2])
if not cur then return {0, false} end
local ok, rec = pcall(cjson.decode, cur)
if ok and tostring(rec['v']) == ARGV[3] and redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX') then return {1, cur} end
return {0, cur}`;

// Release only a lock we still own (its lease may have passed to another instance).
const RELEASE_LUA = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

export interface RedisTokenStoreOptions {
  /** Ask one replica to acknowledge rotated tokens (WAIT 1 ms) when replicas exist. */
  hasReplicas?: () => boolean;
  replicaAckTimeoutMs?: number;
  /** The app's one guard (counts failures); a bare one by default (tests). */
  guard?: RedisGuard;
}

export function createRedisTokenStore(client: RedisClient, opts: RedisTokenStoreOptions = {}): TokenStore {
  const ackTimeout = opts.replicaAckTimeoutMs ?? 100;
  const guard = opts.guard ?? createRedisGuard();

  return {
    readTokens: (sid) =>
      guard(async () => {
        const raw = await client.get(sessionKeys(sid).tokens);
        return raw === null ? null : decodeRecord(raw);
      }),

    createTokens: (sid, record, ttlMs) =>
      guard(async () => {
        await client.set(sessionKeys(sid).tokens, encodeRecord(record), 'PX', Math.max(1, Math.ceil(ttlMs)));
      }),

    replaceTokens: (sid, expectedVersion, record) =>
      guard(async () => {
        const pipeline = client.pipeline().eval(REPLACE_LUA, 1, sessionKeys(sid).tokens, String(expectedVersion), encodeRecord(record));
        if (opts.hasReplicas?.()) pipeline.call('WAIT', '1', String(ackTimeout));
        const results = (await pipeline.exec()) ?? [];
        const [err, value] = results[0] ?? [new Error('empty pipeline reply'), null];
        if (err) throw err;
        const outcome: ReplaceOutcome = value === 1 ? 'ok' : value === 0 ? 'conflict' : 'gone';
        return outcome;
      }),

    touch: (sid, ttlMs) =>
      guard(async () => {
        const ms = String(Math.max(1, Math.ceil(ttlMs)));
        const k = sessionKeys(sid);
        await client.pipeline().pexpire(k.record, ms).pexpire(k.tokens, ms).pexpire(k.media, ms).exec();
      }),

    destroy: (sid) =>
      guard(async () => {
        await client.del(...allSessionKeys(sid));
      }),

    claimRefresh: (sid, owner, leaseMs, seenVersion) =>
      guard(async () => {
        const k = sessionKeys(sid);
        const [locked, raw] = (await client.eval(CLAIM_LUA, 2, k.lock, k.tokens, owner, String(Math.max(1, Math.ceil(leaseMs))), String(seenVersion))) as [number, string | null];
        return { locked: locked === 1, record: raw === null || raw === undefined ? null : decodeRecord(raw) };
      }),

    releaseLock: (sid, owner) =>
      guard(async () => {
        await client.eval(RELEASE_LUA, 1, sessionKeys(sid).lock, owner);
      }),

    readMedia: (sid) => guard(() => client.get(sessionKeys(sid).media)),

    writeMedia: (sid, sealed, ttlMs) =>
      guard(async () => {
        await client.set(sessionKeys(sid).media, sealed, 'PX', Math.max(1, Math.ceil(ttlMs)));
      }),

    ping: () =>
      guard(async () => {
        if ('nodes' in client && typeof client.nodes === 'function') {
          // On a Cluster, ready means the cluster says so, not that one node answers.
          const info = String(await client.cluster('INFO'));
          if (!/cluster_state:ok/.test(info)) throw new Error('cluster state is not ok');
          return;
        }
        await client.ping();
      }),
  };
}
