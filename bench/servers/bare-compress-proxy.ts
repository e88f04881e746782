/**
 * The ceiling for a Node hop that compresses: a pass-through proxy on an undici pool that
 * asks upstream for identity and compresses JSON and text of 1 KiB or more for the browser
 * with exactly cloakroom's zlib settings (src/proxy/encoding.ts's encoders), and nothing
 * else: no sessions, no cleaning, no scrubbing. The bench's `wire` phase compares cloakroom
 * with it (bench/phases/wire.ts).
 */
import { createServer, type IncomingHttpHeaders } from 'node:http';
import { Pool, type Dispatcher } from 'undici';
import { bodyKind, chooseBrowserCoding, COMPRESS_MIN_BYTES, createEncoder, isCompressible } from '../../src/proxy/encoding.js';
import { runChild } from './child.js';

const upstreamUrl = process.env['BENCH_UPSTREAM_URL'];
if (!upstreamUrl) throw new Error('BENCH_UPSTREAM_URL is required');
const pool = new Pool(upstreamUrl, { connections: 256, pipelining: 1, keepAliveTimeout: 60_000 });
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host']);

function forwardable(h: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const name in h) {
    const v = h[name];
    if (v !== undefined && !HOP.has(name)) out[name] = v;
  }
  return out;
}

const server = createServer((req, res) => {
  const headers = forwardable(req.headers);
  headers['accept-encoding'] = 'identity';
  const coding = chooseBrowserCoding(req.headers['accept-encoding']);
  pool.request({ method: (req.method ?? 'GET') as Dispatcher.HttpMethod, path: req.url ?? '/', headers, body: null }, (err, data) => {
    if (err || !data) {
      res.writeHead(502, { 'content-type': 'text/plain' });
      res.end('bad gateway');
      return;
    }
    const out = forwardable(data.headers);
    const length = Number(data.headers['content-length'] ?? NaN);
    data.body.on('error', () => res.destroy());
    if (coding === 'identity' || !isCompressible(bodyKind(data.headers['content-type'])) || length < COMPRESS_MIN_BYTES) {
      res.writeHead(data.statusCode, out);
      data.body.pipe(res);
      return;
    }
    delete out['content-length'];
    out['content-encoding'] = coding;
    out.vary = 'Accept-Encoding';
    res.writeHead(data.statusCode, out);
    data.body.pipe(createEncoder(coding)).pipe(res);
  });
});

await runChild(server, { onShutdown: () => pool.close() });
