import { Cluster, Redis } from 'ioredis';
import { SESSION_ENDED_CHANNEL } from './keys.js';
import type { RedisClient } from './redis-client.js';
import type { RedisGuard } from './redis-guard.js';

/**
 * "This session has ended", told to every instance sharing Redis: each one then drops what it
 * holds of the session (token cache entry, hints, open WebSockets). PUBLISH reaches every
 * subscriber on a Cluster too. The message is the session id: Redis key names carry it
 * already, and it opens nothing without the cookie secret.
 */
export interface SessionBroadcast {
  publish(sid: string): Promise<void>;
  close(): void;
}

export function createRedisSessionBroadcast(
  client: RedisClient,
  guard: RedisGuard,
  /** Absent: publish only (the command line). */
  onEnded?: (sid: string) => void,
): SessionBroadcast {
  let subscriber: Redis | Cluster | null = null;
  if (onEnded) {
    // A subscribed connection can do nothing else: a dedicated one, subscribed again on every
    // (re)connection, as the data connection refuses to queue commands while it is down.
    const sub = client instanceof Cluster ? client.duplicate(undefined, { lazyConnect: true, autoResubscribe: false }) : client.duplicate({ lazyConnect: true, autoResubscribe: false });
    sub.on('error', () => undefined);
    sub.on('ready', () => {
      sub.subscribe(SESSION_ENDED_CHANNEL).catch(() => undefined);
    });
    sub.on('message', (channel: string, sid: string) => {
      if (channel === SESSION_ENDED_CHANNEL) onEnded(sid);
    });
    sub.connect().catch(() => undefined);
    subscriber = sub;
  }
  return {
    publish: (sid) =>
      guard(async () => {
        await client.publish(SESSION_ENDED_CHANNEL, sid);
      }),
    close: () => {
      subscriber?.disconnect();
    },
  };
}
