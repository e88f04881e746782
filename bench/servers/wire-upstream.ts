/**
 * The upstream of the bench's `wire` phase (bench/phases/wire.ts): large JSON answers in
 * front of the bench upstream, to which every other request (sign-in, tokens) is passed on.
 *
 * - `GET /api/wire/64k`: 64 KB of varied API-like JSON (seeded), with a length, no token field:
 *   what compressing costs in life, not on a repetitive body.
 * - `GET /api/wire/20m`: 20 MB of JSON of unknown length (chunked), with the request's own
 *   bearer as a token field and echoed in text about every MiB, written with backpressure.
 */
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import { Pool, type Dispatcher } from 'undici';
import { variedJson } from '../lib/body.js';
import { runChild } from './child.js';

const upstreamUrl = process.env['BENCH_UPSTREAM_URL'];
if (!upstreamUrl) throw new Error('BENCH_UPSTREAM_URL is required');
const pool = new Pool(upstreamUrl, { connections: 64, keepAliveTimeout: 60_000 });


const BODY_64K = variedJson(64 * 1024);
const HEADERS_64K = { 'content-type': 'application/json; charset=utf-8', 'content-length': String(BODY_64K.length) };
/** About 1 MiB of items with no token in them; 20 of them, each followed by a token-bearing item. */
const MIB_OF_ITEMS = variedJson(1 << 20).subarray(1, -1);
export const LARGE_BYTES = 20 * MIB_OF_ITEMS.length;
const PIECE = 64 * 1024;

async function large(res: ServerResponse, bearer: string): Promise<void> {
  res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' });
  const write = async (b: Buffer) => {
    if (!res.write(b)) await new Promise<void>((resolve) => { res.once('drain', resolve); res.once('close', resolve); });
  };
  await write(Buffer.from('['));
  for (let i = 0; i < 20 && !res.destroyed; i++) {
    for (let at = 0; at < MIB_OF_ITEMS.length && !res.destroyed; at += PIECE) await write(MIB_OF_ITEMS.subarray(at, at + PIECE));
    await write(Buffer.from(`,{"id":${i},"AccessToken":"${bearer}","refresh_token":"${bearer}","note":"Bearer ${bearer}"}${i < 19 ? ',' : ''}`));
  }
  if (!res.destroyed) res.end(']');
}

function passOn(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined && !['connection', 'keep-alive', 'transfer-encoding', 'host'].includes(k)) out[k] = v;
  return out;
}

const server = createServer((req, res) => {
  if (req.url === '/api/wire/64k') {
    res.writeHead(200, HEADERS_64K);
    res.end(BODY_64K);
    return;
  }
  if (req.url === '/api/wire/20m') {
    void large(res, (req.headers.authorization ?? '').replace(/^Bearer /, ''));
    return;
  }
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
  pool.request({ method: (req.method ?? 'GET') as Dispatcher.HttpMethod, path: req.url ?? '/', headers: passOn(req.headers), body: hasBody ? req : null }, (err, data) => {
    if (err || !data) {
      res.writeHead(502);
      res.end();
      return;
    }
    res.writeHead(data.statusCode, passOn(data.headers));
    data.body.pipe(res);
  });
});

await runChild(server, {
  control: (op) => {
    if (op === 'sizes') return { small: BODY_64K.length, large: LARGE_BYTES };
    throw new Error(`unknown op ${op}`);
  },
  onShutdown: () => pool.close(),
});
