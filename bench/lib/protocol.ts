/** Messages between bench/run.js and the server children it forks. */

export interface ChildStats {
  pid: number;
  /** process.cpuUsage() of the child, microseconds since it started. */
  cpuUserUs: number;
  cpuSystemUs: number;
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
  /** HTTP requests this child's server has received since it started. */
  requests: number;
  /** Time spent in garbage collection since it started (ms, from `perf_hooks` gc entries). */
  gcMs: number;
}

export type ParentMessage =
  | { type: 'stats'; id: number }
  | { type: 'control'; id: number; op: string; args?: Record<string, unknown> }
  | { type: 'shutdown'; id: number };

export type ChildMessage =
  | { type: 'ready'; port: number; pid: number }
  | { type: 'reply'; id: number; value: unknown; error?: string };

/** Counters the bench upstream keeps (answered to the `counters` control op). */
export interface UpstreamCounters {
  apiCalls: number;
  rejected: number;
  passwordGrants: number;
  refreshGrants: number;
  /** Refresh grants that presented a refresh token already used (rotation was raced). */
  refreshReuse: number;
  me: number;
  /** Epoch ms (performance.timeOrigin + now) when the last refresh grant arrived, and when it was answered. */
  lastRefreshStartMs: number;
  lastRefreshEndMs: number;
  /** Epoch ms when the first API call after `resetCounters` arrived. */
  firstApiCallMs: number;
}
