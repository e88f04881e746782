/**
 * The reference ceiling for any Node hop: a pass-through proxy on an undici pool with no
 * sessions, no framework and no body inspection. The client's Authorization header is
 * forwarded as it came.
 */
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
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
// With `{ms, ask: true}` the hold starts only once one Redis round trip (PING) has come back,
// and a second round trip follows it: what any BFF that must ask shared state before and after
// a refresh (lock, then store) waits for, with nothing else of cloakroom's work.
let holdMs = 0;
let holdAsks = false;
let held: (() => void)[] | null = null;
const redisUrl = process.env['BENCH_REDIS_URL'];
let redis: Socket | null = null;
const pings: (() => void)[] = [];
if (redisUrl) {
  const u = new URL(redisUrl);
  redis = connect(Number(u.port), u.hostname);
  redis.setNoDelay(true);
  redis.on('data', (chunk: Buffer) => {
    // Each "+PONG\r\n" answers the oldest ping; a reply may be split across chunks.
    for (const byte of chunk) if (byte === 10) pings.shift()?.();
  });
}
/** When the last hold began its wait (epoch ms, fractional): after the first round trip when asking. */
let lastHoldWaitFromMs = NaN;
const nowMs = () => performance.timeOrigin + performance.now();
const roundTrip = (then: () => void): void => {
  if (!redis) return then();
  pings.push(then);
  redis.write('PING\r\n');
};

const server = createServer((req, res) => {
  if (holdMs > 0 || held) {
    if (!held) {
      const list: (() => void)[] = (held = []);
      const ms = holdMs;
      const release = () => {
        held = null;
        for (const fn of list) fn();
      };
      const wait = () => {
        lastHoldWaitFromMs = nowMs();
        setTimeout(holdAsks ? () => roundTrip(release) : release, ms);
      };
      if (holdAsks) roundTrip(wait);
      else wait();
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
      holdAsks = args['ask'] === true;
      if (holdAsks && !redis) throw new Error('hold with ask needs BENCH_REDIS_URL');
      return holdMs;
    }
    if (op === 'lastHold') return { waitFromMs: lastHoldWaitFromMs };
    throw new Error(`unknown op ${op}`);
  },
  onShutdown: async () => {
    redis?.destroy();
    await pool.close();
  },
});
