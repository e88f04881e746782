/**
 * Jest globalTeardown: fails the run when a redis-server wrote a dump.rdb into the checkout
 * during it (a server started without a temporary `--dir`, see scripts/redis-server.ts).
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';

export default async function noDumpRdbInCheckout(globalConfig) {
  const file = join(globalConfig.rootDir, 'dump.rdb');
  const startedAt = Date.now() - process.uptime() * 1000;
  let mtime;
  try {
    mtime = statSync(file).mtimeMs;
  } catch {
    return;
  }
  if (mtime >= startedAt - 1000) {
    throw new Error(`${file} was written during this test run: some redis-server was started without a temporary --dir`);
  }
}
