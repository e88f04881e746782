import { Cluster, type Redis } from 'ioredis';
import type { TokenSealer } from '../core/token-crypto.js';
import { TOKENS_PREFIX } from './keys.js';
import type { RedisClient } from './redis-client.js';
import { decodeRecord, encodeRecord } from './token-store.js';

export interface ResealCounts {
  /** Token records looked at. */
  scanned: number;
  resealed: number;
  /** Already under the first key, ended meanwhile, or refreshed meanwhile (a refresh seals with the first key). */
  skipped: number;
  /** No configured key opens them (those sessions have ended already: nothing a key change could lose). */
  unreadable: number;
}

// Compare-and-set on the whole record as read (version included): a refresh that wrote in
// between wins, and its rotated refresh token is kept. The version stays, so a refresh that
// read the record before this write still lands its own compare-and-set after it.
const CAS_LUA = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return 1`;

const ATTEMPTS = 3;

/**
 * Seals every token record again with the first key: SCAN on every master (each Cluster shard),
 * then per batch one pipeline of GETs and one of compare-and-sets. Idempotent: records the first
 * key sealed are skipped. Media tokens are a cache (a blob no key opens is fetched again) and
 * are left alone.
 */
export async function resealTokenRecords(
  client: RedisClient,
  sealer: TokenSealer,
  opts: { batch?: number; onProgress?: (counts: Readonly<ResealCounts>) => void } = {},
): Promise<ResealCounts> {
  const counts: ResealCounts = { scanned: 0, resealed: 0, skipped: 0, unreadable: 0 };
  const batch = opts.batch ?? 1000;
  const nodes: Redis[] = client instanceof Cluster ? client.nodes('master') : [client];
  for (const node of nodes) {
    const sha = String(await node.script('LOAD', CAS_LUA));
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', `${TOKENS_PREFIX}*`, 'COUNT', batch);
      cursor = next;
      counts.scanned += keys.length;
      await resealKeys(node, sha, sealer, keys, counts);
      opts.onProgress?.(counts);
    } while (cursor !== '0');
  }
  return counts;
}

async function resealKeys(node: Redis, sha: string, sealer: TokenSealer, keys: string[], counts: ResealCounts): Promise<void> {
  let pending = keys;
  for (let attempt = 1; pending.length > 0; attempt++) {
    const reads = (await node.pipeline(pending.map((k) => ['get', k])).exec()) ?? [];
    const writes: { key: string; raw: string; next: string }[] = [];
    pending.forEach((key, i) => {
      const [err, raw] = reads[i] ?? [null, null];
      if (err) throw err;
      if (typeof raw !== 'string') return void (counts.skipped += 1); // ended meanwhile
      const record = decodeRecord(raw);
      if (record && sealer.sealedWithFirstKey(record.sealed)) return void (counts.skipped += 1);
      const sid = key.slice(TOKENS_PREFIX.length);
      const plain = record ? sealer.open(record.sealed, sid) : null;
      if (!record || plain === null) return void (counts.unreadable += 1);
      writes.push({ key, raw, next: encodeRecord({ ...record, sealed: sealer.seal(plain, sid) }) });
    });
    if (writes.length === 0) return;
    const results = (await node.pipeline(writes.map((w) => ['evalsha', sha, '1', w.key, w.raw, w.next])).exec()) ?? [];
    const changed: string[] = [];
    writes.forEach((w, i) => {
      const [err, done] = results[i] ?? [null, 0];
      if (err) throw err;
      if (done === 1) counts.resealed += 1;
      else changed.push(w.key);
    });
    // Changed under us (a refresh, a touch of the TTL does not count): read again; a refresh's
    // record is under the first key already and is skipped then.
    if (attempt >= ATTEMPTS) {
      counts.skipped += changed.length;
      return;
    }
    pending = changed;
  }
}

/** How many keys the store holds (every master): the progress line's denominator. */
export async function storeSize(client: RedisClient): Promise<number> {
  const nodes: Redis[] = client instanceof Cluster ? client.nodes('master') : [client];
  const sizes = await Promise.all(nodes.map((n) => n.dbsize()));
  return sizes.reduce((a, b) => a + b, 0);
}
