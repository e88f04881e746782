import { Redis } from 'ioredis';

/**
 * Calls per command from `INFO commandstats`, without INFO itself (the bench's own probe) and
 * REPLCONF (a replica's acknowledgements to its master, not sent by anything measured).
 */
export type CommandCounts = Record<string, number>;

export function parseCommandStats(info: string): CommandCounts {
  const out: CommandCounts = {};
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    const name = m[1] ?? '';
    if (name === 'info' || name === 'replconf') continue;
    out[name] = Number(m[2]);
  }
  return out;
}

export class RedisProbe {
  private readonly client: Redis;

  constructor(url: string) {
    this.client = new Redis(url, { maxRetriesPerRequest: 1, lazyConnect: false });
    this.client.on('error', () => undefined);
  }

  async counts(): Promise<CommandCounts> {
    return parseCommandStats(String(await this.client.info('commandstats')));
  }

  close(): void {
    this.client.disconnect();
  }
}

/** after - before, per command and in total. */
export function diffCounts(before: CommandCounts, after: CommandCounts): { total: number; byCommand: CommandCounts } {
  const byCommand: CommandCounts = {};
  let total = 0;
  for (const [name, calls] of Object.entries(after)) {
    const d = calls - (before[name] ?? 0);
    if (d !== 0) {
      byCommand[name] = d;
      total += d;
    }
  }
  return { total, byCommand };
}
