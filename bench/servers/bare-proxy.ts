/**
 * The reference ceiling for any Node hop: a pass-through proxy on an undici pool with no
 * sessions, no framework and no body inspection. The client's Authorization header is
 * forwarded as it came.
 */
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { Pool, type Dispatcher } from 'undici';
import { runChild } from './child.js';

const upstreamUrl = process.env['BENCH_UPSTREAM_URL'];
if (!upstreamUrl) throw new Error('BENCH_UPSTREAM_URL is required');

const pool = new Pool(upstreamUrl, { connections: 256, pipelining: 1, keepAliveTimeout: 60_000 });
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host']);

function forwardable(h: IncomingHttpHeaders | Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const name in h) {
    const v = h[name];
    if (v !== undefined && !HOP.has(name)) out[name] = v;
  }
  return out;
}

// The storm's floor (bench `control('hold', {ms})`): the next burst is held from its first
// request for `ms`, then every held request goes upstream at once, as cloakroom's requests
// do when they wait for a refresh, but with no refresh and no sessions.
let holdMs = 0;
let held: (() => void)[] | null = null;

const server = createServer((req, res) => {
  if (holdMs > 0 || held) {
    if (!held) {
      held = [];
      setTimeout(() => {
        const go = held ?? [];
        held = null;
        for (const fn of go) fn();
      }, holdMs);
      holdMs = 0;
    }
    held.push(() => forward(req, res));
    return;
  }
  forward(req, res);
});

function forward(req: IncomingMessage, res: ServerResponse): void {
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
  pool.request(
    { method: (req.method ?? 'GET') as Dispatcher.HttpMethod, path: req.url ?? '/', headers: forwardable(req.headers), body: hasBody ? req : null },
    (err, data) => {
      if (err || !data) {
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end('bad gateway');
        return;
      }
      res.writeHead(data.statusCode, forwardable(data.headers));
      // pipe(), not stream.pipeline(): pipeline's per-call AbortController costs ~5 us a request.
      data.body.on('error', () => res.destroy());
      data.body.pipe(res);
    },
  );
}

await runChild(server, {
  control: (op, args) => {
    if (op === 'hold') {
      holdMs = Number(args['ms'] ?? 0);
      return holdMs;
    }
    throw new Error(`unknown op ${op}`);
  },
  onShutdown: () => pool.close(),
});
