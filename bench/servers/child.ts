/**
 * The IPC side every benchmarked server shares: it listens on a free loopback port, tells
 * the parent which one, and answers `stats` requests with its own CPU time and memory, so
 * the parent can charge CPU and RSS to exactly one process.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PerformanceObserver } from 'node:perf_hooks';
import type { ChildStats, ParentMessage } from '../lib/protocol.js';

export type ControlHandler = (op: string, args: Record<string, unknown>) => unknown;

let requests = 0;
let gcMs = 0;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) gcMs += entry.duration;
}).observe({ entryTypes: ['gc'] });

export function childStats(): ChildStats {
  const cpu = process.cpuUsage();
  const mem = process.memoryUsage();
  return { pid: process.pid, cpuUserUs: cpu.user, cpuSystemUs: cpu.system, rss: mem.rss, heapUsed: mem.heapUsed, heapTotal: mem.heapTotal, external: mem.external, arrayBuffers: mem.arrayBuffers, requests, gcMs };
}

/** Listens, reports `ready`, then serves stats/control messages until the parent goes away. */
export async function runChild(server: Server, opts: { control?: ControlHandler; onShutdown?: () => Promise<void> } = {}): Promise<void> {
  if (!process.send) throw new Error('bench servers are started by bench/run.js over IPC (child_process.fork)');
  // Benchmark connections stay open between rounds; Node's 5 s default would drop them mid-bench.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  // Counted by the server, not the load generator, which stops with requests still in flight.
  server.on('request', () => {
    requests++;
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  const stop = async (): Promise<void> => {
    server.closeAllConnections();
    server.close();
    await opts.onShutdown?.().catch(() => undefined);
    process.exit(0);
  };

  process.on('message', (raw: unknown) => {
    const msg = raw as ParentMessage;
    void (async () => {
      let reply: unknown;
      let error: string | undefined;
      try {
        if (msg.type === 'stats') reply = childStats();
        else if (msg.type === 'control' && msg.op === 'gc') {
          // Only with --expose-gc (the memory phase): a full collection, then what is left.
          (globalThis as { gc?: () => void }).gc?.();
          reply = childStats();
        } else if (msg.type === 'control') reply = await opts.control?.(msg.op, msg.args ?? {});
        else if (msg.type === 'shutdown') {
          await stop();
          return;
        }
      } catch (err) {
        error = err instanceof Error ? err.message : String(err);
      }
      process.send?.({ type: 'reply', id: msg.id, value: reply, ...(error !== undefined ? { error } : {}) });
    })();
  });
  // The parent died or closed the channel: never outlive it.
  process.on('disconnect', () => void stop());
  process.send({ type: 'ready', port, pid: process.pid });
}
