import { randomBytes } from 'node:crypto';

/**
 * Every Redis key prefix cloakroom writes, defined here once. Every key of one session carries
 * the session id as its Redis Cluster hash tag: the id itself is `{<random>}`, so
 * connect-redis's `prefix + sid` and our own keys land on one slot (multi-key DEL and scripts
 * work) while sessions spread over every shard.
 */
export const SESSION_PREFIX = 'cr:sess:';
/** The tracked token cache subscribes to this prefix (CLIENT TRACKING BCAST PREFIX). */
export const TOKENS_PREFIX = 'cr:tok:';
const LOCK_PREFIX = 'cr:lock:';
const MEDIA_PREFIX = 'cr:media:';
/** OIDC sign-ins in flight and Back-Channel Logout indexes (digests, not the provider's values). */
export const OIDC_PREFIXES = { attempt: 'cr:oidc:att:', providerSid: 'cr:oidc:sid:', subject: 'cr:oidc:sub:' } as const;
/** Failed sign-in counts, and OIDC sign-in starts per address (rate-limiter-flexible's keyPrefix). */
export const THROTTLE_PREFIXES = { email: 'cr:rl:email', address: 'cr:rl:addr', signInStart: 'cr:rl:start' } as const;

export const sessionKeys = (sid: string) => ({
  record: `${SESSION_PREFIX}${sid}`,
  tokens: `${TOKENS_PREFIX}${sid}`,
  lock: `${LOCK_PREFIX}${sid}`,
  media: `${MEDIA_PREFIX}${sid}`,
});

export const allSessionKeys = (sid: string): string[] => Object.values(sessionKeys(sid));

export function newSessionId(): string {
  return `{${randomBytes(24).toString('base64url')}}`;
}

/** Ids we minted: anything else in a cookie is not looked up at all. */
export function isSessionIdShape(sid: string): boolean {
  return /^\{[A-Za-z0-9_-]{32}\}$/.test(sid);
}
