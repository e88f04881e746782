import { randomBytes } from 'node:crypto';

/**
 * Every key of one session carries the session id as its Redis Cluster hash tag: the id
 * itself is `{<random>}`, so connect-redis's `prefix + sid` and our own keys land on one
 * slot (multi-key DEL and scripts work) while sessions spread over every shard.
 */
export const SESSION_PREFIX = 'cr:sess:';

export const sessionKeys = (sid: string) => ({
  record: `${SESSION_PREFIX}${sid}`,
  tokens: `cr:tok:${sid}`,
  lock: `cr:lock:${sid}`,
  media: `cr:media:${sid}`,
});

export const allSessionKeys = (sid: string): string[] => Object.values(sessionKeys(sid));

export function newSessionId(): string {
  return `{${randomBytes(24).toString('base64url')}}`;
}

/** Ids we minted: anything else in a cookie is not looked up at all. */
export function isSessionIdShape(sid: string): boolean {
  return /^\{[A-Za-z0-9_-]{32}\}$/.test(sid);
}
