/**
 * Bearer-protected routes no seed has, each shaped for one kind of proxy test: an echo of
 * what arrived, sized and streamed bodies, slow or broken answers, any status code.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import { methodNotAllowed, sendJson, sendText } from './http.js';
import type { TestHooks } from './test-hooks.js';

const MAX_DATA_SIZE = 64 * 1024 * 1024;

export interface TestRequest {
  req: IncomingMessage;
  res: ServerResponse;
  method: string;
  rawUrl: string;
  path: string;
  query: URLSearchParams;
  body: Buffer;
}

/** Answers `r` when its path is one of these routes; false when it is not. */
export async function serveTestEndpoint(hooks: TestHooks, r: TestRequest): Promise<boolean> {
  const { req, res, method, rawUrl, path, query, body } = r;
  if (path === '/api/echo' || path.startsWith('/api/echo/')) {
    sendJson(res, 200, {
      method,
      url: rawUrl,
      headers: Object.fromEntries(Object.entries(req.headers).filter((e): e is [string, string | string[]] => e[1] !== undefined)),
      body: body.toString('utf8'),
    }, { 'Set-Cookie': 'upstream=1; Path=/', 'X-Upstream': 'echo' });
    return true;
  }
  if (path === '/api/data') {
    if (method !== 'GET') {
      methodNotAllowed(res, method);
      return true;
    }
    const size = Math.min(Math.max(Number.parseInt(query.get('size') ?? '1024', 10) || 0, 0), MAX_DATA_SIZE);
    const head = `{"size":${size},"data":"`;
    const tail = '"}';
    const text = head + 'x'.repeat(Math.max(0, size - head.length - tail.length)) + tail;
    sendText(res, 200, text, 'application/json; charset=utf-8');
    return true;
  }
  if (path === '/api/slow-headers') {
    await hooks.sleep(Number.parseInt(query.get('ms') ?? '1000', 10) || 0);
    sendJson(res, 200, { ok: true, slow: 'headers' });
    return true;
  }
  if (path === '/api/slow-body') {
    res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8' });
    res.write('{"ok":true,');
    await hooks.sleep(Number.parseInt(query.get('ms') ?? '1000', 10) || 0);
    if (!res.destroyed) res.end('"slow":"body"}');
    return true;
  }
  if (path === '/api/reset-mid-body') {
    // A Content-Length the body never reaches, so the client cannot mistake it for a complete answer.
    res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': '4096' });
    res.write('{"partial":"');
    await hooks.sleep(20);
    req.socket.destroy();
    return true;
  }
  const status = /^\/api\/status\/(\d{3})$/.exec(path);
  if (status?.[1] !== undefined) {
    const code = Number(status[1]);
    if (code < 200 || code > 599) {
      sendJson(res, 400, { Message: 'status must be 200-599' });
    } else if (code === 204 || code === 205 || code === 304) {
      res.writeHead(code);
      res.end();
    } else {
      sendJson(res, code, { status: code });
    }
    return true;
  }
  if (path === '/api/informational') {
    // 102 Processing and 103 Early Hints before the answer, as some upstreams and CDNs send.
    res.writeProcessing();
    res.writeEarlyHints({ link: '</app.css>; rel=preload; as=style' });
    sendJson(res, 200, { ok: true, after: 'informational' });
    return true;
  }
  if (path === '/api/download') {
    await download(hooks, res, query);
    return true;
  }
  if (path === '/api/chunked') {
    await chunked(res, query);
    return true;
  }
  if (path.startsWith('/api/shape/')) return shaped(hooks, r, path.slice('/api/shape/'.length));
  return false;
}

const bearerOf = (req: IncomingMessage) => (req.headers.authorization ?? '').replace(/^Bearer /, '');

/** Every character as `\u00XX`: how a serializer that escapes everything would write it. */
const uEscaped = (text: string) => Array.from(text, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join('');

/**
 * `/api/shape/<shape>`: answers that hand the request's own bearer back, each in one of the
 * shapes a pentest found it leaking through a proxy: a content type, a coding, a size, an
 * escape, a header, a partial answer, a stream. `?coding=gzip|br|deflate` compresses any
 * of the whole-body shapes regardless of what was asked (upstreams do).
 */
async function shaped(hooks: TestHooks, r: TestRequest, shape: string): Promise<boolean> {
  const { req, res, query } = r;
  const bearer = bearerOf(req);
  const profile = (pad: number) => `{"Id":7,"FullName":"Demo","AccessToken":"${bearer}","Note":"${'n'.repeat(Math.max(0, pad))}"}`;
  const whole = (status: number, type: string | null, text: string | Buffer, extra: Record<string, string> = {}) => {
    let body = Buffer.isBuffer(text) ? text : Buffer.from(text);
    const coding = query.get('coding');
    const headers: Record<string, string> = { ...extra };
    if (type !== null) headers['Content-Type'] = type;
    if (coding === 'gzip') body = gzipSync(body);
    else if (coding === 'br') body = brotliCompressSync(body);
    else if (coding === 'deflate') body = deflateSync(body);
    if (coding) headers['Content-Encoding'] = coding;
    headers['Content-Length'] = String(body.length);
    res.writeHead(status, headers);
    res.end(body);
  };
  const pad = Number.parseInt(query.get('pad') ?? '0', 10) || 0;
  switch (shape) {
    case 'json':
      whole(200, 'application/json; charset=utf-8', profile(pad));
      return true;
    case 'escaped':
      // The bearer with every character \u-escaped, under an ordinary name and under an escaped token name.
      whole(200, 'application/json', `{"Id":7,"echo":"${uEscaped(bearer)}","\\u0041ccessToken":"${uEscaped(bearer)}","Note":"${'n'.repeat(pad)}"}`);
      return true;
    case 'negotiate': {
      // Content negotiation, as ASP.NET Web API does it: XML for a browser that asks for it.
      const accept = String(req.headers.accept ?? '');
      if (accept.includes('xml')) whole(200, 'application/xml; charset=utf-8', `<?xml version="1.0"?><User><Id>7</Id><AccessToken>${bearer}</AccessToken><Note>${'n'.repeat(pad)}</Note></User>`);
      else whole(200, 'application/json; charset=utf-8', profile(pad));
      return true;
    }
    case 'typed': {
      // `?type=` text/html, text/plain, none, ndjson, jsonp: a debug page or feed echoing the bearer.
      const type = query.get('type') ?? 'text/plain';
      if (type === 'ndjson') whole(200, 'application/x-ndjson', `{"n":1}\n{"debug":"Bearer ${bearer}"}\n${profile(pad)}\n`);
      else if (type === 'jsonp') whole(200, 'application/javascript', `callback(${profile(pad)});`);
      else if (type === 'none') whole(200, null, `Authorization: Bearer ${bearer}\n${'n'.repeat(pad)}`);
      else if (type === 'text/html') whole(200, 'text/html; charset=utf-8', `<html><body><pre>Authorization: Bearer ${bearer}</pre>${'<p>n</p>'.repeat(pad)}</body></html>`);
      else whole(200, `${type}; charset=utf-8`, `Authorization: Bearer ${bearer}\n${'n'.repeat(pad)}`);
      return true;
    }
    case 'header':
      // The bearer in an ordinary response header and in a redirect target.
      whole(302, 'application/json', '{"moved":true}', { 'X-Debug-Authorization': `Bearer ${bearer}`, Location: `/api/next?access_token=${encodeURIComponent(bearer)}`, 'X-Kept': 'yes' });
      return true;
    case 'range':
      ranged(res, req, Buffer.from(profile(pad)));
      return true;
    case 'large':
      await large(res, bearer, query);
      return true;
    case 'slow': {
      // `?first=` bytes of JSON at once, then nothing for `?ms=`, then the rest: is the start streamed on?
      const first = Number.parseInt(query.get('first') ?? '262144', 10);
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.write(`{"head":"${'h'.repeat(first)}",`);
      await hooks.sleep(Number.parseInt(query.get('ms') ?? '1000', 10) || 0);
      if (!res.destroyed) res.end(`"AccessToken":"${bearer}","tail":"${'t'.repeat(first)}"}`);
      return true;
    }
    case 'sse':
      await events(hooks, res, bearer, query);
      return true;
    default:
      return false;
  }
}

/**
 * A JSON answer of `?size=` bytes, written in 64 KiB pieces of unknown total length,
 * with the bearer as a token field at the start and, past `?size=`, at the very end.
 */
async function large(res: ServerResponse, bearer: string, query: URLSearchParams): Promise<void> {
  const size = Math.min(Number.parseInt(query.get('size') ?? '0', 10) || 0, MAX_DATA_SIZE);
  res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8' });
  const item = `{"id":1,"text":"${'y'.repeat(200)}"},`;
  const piece = item.repeat(Math.ceil(65536 / item.length));
  res.write(`{"AccessToken":"${bearer}","items":[`);
  for (let sent = 0; sent < size && !res.destroyed; sent += piece.length) {
    if (!res.write(piece)) await new Promise<void>((resolve) => { res.once('drain', resolve); res.once('close', resolve); });
  }
  if (!res.destroyed) res.end(`1],"refresh_token":"${bearer}","echo":"${bearer}"}`);
}

/** Honours `Range` the way a file server does: one range as a 206 piece, several as multipart/byteranges. */
function ranged(res: ServerResponse, req: IncomingMessage, body: Buffer): void {
  const header = req.headers.range;
  const spec = header?.startsWith('bytes=') ? header.slice(6).split(',') : [];
  const ranges = spec.flatMap((part) => {
    const m = /^\s*(\d*)-(\d*)\s*$/.exec(part);
    if (!m) return [];
    const start = m[1] === '' ? body.length - Number(m[2]) : Number(m[1]);
    const end = m[1] === '' || m[2] === '' ? body.length - 1 : Math.min(Number(m[2]), body.length - 1);
    return start <= end ? [[start, end] as const] : [];
  });
  const common = { 'Accept-Ranges': 'bytes', ETag: '"profile-v1"' };
  if (ranges.length === 0) {
    res.writeHead(200, { ...common, 'Content-Type': 'application/json', 'Content-Length': String(body.length) });
    res.end(body);
    return;
  }
  if (ranges.length === 1) {
    const [start, end] = ranges[0] as readonly [number, number];
    const piece = body.subarray(start, end + 1);
    res.writeHead(206, { ...common, 'Content-Type': 'application/json', 'Content-Range': `bytes ${start}-${end}/${body.length}`, 'Content-Length': String(piece.length) });
    res.end(piece);
    return;
  }
  const boundary = 'fake-upstream-boundary';
  const parts = ranges.map(([start, end]) => Buffer.concat([Buffer.from(`--${boundary}\r\nContent-Type: application/json\r\nContent-Range: bytes ${start}-${end}/${body.length}\r\n\r\n`), body.subarray(start, end + 1), Buffer.from('\r\n')]));
  const all = Buffer.concat([...parts, Buffer.from(`--${boundary}--\r\n`)]);
  res.writeHead(206, { ...common, 'Content-Type': `multipart/byteranges; boundary=${boundary}`, 'Content-Length': String(all.length) });
  res.end(all);
}

/**
 * Server-Sent Events: `?events=` events (the second carries the bearer), `?gap=` ms apart,
 * then the stream stays open `?hold=` ms more before a last event and the end.
 */
async function events(hooks: TestHooks, res: ServerResponse, bearer: string, query: URLSearchParams): Promise<void> {
  const count = Number.parseInt(query.get('events') ?? '3', 10) || 0;
  const gap = Number.parseInt(query.get('gap') ?? '300', 10) || 0;
  const hold = Number.parseInt(query.get('hold') ?? '0', 10) || 0;
  res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
  for (let i = 1; i <= count && !res.destroyed; i++) {
    if (i > 1) await hooks.sleep(gap);
    const data = i === 2 ? `token ${bearer}` : `event ${i} at ${Date.now()} ${'p'.repeat(600)}`;
    res.write(`id: ${i}\nevent: tick\ndata: ${data}\n\n`);
  }
  if (hold > 0) await hooks.sleep(hold);
  if (!res.destroyed) res.end('id: last\ndata: bye\n\n');
}

/** A binary file of `?size=` bytes in 64 KiB pieces, written only as fast as the reader takes them. */
async function download(hooks: TestHooks, res: ServerResponse, query: URLSearchParams): Promise<void> {
  const size = Math.min(Math.max(Number.parseInt(query.get('size') ?? '0', 10) || 0, 0), 256 * 1024 * 1024);
  const progress = { size, sent: 0, finished: false, aborted: false };
  hooks.downloads.push(progress);
  res.on('close', () => {
    if (!progress.finished) progress.aborted = true;
  });
  res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(size) });
  const piece = Buffer.alloc(64 * 1024, 0x61);
  while (progress.sent < size && !res.destroyed) {
    const n = Math.min(piece.length, size - progress.sent);
    progress.sent += n;
    if (!res.write(n === piece.length ? piece : piece.subarray(0, n))) {
      await new Promise<void>((resolve) => {
        res.once('drain', resolve);
        res.once('close', resolve);
      });
    }
  }
  if (res.destroyed) return;
  progress.finished = true;
  res.end();
}

/** `?items=N` makes a long answer of unknown length (N pieces of 1 KiB), to test size limits. */
async function chunked(res: ServerResponse, query: URLSearchParams): Promise<void> {
  res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8' });
  const items = Math.min(Number(query.get('items') ?? 0) || 0, 100_000);
  const filler = `"${'x'.repeat(1022)}",`;
  const pieces = items > 0
    ? ['{"chunks":[', ...Array.from({ length: items }, () => filler), '1],"AccessToken":"not-a-real-token","done":true}']
    : ['{"chunks":[', '1,', '2,', '3', '],"done":true}'];
  for (const piece of pieces) {
    if (res.destroyed) return;
    res.write(piece);
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  res.end();
}
