/**
 * `cloakroom reseal` on 100,000 sessions in a temporary redis-server (its own --dir, removed
 * afterwards): sessions resealed per second and Redis commands per session (INFO commandstats),
 * then the second, idempotent run. Target: at least 5,000 sessions per second.
 *
 *   npm run build && node dist/bench/reseal.js [sessions]
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { createTokenSealer } from '../src/core/token-crypto.js';
import { newSessionId, sessionKeys } from '../src/store/keys.js';
import { resealTokenRecords, type ResealCounts } from '../src/store/reseal.js';
import { encodeRecord } from '../src/store/token-store.js';
import { startRedisServer } from '../scripts/redis-server.js';
import { diffCounts, RedisProbe } from './lib/redis-stats.js';

const SESSIONS = Number(process.argv[2] ?? 100_000);
const TARGET_PER_SECOND = 5000;

async function main(): Promise<void> {
  const redis = await startRedisServer();
  const client = new Redis(redis.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
  const probe = new RedisProbe(redis.url);
  try {
    const oldKey = randomBytes(32);
    const newKey = randomBytes(32);
    const before = createTokenSealer([oldKey]);
    // A token record as the vault writes it: access, refresh and id tokens, client id, sealed.
    const plain = (i: number) => JSON.stringify({ a: `access-${i}-${randomBytes(400).toString('base64url')}`, r: `refresh-${i}-${randomBytes(24).toString('base64url')}`, c: randomBytes(16).toString('hex') });
    const now = Date.now();
    for (let i = 0; i < SESSIONS; i += 1000) {
      const pipeline = client.pipeline();
      for (let j = i; j < Math.min(SESSIONS, i + 1000); j++) {
        const sid = newSessionId();
        const record = { version: 1, absoluteExpiresAt: now + 86_400_000, accessExpiresAt: now + 3_600_000, refreshAt: now + 3_540_000, sealed: before.seal(plain(j), sid) };
        pipeline.set(sessionKeys(sid).tokens, encodeRecord(record), 'PX', 3_600_000);
      }
      await pipeline.exec();
    }
    const sealer = createTokenSealer([newKey, oldKey]);
    const run = async (label: string): Promise<void> => {
      const c0 = await probe.counts();
      const t0 = process.hrtime.bigint();
      const counts: ResealCounts = await resealTokenRecords(client, sealer);
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      const { total, byCommand } = diffCounts(c0, await probe.counts());
      const perSession = Object.entries(byCommand).map(([name, n]) => `${name} ${(n / counts.scanned).toFixed(3)}`).join(', ');
      process.stdout.write(
        `${label}: ${counts.scanned} records in ${seconds.toFixed(2)} s = ${Math.round(counts.scanned / seconds)} sessions/s; ` +
          `resealed ${counts.resealed}, skipped ${counts.skipped}, unreadable ${counts.unreadable}; ` +
          `Redis commands per session ${(total / counts.scanned).toFixed(3)} (${perSession}; INFO commandstats also counts the GET and SET inside each compare-and-set script)\n`,
      );
      if (label === 'reseal') {
        const rate = counts.scanned / seconds;
        process.stdout.write(`target ${TARGET_PER_SECOND} sessions/s: ${rate >= TARGET_PER_SECOND ? 'met' : 'NOT met'}\n`);
      }
    };
    process.stdout.write(`${SESSIONS} sessions sealed under the old key (redis-server ${redis.url}, temporary dir)\n`);
    await run('reseal');
    await run('second run (idempotent)');
  } finally {
    probe.close();
    client.disconnect();
    await redis.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exitCode = 1;
});
