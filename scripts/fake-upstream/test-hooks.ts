/**
 * What no seed describes and tests need: counters, the recorded requests, queued faults for
 * the refresh endpoints, a refresh delay, a failing one-time token, and delays that close()
 * can cut short.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendText } from './http.js';

export interface RecordedRequest {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export type RefreshFault = 'http500' | 'reset' | 'garbage' | 'hang' | 'invalid_grant';

export interface FakeUpstreamStats {
  passwordGrants: number;
  refreshGrants: number;
  jsonLogins: number;
  jsonRefreshes: number;
  mediaTokens: number;
  oneTimeTokens: number;
  exchanges: number;
  apiCalls: number;
}

export interface DownloadProgress {
  size: number;
  sent: number;
  /** The whole body was handed to the socket. */
  finished: boolean;
  /** The connection closed before that: the client (cloakroom) stopped reading. */
  aborted: boolean;
}

/** What a refresh endpoint does next: answer normally, refuse, or nothing (already answered, or never). */
export type RefreshGate = 'proceed' | 'handled' | 'invalid_grant';

export interface TestHooks {
  readonly stats: FakeUpstreamStats;
  readonly requests: RecordedRequest[];
  readonly downloads: DownloadProgress[];
  faults: { refresh: RefreshFault[] };
  refreshDelayMs: number;
  /** Seed 000's failure answer instead of a token. */
  oneTimeTokenFails: boolean;
  /** True once the server is closing: routes still running stop answering. */
  readonly closed: boolean;
  /** Kept on arrival, so the order is the order requests came in, not finished uploading. */
  record(req: IncomingMessage): RecordedRequest;
  /**
   * Shared by both refresh dialects. The fault is taken from the queue when the request
   * arrives, so queued faults hit refreshes in arrival order even with a delay configured.
   */
  refreshGate(req: IncomingMessage, res: ServerResponse): Promise<RefreshGate>;
  /** A delay that close() ends early. */
  sleep(ms: number): Promise<void>;
  reset(): void;
  close(): void;
}

const MAX_RECORDED = 500;

export function createTestHooks(): TestHooks {
  const timers = new Set<NodeJS.Timeout>();
  let closed = false;

  const hooks: TestHooks = {
    stats: { passwordGrants: 0, refreshGrants: 0, jsonLogins: 0, jsonRefreshes: 0, mediaTokens: 0, oneTimeTokens: 0, exchanges: 0, apiCalls: 0 },
    requests: [],
    downloads: [],
    faults: { refresh: [] },
    refreshDelayMs: 0,
    oneTimeTokenFails: false,
    get closed() {
      return closed;
    },
    record(req) {
      const record: RecordedRequest = { method: req.method ?? 'GET', url: req.url ?? '/', headers: { ...req.headers }, body: Buffer.alloc(0) };
      hooks.requests.push(record);
      if (hooks.requests.length > MAX_RECORDED) hooks.requests.splice(0, hooks.requests.length - MAX_RECORDED);
      return record;
    },
    sleep(ms) {
      return new Promise((resolve) => {
        const t = setTimeout(() => {
          timers.delete(t);
          resolve();
        }, Math.max(0, ms));
        timers.add(t);
      });
    },
    async refreshGate(req, res) {
      const fault = hooks.faults.refresh.shift();
      if (hooks.refreshDelayMs > 0) await hooks.sleep(hooks.refreshDelayMs);
      if (closed || res.destroyed) return 'handled';
      switch (fault) {
        case undefined:
          return 'proceed';
        case 'http500':
          sendText(res, 500, 'Internal Server Error');
          return 'handled';
        case 'reset':
          req.socket.destroy();
          return 'handled';
        case 'garbage':
          sendText(res, 200, '{not json', 'application/json; charset=utf-8');
          return 'handled';
        case 'hang':
          // Never answered; close() destroys the socket.
          return 'handled';
        case 'invalid_grant':
          return 'invalid_grant';
      }
    },
    reset() {
      for (const k of Object.keys(hooks.stats) as (keyof FakeUpstreamStats)[]) hooks.stats[k] = 0;
      hooks.requests.length = 0;
      hooks.downloads.length = 0;
      // In place, so a test holding the array sees it emptied too.
      hooks.faults.refresh.splice(0);
      hooks.oneTimeTokenFails = false;
    },
    close() {
      closed = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
    },
  };
  return hooks;
}
