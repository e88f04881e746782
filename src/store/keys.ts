import { createHash, randomBytes } from 'node:crypto';

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
/** A session's device entry (sign-in time, last seen, user agent, handle, owner): a HASH with the session's tag. */
const DEVICE_PREFIX = 'cr:dev:';
/** A handle's owner (for `cloakroom sessions revoke --session`), under a digest of the handle. */
const HANDLE_PREFIX = 'cr:hdl:';
/** Sessions ended anywhere are announced here, so every instance drops what it holds of them. */
export const SESSION_ENDED_CHANNEL = 'cr:ended';
/** OIDC sign-ins in flight and Back-Channel Logout indexes (digests, not the provider's values). */
export const OIDC_PREFIXES = { attempt: 'cr:oidc:att:', providerSid: 'cr:oidc:sid:', subject: 'cr:oidc:sub:' } as const;
/** Failed sign-in counts, and OIDC sign-in starts per address (rate-limiter-flexible's keyPrefix). */
export const THROTTLE_PREFIXES = { email: 'cr:rl:email', address: 'cr:rl:addr', signInStart: 'cr:rl:start' } as const;

export const sessionKeys = (sid: string) => ({
  record: `${SESSION_PREFIX}${sid}`,
  tokens: `${TOKENS_PREFIX}${sid}`,
  lock: `${LOCK_PREFIX}${sid}`,
  media: `${MEDIA_PREFIX}${sid}`,
  device: `${DEVICE_PREFIX}${sid}`,
});

/**
 * Whose sessions these are: a digest of AUTH_MODE and the user's id (no personal data in key
 * names, no stray braces). The same user id in another mode is another owner.
 */
export function sessionOwner(authMode: string, userId: string): string {
  return createHash('sha256').update(`${authMode}\n${userId}`).digest('base64url');
}

/**
 * One user's index, under its own hash tag (not a session's): a ZSET of handle -> end of the
 * session (ms), and a HASH of handle -> session id. Commands on these never name a session key.
 */
export const userKeys = (owner: string) => ({
  sessions: `cr:{u:${owner}}:sessions`,
  handles: `cr:{u:${owner}}:handles`,
});

export const handleKey = (handle: string) => `${HANDLE_PREFIX}${createHash('sha256').update(handle).digest('base64url')}`;

export function newHandle(): string {
  return randomBytes(24).toString('base64url');
}

export function isHandleShape(handle: string): boolean {
  return /^[A-Za-z0-9_-]{32}$/.test(handle);
}

export const allSessionKeys = (sid: string): string[] => Object.values(sessionKeys(sid));

export function newSessionId(): string {
  return `{${randomBytes(24).toString('base64url')}}`;
}

/** Ids we minted: anything else in a cookie is not looked up at all. */
export function isSessionIdShape(sid: string): boolean {
  return /^\{[A-Za-z0-9_-]{32}\}$/.test(sid);
}

/** The start-up probe (set, get, delete) that proves the store works before traffic is taken. */
export const probeKey = (id: string | number): string => `cr:probe:{${id}}`;
