/**
 * Bearer-protected routes no seed has, each shaped for one kind of proxy test: an echo of
 * what arrived, sized and streamed bodies, slow or broken answers, any status code.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
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
  return false;
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
