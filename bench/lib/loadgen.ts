/**
 * Load generators:
 * - closed loop (N keep-alive connections, as fast as the server answers): wrk when it is
 *   installed, else autocannon's programmatic API;
 * - open loop at a fixed rate (for latency at a steady 1000 req/s): a paced undici pool,
 *   because autocannon's `overallRate` sends each second's quota as a burst at the start
 *   of the second and records whole milliseconds, and wrk has no rate at all;
 * - a burst of N concurrent requests (the refresh storm).
 */
import { execFileSync, spawn } from 'node:child_process';
import autocannon from 'autocannon';
import { Pool } from 'undici';
import { Samples } from './samples.js';

export type Tool = 'autocannon' | 'wrk';

export interface Target {
  readonly name: string;
  readonly url: string;
  readonly headers: Record<string, string>;
}

export interface LoadResult {
  tool: Tool;
  requests: number;
  ok: number;
  errors: number;
  non2xx: number;
  seconds: number;
  rps: number;
  p50Us: number;
  p99Us: number;
}

export function wrkAvailable(): boolean {
  try {
    execFileSync('wrk', ['--version'], { stdio: 'ignore' });
    return true;
  } catch (err) {
    // wrk --version exits 1 after printing its version; only a missing binary is ENOENT.
    return (err as { code?: string }).code !== 'ENOENT';
  }
}

export interface ClosedLoopOptions {
  connections: number;
  seconds?: number;
  /** Stop after this many responses (autocannon only). */
  amount?: number;
  /** Called with the number of completed responses, about every `progressEvery` responses. */
  onProgress?: (completed: number) => void;
  progressEvery?: number;
}

export function closedLoop(tool: Tool, target: Target, opts: ClosedLoopOptions): Promise<LoadResult> {
  if (tool === 'wrk' && opts.amount === undefined && opts.onProgress === undefined) return runWrk(target, opts);
  return runAutocannon(target, opts);
}

function runAutocannon(target: Target, opts: ClosedLoopOptions): Promise<LoadResult> {
  const samples = new Samples();
  let ok = 0;
  let non2xx = 0;
  let completed = 0;
  const every = opts.progressEvery ?? 1000;
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: target.url,
        headers: target.headers,
        connections: opts.connections,
        pipelining: 1,
        timeout: 10,
        ...(opts.amount !== undefined ? { amount: opts.amount } : { duration: opts.seconds ?? 10 }),
      },
      (err, result) => {
        if (err) return reject(err);
        const seconds = (performance.now() - started) / 1000;
        resolve({
          tool: 'autocannon',
          requests: completed,
          ok,
          errors: result.errors + result.timeouts,
          non2xx,
          seconds,
          rps: ok / seconds,
          p50Us: samples.percentile(50),
          p99Us: samples.percentile(99),
        });
      },
    );
    // autocannon's own histogram keeps whole milliseconds; its per-response event has the exact duration.
    instance.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
      completed++;
      if (status >= 200 && status < 300) {
        ok++;
        samples.record(ms * 1000);
      } else non2xx++;
      if (opts.onProgress && completed % every === 0) opts.onProgress(completed);
    });
  });
}

/** "812.00us", "1.23ms", "2.00s", "1.00m" -> microseconds. */
export function parseWrkDuration(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(text.trim());
  if (!m) return Number.NaN;
  const unit = { us: 1, ms: 1e3, s: 1e6, m: 60e6, h: 3600e6 }[m[2] as 'us' | 'ms' | 's' | 'm' | 'h'];
  return Number(m[1]) * unit;
}

export function parseWrkOutput(out: string): Omit<LoadResult, 'tool'> {
  const total = /(\d+) requests in ([\d.]+)(us|ms|s|m)/.exec(out);
  if (!total) throw new Error(`unexpected wrk output:\n${out}`);
  const requests = Number(total[1]);
  const seconds = parseWrkDuration(`${total[2]}${total[3]}`) / 1e6;
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors = sock ? sock.slice(1, 5).reduce((a, b) => a + Number(b), 0) : 0;
  const pct = (p: string) => parseWrkDuration(new RegExp(`^\\s*${p}%\\s+(\\S+)`, 'm').exec(out)?.[1] ?? '');
  const ok = requests - non2xx;
  return { requests, ok, errors, non2xx, seconds, rps: ok / seconds, p50Us: pct('50'), p99Us: pct('99') };
}

function runWrk(target: Target, opts: ClosedLoopOptions): Promise<LoadResult> {
  const threads = Number(process.env['BENCH_WRK_THREADS'] ?? 1);
  const args = [`-t${threads}`, `-c${opts.connections}`, `-d${opts.seconds ?? 10}s`, '--latency'];
  for (const [k, v] of Object.entries(target.headers)) args.push('-H', `${k}: ${v}`);
  args.push(target.url);
  return new Promise((resolve, reject) => {
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (out += c.toString('utf8')));
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`wrk exited ${code}:\n${out}`));
      try {
        resolve({ tool: 'wrk', ...parseWrkOutput(out) });
      } catch (err) {
        reject(err);
      }
    });
  });
}

export interface PacedResult {
  samples: Samples;
  sent: number;
  ok: number;
  failed: number;
  seconds: number;
  achievedRps: number;
  /** Largest delay between a request's scheduled and actual send (generator fidelity). */
  maxLagUs: number;
}

/**
 * Open loop: sends at `rate` per second regardless of answers (wrk2-style), on up to
 * `connections` keep-alive connections. Latency runs from the actual send to the last
 * byte of the body, in microseconds.
 */
export async function paced(target: Target, opts: { rate: number; seconds: number; connections?: number; onTick?: () => void }): Promise<PacedResult> {
  const u = new URL(target.url);
  const pool = new Pool(u.origin, { connections: opts.connections ?? 64, pipelining: 1, keepAliveTimeout: 60_000 });
  const path = u.pathname + u.search;
  const samples = new Samples();
  let sent = 0;
  let ok = 0;
  let failed = 0;
  let maxLagUs = 0;
  const total = Math.round(opts.rate * opts.seconds);
  const interval = 1000 / opts.rate;
  const inflight = new Set<Promise<void>>();

  const fire = (): void => {
    const t0 = performance.now();
    const p = pool
      .request({ method: 'GET', path, headers: target.headers })
      .then(async (res) => {
        await res.body.dump({ limit: Number.POSITIVE_INFINITY });
        if (res.statusCode >= 200 && res.statusCode < 300) {
          ok++;
          samples.record((performance.now() - t0) * 1000);
        } else failed++;
      })
      .catch(() => {
        failed++;
      });
    inflight.add(p);
    void p.finally(() => inflight.delete(p));
  };

  const start = performance.now();
  let lastTick = start;
  let lastSend = start;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const now = performance.now();
      if (opts.onTick && now - lastTick >= 200) {
        lastTick = now;
        opts.onTick();
      }
      const due = Math.min(total, Math.floor((now - start) / interval) + 1);
      while (sent < due) {
        const scheduled = start + sent * interval;
        maxLagUs = Math.max(maxLagUs, (now - scheduled) * 1000);
        sent++;
        fire();
      }
      lastSend = now;
      if (sent >= total) {
        clearInterval(timer);
        resolve();
      }
    }, 1);
  });
  await Promise.all([...inflight]);
  const seconds = (performance.now() - start) / 1000;
  await pool.close();
  const sendSeconds = (lastSend - start) / 1000;
  return { samples, sent, ok, failed, seconds, achievedRps: sendSeconds > 0 ? (sent - 1) / sendSeconds : Number.NaN, maxLagUs };
}

export interface BurstResult {
  /** Epoch ms (performance.timeOrigin + now) when the burst began. */
  startedAtMs: number;
  samples: Samples;
  ok: number;
  statuses: Record<string, number>;
  wallMs: number;
  /** Filled in by the caller when it measured CPU over the burst (ms, all processes). */
  cpuMs?: number;
}

/** Keep-alive pools towards each target, opened ahead so a burst measures requests, not TCP handshakes. */
export class BurstClient {
  private readonly pools: { pool: Pool; path: string; headers: Record<string, string> }[];

  constructor(targets: readonly Target[], private readonly connectionsPerTarget: number) {
    this.pools = targets.map((t) => {
      const u = new URL(t.url);
      return { pool: new Pool(u.origin, { connections: connectionsPerTarget, pipelining: 1, keepAliveTimeout: 60_000 }), path: u.pathname + u.search, headers: t.headers };
    });
  }

  /**
   * `total` requests at once, round-robin over the targets; latency from the burst's start to
   * each answer's last byte. Uses undici's `dispatch` with a bare handler rather than
   * `request()`: no Readable body and no promise per answer, so the load generator, which
   * shares the 2 cores with the servers, takes as little of them as it can during the burst.
   */
  fire(total: number, headers?: Record<string, string>): Promise<BurstResult> {
    const samples = new Samples();
    const statuses: Record<string, number> = {};
    let ok = 0;
    let left = total;
    const t0 = performance.now();
    const startedAtMs = performance.timeOrigin + t0;
    return new Promise((resolve) => {
      const done = () => {
        if (--left === 0) resolve({ startedAtMs, samples, ok, statuses, wallMs: performance.now() - t0 });
      };
      if (total === 0) return resolve({ startedAtMs, samples, ok, statuses, wallMs: 0 });
      for (let i = 0; i < total; i++) {
        const p = this.pools[i % this.pools.length];
        if (!p) {
          done();
          continue;
        }
        let status = 0;
        p.pool.dispatch(
          { method: 'GET', path: p.path, headers: headers ?? p.headers },
          {
            onRequestStart() {},
            onResponseStart(_c, statusCode) {
              status = statusCode;
            },
            onResponseData() {},
            onResponseEnd() {
              const key = String(status);
              statuses[key] = (statuses[key] ?? 0) + 1;
              if (status >= 200 && status < 300) ok++;
              samples.record((performance.now() - t0) * 1000);
              done();
            },
            onResponseError(_c, err) {
              const key = `error:${(err as { code?: string }).code ?? 'unknown'}`;
              statuses[key] = (statuses[key] ?? 0) + 1;
              done();
            },
          },
        );
      }
    });
  }

  get connections(): number {
    return this.connectionsPerTarget;
  }

  close(): Promise<void> {
    return Promise.all(this.pools.map((p) => p.pool.close())).then(() => undefined);
  }
}
