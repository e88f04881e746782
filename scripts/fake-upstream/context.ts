/** What each seed's routes are handed: the shared accounts, the test hooks, the live settings. */
import type { Accounts } from './accounts.js';
import type { TestHooks } from './test-hooks.js';

/** Lifetimes tests change on the running fake (`upstream.accessTokenTtlSeconds = 3`). */
export interface FakeSettings {
  accessTokenTtlSeconds: number;
  refreshTokenTtlSeconds: number;
  mediaTokenTtlSeconds: number;
}

export interface FakeContext {
  readonly accounts: Accounts;
  readonly hooks: TestHooks;
  readonly settings: FakeSettings;
}
