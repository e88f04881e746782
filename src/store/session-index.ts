import { handleKey, newHandle, sessionKeys, userKeys } from './keys.js';
import type { RedisClient } from './redis-client.js';
import type { RedisGuard } from './redis-guard.js';

/** One of a user's sessions as the owner sees it. `sid` never leaves the server. */
export interface DeviceEntry {
  sid: string;
  handle: string;
  createdAt: number;
  lastSeenAt: number;
  userAgent: string;
}

/**
 * Which sessions a user has, kept by the session lifecycle (start, idle touch, end). Each user
 * has its own keys under its own hash tag; each session's entry sits with the session's keys
 * (its tag). No command names keys of both, so every call works on a Cluster.
 */
export interface SessionIndex {
  add(sid: string, owner: string, init: { createdAt: number; userAgent: string; ttlMs: number; absoluteExpiresAt: number }): Promise<void>;
  /** The idle touch: the session's entry and its place in the user's list live `ttlMs` more. */
  touch(sid: string, ttlMs: number, now: number): Promise<void>;
  /** Takes the session out of its user's list (before its keys are deleted). */
  remove(sid: string): Promise<void>;
  /** The owner's live sessions; ended or timed-out ones are dropped from the list on the way. */
  list(owner: string, now: number): Promise<DeviceEntry[]>;
  /** The session id behind one of the owner's handles, or null (not the owner's, or ended). */
  resolve(owner: string, handle: string, now: number): Promise<string | null>;
  /** Whose handle this is (the command line's `revoke --session`). */
  ownerOfHandle(handle: string): Promise<string | null>;
}

export const USER_AGENT_MAX = 200;

/** One entry of `GET /auth/sessions` (and `cloakroom sessions list --json`). */
export function listedSession(e: DeviceEntry, currentSid: string | null) {
  return {
    id: e.handle,
    current: e.sid === currentSid,
    createdAt: new Date(e.createdAt).toISOString(),
    lastSeenAt: new Date(e.lastSeenAt).toISOString(),
    userAgent: e.userAgent,
  };
}
const ms = (v: number) => String(Math.max(1, Math.ceil(v)));

// On the user's tag: add the handle, drop entries that have timed out, and keep both keys alive
// as long as their longest-lived session (PTTL only grows).
const ADD_LUA = `
local now = tonumber(ARGV[4])
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
if #gone > 0 then redis.call('ZREM', KEYS[1], unpack(gone)); redis.call('HDEL', KEYS[2], unpack(gone)) end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
for i = 1, 2 do
  local t = redis.call('PTTL', KEYS[i])
  if t < tonumber(ARGV[5]) then redis.call('PEXPIRE', KEYS[i], ARGV[5]) end
end
return 1`;

// On the session's tag: extend the entry, note the time, say where its user's list is.
const TOUCH_LUA = `
if redis.call('PEXPIRE', KEYS[1], ARGV[1]) == 0 then return false end
redis.call('HSET', KEYS[1], 'l', ARGV[2])
return redis.call('HMGET', KEYS[1], 'u', 'h')`;

// On the user's tag: drop timed-out entries, return the live [handle, sid] pairs.
const LIVE_LUA = `
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if #gone > 0 then redis.call('ZREM', KEYS[1], unpack(gone)); redis.call('HDEL', KEYS[2], unpack(gone)) end
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf')
local out = {}
for _, h in ipairs(live) do
  local sid = redis.call('HGET', KEYS[2], h)
  if sid then out[#out + 1] = h; out[#out + 1] = sid end
end
return out`;

export function createRedisSessionIndex(client: RedisClient, guard: RedisGuard): SessionIndex {
  const readEntry = async (sid: string, handle: string): Promise<DeviceEntry | null> => {
    const [c, l, ua] = await client.hmget(sessionKeys(sid).device, 'c', 'l', 'ua');
    if (c === null || c === undefined) return null;
    return { sid, handle, createdAt: Number(c), lastSeenAt: Number(l ?? c), userAgent: ua ?? '' };
  };
  const unlink = async (owner: string, handles: string[]) => {
    if (handles.length === 0) return;
    const u = userKeys(owner);
    await client.multi().zrem(u.sessions, ...handles).hdel(u.handles, ...handles).exec();
  };
  const live = async (owner: string, now: number): Promise<[string, string][]> => {
    const u = userKeys(owner);
    const flat = (await client.eval(LIVE_LUA, 2, u.sessions, u.handles, String(now))) as string[];
    const pairs: [string, string][] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) pairs.push([flat[i] as string, flat[i + 1] as string]);
    return pairs;
  };

  return {
    add: (sid, owner, init) =>
      guard(async () => {
        const handle = newHandle();
        const k = sessionKeys(sid);
        const u = userKeys(owner);
        const userAgent = init.userAgent.slice(0, USER_AGENT_MAX);
        await client.multi().hset(k.device, { h: handle, u: owner, c: String(init.createdAt), l: String(init.createdAt), ua: userAgent }).pexpire(k.device, ms(init.ttlMs)).exec();
        const untilAbsolute = ms(init.absoluteExpiresAt - init.createdAt);
        await client.set(handleKey(handle), owner, 'PX', untilAbsolute);
        await client.eval(ADD_LUA, 2, u.sessions, u.handles, String(init.createdAt + init.ttlMs), handle, sid, String(init.createdAt), untilAbsolute);
      }),

    touch: (sid, ttlMs, now) =>
      guard(async () => {
        const found = (await client.eval(TOUCH_LUA, 1, sessionKeys(sid).device, ms(ttlMs), String(now))) as [string | null, string | null] | null;
        const [owner, handle] = found ?? [null, null];
        // XX: a session already taken out of the list is not put back by a late touch.
        if (owner && handle) await client.zadd(userKeys(owner).sessions, 'XX', String(now + ttlMs), handle);
      }),

    remove: (sid) =>
      guard(async () => {
        const k = sessionKeys(sid).device;
        const [owner, handle] = await client.hmget(k, 'u', 'h');
        if (!owner || !handle) return;
        await unlink(owner, [handle]);
        await client.del(handleKey(handle));
      }),

    list: (owner, now) =>
      guard(async () => {
        const pairs = await live(owner, now);
        const entries = await Promise.all(pairs.map(([handle, sid]) => readEntry(sid, handle)));
        // An entry whose session keys are gone (a Redis that lost them, a DEL from outside) leaves the list too.
        await unlink(owner, pairs.filter((_, i) => entries[i] === null).map(([handle]) => handle));
        return entries.filter((e): e is DeviceEntry => e !== null);
      }),

    resolve: (owner, handle, now) =>
      guard(async () => {
        const u = userKeys(owner);
        const [score, sid] = await Promise.all([client.zscore(u.sessions, handle), client.hget(u.handles, handle)]);
        if (score === null || sid === null || Number(score) <= now) return null;
        return (await client.exists(sessionKeys(sid).device)) === 1 ? sid : null;
      }),

    ownerOfHandle: (handle) => guard(() => client.get(handleKey(handle))),
  };
}

/** Development stand-in (no Redis): one process. */
export function createMemorySessionIndex(): SessionIndex {
  const devices = new Map<string, DeviceEntry & { owner: string; until: number }>();
  const owners = new Map<string, Map<string, string>>();
  const handles = new Map<string, string>();
  const liveEntry = (sid: string, now: number) => {
    const d = devices.get(sid);
    if (d && d.until <= now) {
      devices.delete(sid);
      owners.get(d.owner)?.delete(d.handle);
      handles.delete(d.handle);
      return undefined;
    }
    return d;
  };
  return {
    add: async (sid, owner, init) => {
      const handle = newHandle();
      devices.set(sid, { sid, handle, owner, createdAt: init.createdAt, lastSeenAt: init.createdAt, userAgent: init.userAgent.slice(0, USER_AGENT_MAX), until: init.createdAt + init.ttlMs });
      const mine = owners.get(owner) ?? new Map<string, string>();
      mine.set(handle, sid);
      owners.set(owner, mine);
      handles.set(handle, owner);
    },
    touch: async (sid, ttlMs, now) => {
      const d = liveEntry(sid, now);
      if (!d) return;
      d.lastSeenAt = now;
      d.until = now + ttlMs;
    },
    remove: async (sid) => {
      const d = devices.get(sid);
      if (!d) return;
      devices.delete(sid);
      owners.get(d.owner)?.delete(d.handle);
      handles.delete(d.handle);
    },
    list: async (owner, now) => {
      const out: DeviceEntry[] = [];
      for (const sid of [...(owners.get(owner)?.values() ?? [])]) {
        const d = liveEntry(sid, now);
        if (d) out.push({ sid: d.sid, handle: d.handle, createdAt: d.createdAt, lastSeenAt: d.lastSeenAt, userAgent: d.userAgent });
      }
      return out;
    },
    resolve: async (owner, handle, now) => {
      const sid = owners.get(owner)?.get(handle);
      return sid && liveEntry(sid, now) ? sid : null;
    },
    ownerOfHandle: async (handle) => handles.get(handle) ?? null,
  };
}
