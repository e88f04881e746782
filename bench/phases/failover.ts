/**
 * Failover under load (Cluster and Sentinel): a steady open-loop rate through two cloakroom
 * instances over many sessions, and the master that holds the first session's keys is killed
 * (SIGKILL) mid-run. Counted: every answer by status (and error code), how long answers were
 * failing, sessions that did not survive, and when the token cache was on again everywhere.
 */
import { Pool } from 'undici';
import { cloakroomEnv, signIn, type Bed } from '../lib/bed.js';
import type { Options } from '../lib/options.js';
import { startServer, type ServerChild } from '../lib/processes.js';
import { log } from '../lib/report.js';
import { sleep } from '../lib/units.js';

export interface FailoverSummary {
  topology: string;
  rate: number;
  seconds: number;
  sessions: number;
  /** Sessions that got a failing answer after the kill (all of them while a Cluster is down). */
  sessionsOnKilled: number;
  killedPort: number;
  /** Answers by `status` or `status error_code`, and `network` for a failed request. */
  statuses: Record<string, number>;
  /** From the kill to the answer of the last request that did not get a 200. */
  gapMs: number;
  /** Of the first and last failing requests answered after the kill, from the kill (send time). */
  firstFailMs: number;
  /** Non-200 answers that came back before the kill (a loaded machine: a command over its 1 s timeout). */
  failedBeforeKill: number;
  lastFailMs: number;
  /** Sessions that answered 401 after the failover (with no logout). */
  lost: number;
  /** From the kill until both instances' token cache was on again (null: not within the wait). */
  cacheBackMs: number | null;
  /** Whether the cache was seen off after the kill (a poll every 50 ms). */
  cacheSeenOff: boolean;
}

interface Answer {
  sentMs: number;
  doneMs: number;
  key: string;
  session: number;
}

const sidOf = (cookie: string) => /(\{[^}]+\})/.exec(decodeURIComponent(cookie))?.[1] ?? '';

export async function failoverPhase(bed: Bed, opts: Options): Promise<FailoverSummary> {
  const rate = opts.rate;
  const seconds = opts.failoverSeconds;
  const killAtMs = 3000;
  log(`\n== failover under load (${bed.topology.kind}): ${rate} req/s through two instances for ${seconds} s, the master holding the first session killed at ${killAtMs / 1000} s`);
  const [a, b] = await Promise.all([startServer('failover-a', 'cloakroom', cloakroomEnv(bed)), startServer('failover-b', 'cloakroom', cloakroomEnv(bed))]);
  bed.children.push(a, b);
  const instances: ServerChild[] = [a, b];
  const cacheOf = (c: ServerChild) => c.control<{ enabled: boolean; servers: Record<string, boolean> }>('cache');
  const cookies: string[] = [];
  for (let i = 0; i < opts.failoverSessions; i++) cookies.push(await signIn(instances[i % 2] as ServerChild));
  for (let i = 0; i < 100 && !(await Promise.all(instances.map(cacheOf))).every((c) => c.enabled); i++) await sleep(50);
  // Every write so far is on a replica: what a short pause does in production.
  for (const c of cookies) await bed.topology.syncReplicas(sidOf(c));

  const pools = instances.map((c) => new Pool(c.url, { connections: 64, pipelining: 1, keepAliveTimeout: 60_000 }));
  const answers: Answer[] = [];
  const inflight = new Set<Promise<void>>();
  let start = performance.now();
  const fire = (i: number): void => {
    const session = i % cookies.length;
    const sentMs = performance.now() - start;
    const p = (pools[i % 2] as Pool)
      .request({ method: 'GET', path: '/api/data', headers: { cookie: cookies[session] ?? '', 'x-csrf': '1' } })
      .then(async (res) => {
        let key = String(res.statusCode);
        if (res.statusCode === 200) await res.body.dump({ limit: Number.POSITIVE_INFINITY });
        else {
          const text = await res.body.text();
          const code = (() => {
            try {
              return (JSON.parse(text) as { error?: string }).error;
            } catch {
              return undefined;
            }
          })();
          if (code) key += ` ${code}`;
        }
        answers.push({ sentMs, doneMs: performance.now() - start, key, session });
      })
      .catch(() => {
        answers.push({ sentMs, doneMs: performance.now() - start, key: 'network', session });
      });
    inflight.add(p);
    void p.finally(() => inflight.delete(p));
  };

  // Looked up now: at the kill's moment there is nothing left to ask.
  const victim = await bed.topology.masterOf(sidOf(cookies[0] ?? ''));
  const killedPort = victim.port;
  // The cache state, from the kill on, every 50 ms.
  let killed = false;
  let cacheSeenOff = false;
  let cacheBackMs: number | null = null;
  let polling = true;
  const poller = (async () => {
    while (polling) {
      if (killed) {
        const states = await Promise.all(instances.map(cacheOf)).catch(() => null);
        const on = states?.every((s) => s.enabled) ?? false;
        if (!on) cacheSeenOff = true;
        else if (cacheSeenOff && cacheBackMs === null) cacheBackMs = performance.now() - start - killAtMs;
        if (cacheBackMs !== null) return;
      }
      await sleep(50);
    }
  })();

  start = performance.now();
  const total = Math.round(rate * seconds);
  const interval = 1000 / rate;
  let sent = 0;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const now = performance.now() - start;
      if (!killed && now >= killAtMs) {
        killed = true;
        void victim.kill();
      }
      const due = Math.min(total, Math.floor(now / interval) + 1);
      while (sent < due) fire(sent++);
      if (sent >= total) {
        clearInterval(timer);
        resolve();
      }
    }, 1);
  });
  await Promise.all([...inflight]);
  // The cache may take longer than the run to come back: wait for it a while.
  for (let i = 0; i < 200 && cacheBackMs === null; i++) await sleep(50);
  polling = false;
  await poller;
  await Promise.all(pools.map((p) => p.close()));

  // Every session after the failover: still signed in (a 503 is retried for a while).
  let lost = 0;
  for (const cookie of cookies) {
    for (let i = 0; i < 100; i++) {
      const res = await fetch(`${a.url}/api/data`, { headers: { cookie, 'x-csrf': '1' } });
      await res.arrayBuffer();
      if (res.status === 401) lost++;
      if (res.status !== 503) break;
      await sleep(50);
    }
  }
  const sessionsOnKilled = new Set(answers.filter((x) => x.key !== '200' && x.doneMs >= killAtMs).map((x) => x.session)).size;
  await Promise.all([a.stop(), b.stop()]);

  const statuses: Record<string, number> = {};
  for (const x of answers) statuses[x.key] = (statuses[x.key] ?? 0) + 1;
  const failing = answers.filter((x) => x.key !== '200' && x.doneMs >= killAtMs);
  const lastDone = Math.max(killAtMs, ...failing.map((x) => x.doneMs));
  return {
    topology: bed.topology.kind,
    rate,
    seconds,
    sessions: cookies.length,
    sessionsOnKilled,
    killedPort,
    statuses,
    gapMs: failing.length ? lastDone - killAtMs : 0,
    failedBeforeKill: answers.filter((x) => x.key !== '200' && x.doneMs < killAtMs).length,
    firstFailMs: failing.length ? Math.min(...failing.map((x) => x.sentMs)) - killAtMs : Number.NaN,
    lastFailMs: failing.length ? Math.max(...failing.map((x) => x.sentMs)) - killAtMs : Number.NaN,
    lost,
    cacheBackMs,
    cacheSeenOff,
  };
}
