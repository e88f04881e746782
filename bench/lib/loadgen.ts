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
import { connect, type Socket } from 'node:net';
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
  cpuByProcess?: Record<string, number>;
  gcByProcess?: Record<string, number>;
  redisByCommand?: Record<string, number>;
}

/**
 * The burst client: raw keep-alive sockets towards each target, opened ahead so a burst
 * measures requests, not TCP handshakes. Each request is one pre-built buffer written to
 * its own connection; answers are parsed just far enough to know the status and where the
 * body ends (Content-Length or chunked). On a 2-core machine the load generator shares the
 * cores with the servers it measures, so it should cost as little as wrk does: an HTTP client
 * library (undici's Pool) took about twice the CPU per burst and showed up in every figure.
 */
export class BurstClient {
  private readonly targets: { host: string; port: number; head: string; headers: Record<string, string>; sockets: BurstSocket[] }[];

  constructor(targets: readonly Target[], private readonly connectionsPerTarget: number) {
    this.targets = targets.map((t) => {
      const u = new URL(t.url);
      return { host: u.hostname, port: Number(u.port), head: `GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\n`, headers: t.headers, sockets: [] };
    });
  }

  /** `total` requests at once, round-robin over the targets; latency from the burst's start to each answer's last byte. */
  async fire(total: number, headers?: Record<string, string>): Promise<BurstResult> {
    const perTarget = this.targets.map((_, i) => Math.floor(total / this.targets.length) + (i < total % this.targets.length ? 1 : 0));
    await Promise.all(this.targets.map((t, i) => ensureSockets(t, Math.min(perTarget[i] ?? 0, this.connectionsPerTarget))));
    const samples = new Samples();
    const statuses: Record<string, number> = {};
    let ok = 0;
    let left = total;
    const t0 = performance.now();
    const startedAtMs = performance.timeOrigin + t0;
    return new Promise((resolve) => {
      const finished = (status: number | string) => {
        const key = String(status);
        statuses[key] = (statuses[key] ?? 0) + 1;
        if (typeof status === 'number') {
          if (status >= 200 && status < 300) ok++;
          samples.record((performance.now() - t0) * 1000);
        }
        if (--left === 0) resolve({ startedAtMs, samples, ok, statuses, wallMs: performance.now() - t0 });
      };
      if (total === 0) return resolve({ startedAtMs, samples, ok, statuses, wallMs: 0 });
      const used = this.targets.map(() => 0);
      for (let i = 0; i < total; i++) {
        const ti = i % this.targets.length;
        const t = this.targets[ti];
        const sock = t?.sockets[(used[ti] = (used[ti] ?? 0) + 1) - 1];
        if (!t || !sock) {
          finished('error:no-connection');
          continue;
        }
        sock.send(requestBytes(t.head, headers ?? t.headers), finished);
      }
    });
  }

  get connections(): number {
    return this.connectionsPerTarget;
  }

  async close(): Promise<void> {
    for (const t of this.targets) for (const s of t.sockets.splice(0)) s.close();
  }
}

const requestCache = new Map<string, Buffer>();
function requestBytes(head: string, headers: Record<string, string>): Buffer {
  const key = head + JSON.stringify(headers);
  let buf = requestCache.get(key);
  if (!buf) {
    buf = Buffer.from(`${head}${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`, 'latin1');
    if (requestCache.size > 1000) requestCache.clear();
    requestCache.set(key, buf);
  }
  return buf;
}

async function ensureSockets(t: { host: string; port: number; sockets: BurstSocket[] }, n: number): Promise<void> {
  t.sockets = t.sockets.filter((s) => s.alive);
  const opening: Promise<BurstSocket>[] = [];
  for (let i = t.sockets.length; i < n; i++) opening.push(BurstSocket.open(t.host, t.port));
  t.sockets.push(...(await Promise.all(opening)));
}

/** One keep-alive connection with at most one request in flight, and the least parsing that tells where an answer ends. */
class BurstSocket {
  alive = true;
  private pending: ((status: number | string) => void) | null = null;
  private buf: Buffer = Buffer.alloc(0);
  private status = 0;
  /** Body bytes still expected (Content-Length), or -1 while reading chunked framing, or -2 before the head is complete. */
  private remaining = -2;

  private constructor(private readonly socket: Socket) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    const gone = (why: string) => {
      this.alive = false;
      const p = this.pending;
      this.pending = null;
      p?.(`error:${why}`);
    };
    socket.on('error', (err: NodeJS.ErrnoException) => gone(err.code ?? 'socket'));
    socket.on('close', () => gone('closed'));
  }

  static open(host: string, port: number): Promise<BurstSocket> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host, port }, () => {
        socket.off('error', reject);
        resolve(new BurstSocket(socket));
      });
      socket.once('error', reject);
    });
  }

  send(bytes: Buffer, done: (status: number | string) => void): void {
    this.pending = done;
    this.buf = Buffer.alloc(0);
    this.remaining = -2;
    this.socket.write(bytes);
  }

  close(): void {
    this.pending = null;
    this.socket.destroy();
  }

  private complete(): void {
    const p = this.pending;
    this.pending = null;
    this.remaining = -2;
    this.buf = Buffer.alloc(0);
    p?.(this.status);
  }

  private onData(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    if (this.remaining === -2) {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end === -1) return;
      const head = this.buf.subarray(0, end).toString('latin1');
      this.buf = this.buf.subarray(end + 4);
      this.status = Number(head.slice(9, 12));
      const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
      this.remaining = length ? Number(length[1]) : /\r\ntransfer-encoding:\s*chunked/i.test(head) ? -1 : 0;
    }
    if (this.remaining >= 0) {
      if (this.buf.length < this.remaining) return;
      this.complete();
      return;
    }
    // Chunked: skip `size\r\n data \r\n` pieces until the last (size 0) and its empty trailer.
    for (;;) {
      const line = this.buf.indexOf('\r\n');
      if (line === -1) return;
      const size = Number.parseInt(this.buf.subarray(0, line).toString('latin1'), 16);
      if (size === 0) {
        if (this.buf.indexOf('\r\n\r\n', line) === -1) return;
        this.complete();
        return;
      }
      if (this.buf.length < line + 2 + size + 2) return;
      this.buf = this.buf.subarray(line + 2 + size + 2);
    }
  }
}
