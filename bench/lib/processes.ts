/**
 * Parent side of the bench: redis-server and the server children (one process each, so
 * CPU and memory are charged to exactly one server), plus /proc readings.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ChildMessage, ChildStats, ParentMessage } from './protocol.js';

export interface ServerChild {
  readonly name: string;
  readonly pid: number;
  readonly port: number;
  readonly url: string;
  stats(): Promise<ChildStats>;
  control<T = unknown>(op: string, args?: Record<string, unknown>): Promise<T>;
  /** The last lines the child wrote (stdout and stderr), for error reports. */
  output(): string[];
  stop(): Promise<void>;
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

export async function startServer(
  name: string,
  script: 'upstream' | 'bare-proxy' | 'cloakroom' | 'reference-bff' | 'wire-upstream' | 'bare-compress-proxy',
  env: Record<string, string>,
  execArgv: string[] = [],
): Promise<ServerChild> {
  const path = fileURLToPath(new URL(`../servers/${script}.js`, import.meta.url));
  const child = fork(path, [], {
    // Only what the child needs: no developer .env or REDIS_URL leaks into a measurement.
    env: { PATH: process.env['PATH'] ?? '', NODE_ENV: 'production', ...env },
    execArgv,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  const lines: string[] = [];
  const keep = (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) lines.push(line);
    if (lines.length > 200) lines.splice(0, lines.length - 200);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);

  let nextId = 1;
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  const ready = new Promise<{ port: number; pid: number }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start within 20 s:\n${lines.join('\n')}`)), 20_000);
    child.on('message', (raw: unknown) => {
      const msg = raw as ChildMessage;
      if (msg.type === 'ready') {
        clearTimeout(timer);
        resolve({ port: msg.port, pid: msg.pid });
      } else if (msg.type === 'reply') {
        const p = pending.get(msg.id);
        pending.delete(msg.id);
        if (msg.error !== undefined) p?.reject(new Error(`${name}: ${msg.error}`));
        else p?.resolve(msg.value);
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      const err = new Error(`${name} exited (${signal ?? code}):\n${lines.slice(-30).join('\n')}`);
      reject(err);
      for (const p of pending.values()) p.reject(err);
      pending.clear();
    });
  });
  const { port, pid } = await ready;

  const ask = <T>(msg: DistributiveOmit<ParentMessage, 'id'>): Promise<T> => {
    const id = nextId++;
    return new Promise<T>((resolve, reject) => {
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      child.send({ ...msg, id });
    });
  };

  return {
    name,
    pid,
    port,
    url: `http://127.0.0.1:${port}`,
    stats: () => ask<ChildStats>({ type: 'stats' }),
    control: <T>(op: string, args?: Record<string, unknown>) => ask<T>({ type: 'control', op, ...(args ? { args } : {}) }),
    output: () => [...lines],
    stop: () => stopChild(child),
  };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  if (child.connected) child.send({ type: 'shutdown', id: 0 });
  else child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/** VmRSS and VmHWM (peak RSS) in bytes from /proc; null off Linux. */
export function procMemory(pid: number): { rss: number; hwm: number } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    return null;
  }
}

export { startRedisServer as startRedis, type RedisServer } from '../../scripts/redis-server.js';
