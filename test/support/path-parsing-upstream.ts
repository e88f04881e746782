import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';

/**
 * Upstreams that route the way common servers do, not on the raw path as the fake upstream
 * does: each serves SECRET on the credential paths however it reads them. Through cloakroom,
 * no spelling of a path may ever get that answer (test/path-parsing.test.ts).
 */
export const SECRET = 'SECRET-credential-endpoint-reached';

/** Credential paths of every mode: the four Nexudus ones and `json` mode's defaults. */
export const SECRET_PATHS = ['/api/token', '/api/sys/users/token/refresh', '/api/sys/users/exchange', '/api/auth/media/customer', '/api/login', '/api/login/refresh-token'];

export interface PathParsingUpstream {
  readonly url: string;
  /** Raw request targets that were answered with the secret. */
  readonly secretHits: string[];
  close(): Promise<void>;
}

async function listen(server: Server, secretHits: string[]): Promise<PathParsingUpstream> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    secretHits,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * A real Express 5 app, as many upstream APIs are: case-insensitive, trailing slash optional,
 * and it routes on `url.parse`'s pathname, which drops a fragment (`/api/token#` is `/api/token`).
 */
export function startExpressUpstream(): Promise<PathParsingUpstream> {
  const secretHits: string[] = [];
  const app = express();
  app.all(SECRET_PATHS, (req, res) => {
    secretHits.push(req.originalUrl);
    res.json({ secret: SECRET });
  });
  // The request headers as received, with the headers an upstream may set that must not reach the browser.
  app.all('/api/headers', (req, res) => {
    res.set({ 'Access-Control-Allow-Origin': '*', 'Access-Control-Allow-Credentials': 'true', 'Strict-Transport-Security': 'max-age=63072000', 'X-Kept': 'yes' });
    res.json({ headers: req.headers });
  });
  app.use((req, res) => {
    res.json({ route: 'other', url: req.originalUrl });
  });
  return listen(createServer(app), secretHits);
}

/**
 * What a front server or framework may make of a path before routing (nginx's normalisation
 * and the habits of IIS and Windows servers, together): drop the fragment and the query,
 * decode until stable, end the path at a decoded `?`, `#` or NUL (a server that decodes and
 * parses again, or reads a C string), treat `\` as `/`, drop `;params`, trim trailing spaces
 * and tabs, read a segment of two or more dots as `..`, trim other trailing dots, merge
 * slashes, resolve `.` and `..`, and compare case-insensitively. null: undecodable (400).
 */
export function normalisePath(rawTarget: string): string | null {
  let path = rawTarget;
  for (const end of ['#', '?']) {
    const at = path.indexOf(end);
    if (at !== -1) path = path.slice(0, at);
  }
  for (let i = 0; i < 8; i += 1) {
    let next: string;
    try {
      next = decodeURIComponent(path);
    } catch {
      return null;
    }
    const end = next.search(/[?#\u0000]/);
    if (end !== -1) next = next.slice(0, end);
    if (next === path) break;
    path = next;
  }
  const out: string[] = [];
  for (const raw of path.replace(/\\/g, '/').split('/')) {
    let name = raw.split(';')[0] ?? '';
    name = name.replace(/[ \t]+$/, '');
    if (/^\.{2,}$/.test(name)) name = '..';
    else if (name !== '.') name = name.replace(/\.+$/, '');
    if (name === '' || name === '.') continue;
    if (name === '..') out.pop();
    else out.push(name.toLowerCase());
  }
  return '/' + out.join('/');
}

export function startNormalisingUpstream(): Promise<PathParsingUpstream> {
  const secretHits: string[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const target = req.url ?? '/';
    const path = normalisePath(target);
    const body = path === null ? { error: 'bad path' } : SECRET_PATHS.includes(path) ? { secret: SECRET } : { route: 'other', path };
    if (path !== null && SECRET_PATHS.includes(path)) secretHits.push(target);
    res.writeHead(path === null ? 400 : 200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
    req.resume();
  });
  return listen(server, secretHits);
}
