import type { TokenSet } from '../auth/dialect.js';
import type { OidcStore } from '../store/oidc-store.js';
import type { SessionBroadcast } from '../store/session-broadcast.js';
import { createMemorySessionIndex, type DeviceEntry, type SessionIndex } from '../store/session-index.js';
import type { TokenStore } from '../store/token-store.js';
import type { IdleToucher } from './idle-touch.js';
import type { TokenVault } from './token-vault.js';

/**
 * A session's times, written once: every key of a session lives for the idle timeout from its
 * last touch, never past the absolute end, which is fixed at sign-in (`createdAt + absoluteMs`).
 */
export interface SessionTimeouts {
  readonly idleMs: number;
  readonly absoluteMs: number;
  /** The absolute end of a session created at `createdAt`. */
  absoluteEnd(createdAt: number): number;
  /** How long a session's keys live from `now`: the idle timeout, capped by the absolute end. */
  ttlAt(now: number, absoluteExpiresAt: number): number;
}

export function sessionTimeouts(idleMs: number, absoluteMs: number): SessionTimeouts {
  return Object.freeze({
    idleMs,
    absoluteMs,
    absoluteEnd: (createdAt: number) => createdAt + absoluteMs,
    ttlAt: (now: number, absoluteExpiresAt: number) => Math.min(idleMs, absoluteExpiresAt - now),
  });
}

export interface SessionStart {
  tokens: TokenSet;
  clientId: string;
  /** OIDC: the provider session and subject it belongs to, for Back-Channel Logout. */
  providerOwners?: { sid?: string | undefined; sub: string };
  /** Whose session this is (store/keys.ts sessionOwner) and the User-Agent it signed in with: the user's device list. */
  device?: { owner: string; userAgent: string };
}

/**
 * Owns a session's life: what starting one writes, and everything ending one must drop, here
 * and in Redis. The session id itself is minted by the cookie layer (express-session's
 * `genid: newSessionId`, on regenerate), which owns the cookie; start() is handed that id.
 */
export interface SessionLifecycle {
  readonly timeouts: SessionTimeouts;
  /** Writes a new session's sealed tokens (and its provider index); returns its times for the session record. */
  start(sid: string, init: SessionStart): Promise<{ createdAt: number; absoluteExpiresAt: number }>;
  /**
   * Ends a session: drops every local cache (dropLocal), deletes every key of the session (record,
   * tokens, lock, media), then runs the cleanups registered with onEnd. A store failure is thrown
   * (StoreError, 503) after the local caches are gone.
   */
  end(sid: string): Promise<void>;
  /**
   * Forgets the session in this process only, no Redis command: token cache, idle-touch cache,
   * token hint, then every onLocalEnd cleanup. end() calls it; it is also what another
   * instance's end should trigger here (e.g. from the tracked cache's invalidation channel).
   */
  dropLocal(sid: string): void;
  /** A per-process cleanup run by dropLocal (e.g. close the session's WebSockets). Must not throw. */
  onLocalEnd(cleanup: (sid: string) => void): void;
  /** A cleanup run once by end(), after the session's keys are gone (e.g. a per-user session index). */
  onEnd(cleanup: (sid: string) => Promise<void>): void;
  /** The owner's live sessions, newest sign-in first. */
  listOwned(owner: string): Promise<DeviceEntry[]>;
  /** Ends the owner's session behind `handle` and returns its id; null when it is not one of the owner's live sessions. */
  endOwned(owner: string, handle: string): Promise<string | null>;
  /** Ends every session of the owner; how many. */
  endAllOwned(owner: string): Promise<number>;
}

export function createSessionLifecycle(deps: {
  store: TokenStore;
  vault: TokenVault;
  toucher: IdleToucher;
  timeouts: SessionTimeouts;
  clock: () => number;
  oidcStore?: OidcStore | undefined;
  /** Every user's sessions (GET /auth/sessions, sign-out everywhere, the command line); in-process by default. */
  index?: SessionIndex | undefined;
  /** Tells every instance a session ended; absent in the in-process (development) setup. */
  broadcast?: Pick<SessionBroadcast, 'publish'> | undefined;
}): SessionLifecycle {
  const { store, vault, toucher, timeouts, clock } = deps;
  const index = deps.index ?? createMemorySessionIndex();
  const localCleanups: ((sid: string) => void)[] = [
    (sid) => store.forget?.(sid),
    (sid) => toucher.forget(sid),
    (sid) => vault.forgetHint(sid),
  ];
  const endCleanups: ((sid: string) => Promise<void>)[] = [];

  const dropLocal = (sid: string): void => {
    for (const cleanup of localCleanups) cleanup(sid);
  };

  const end = async (sid: string): Promise<void> => {
    dropLocal(sid);
    // Out of the user's list first: its entry names the list, and goes with the session's keys.
    await index.remove(sid);
    await store.destroy(sid);
    // Every other instance drops its caches and closes the session's WebSockets.
    await deps.broadcast?.publish(sid);
    for (const cleanup of endCleanups) await cleanup(sid);
  };

  return {
    timeouts,
    async start(sid, init) {
      const createdAt = clock();
      const absoluteExpiresAt = timeouts.absoluteEnd(createdAt);
      await vault.create(sid, { tokens: init.tokens, clientId: init.clientId, absoluteExpiresAt }, timeouts.ttlAt(createdAt, absoluteExpiresAt));
      if (init.providerOwners) {
        if (!deps.oidcStore) throw new Error('a provider index without an OIDC store');
        await deps.oidcStore.index(sid, init.providerOwners, timeouts.absoluteMs);
      }
      if (init.device) {
        await index.add(sid, init.device.owner, { createdAt, userAgent: init.device.userAgent, ttlMs: timeouts.ttlAt(createdAt, absoluteExpiresAt), absoluteExpiresAt });
      }
      return { createdAt, absoluteExpiresAt };
    },
    end,
    async listOwned(owner) {
      const entries = await index.list(owner, clock());
      return entries.sort((a, b) => b.createdAt - a.createdAt);
    },
    async endOwned(owner, handle) {
      const sid = await index.resolve(owner, handle, clock());
      if (!sid) return null;
      await end(sid);
      return sid;
    },
    async endAllOwned(owner) {
      const entries = await index.list(owner, clock());
      for (const e of entries) await end(e.sid);
      return entries.length;
    },
    dropLocal,
    onLocalEnd(cleanup) {
      localCleanups.push(cleanup);
    },
    onEnd(cleanup) {
      endCleanups.push(cleanup);
    },
  };
}
