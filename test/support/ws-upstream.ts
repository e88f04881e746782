/**
 * A WebSocket-speaking front for the fake upstream: cloakroom's UPSTREAM_URL points here, plain
 * HTTP is passed to the fake upstream unchanged (login, refresh, /api/*), and WebSocket
 * handshakes on /api/ws/* are answered here, with the bearer checked by the fake upstream
 * itself (GET /api/auth/me), so a revoked or expired token is refused as upstream would.
 *
 * - `/api/ws/echo...`: echoes every message as it came (text stays text, binary binary).
 * - `/api/ws/refuse/<status>`: refuses the handshake with that status.
 * - `?protocol=none`: accepts without choosing a subprotocol; else the first one offered.
 */
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';

export interface WsHandshake {
  url: string;
  headers: IncomingHttpHeaders;
}

export interface WsUpstream {
  readonly url: string;
  readonly port: number;
  /** Every WebSocket handshake that reached us, accepted or not. */
  readonly handshakes: WsHandshake[];
  /** The upstream ends of accepted sockets, newest last. */
  readonly sockets: WebSocket[];
  /** Resolves with the next accepted socket. */
  nextSocket(): Promise<WebSocket>;
  close(): Promise<void>;
}

function refuse(socket: Duplex, status: number, text: string): void {
  const body = JSON.stringify({ Message: text });
  socket.end(`HTTP/1.1 ${status} Refused\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}

function bearerAccepted(fakePort: number, authorization: string | undefined): Promise<boolean> {
  if (!authorization) return Promise.resolve(false);
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port: fakePort, path: '/api/auth/me', headers: { authorization } }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.end();
  });
}

export async function startWsUpstream(fakePort: number, opts: { checkBearer?: boolean; keepSockets?: boolean } = {}): Promise<WsUpstream> {
  const checkBearer = opts.checkBearer ?? true;
  const handshakes: WsHandshake[] = [];
  const sockets: WebSocket[] = [];
  let waiting: ((ws: WebSocket) => void)[] = [];
  const conns = new Set<Socket>();
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: 64 << 20,
    handleProtocols: (offered, req) => (new URL(req.url ?? '/', 'http://x').searchParams.get('protocol') === 'none' ? false : ([...offered][0] ?? false)),
  });

  const server: Server = createServer((req, res) => {
    // Plain HTTP: to the fake upstream as it is.
    const out = request({ host: '127.0.0.1', port: fakePort, method: req.method, path: req.url, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    out.on('error', () => res.destroy());
    req.pipe(out);
  });
  server.on('connection', (s: Socket) => {
    conns.add(s);
    s.on('error', () => undefined);
    s.once('close', () => conns.delete(s));
  });
  server.on('upgrade', (req, socket: Duplex, head: Buffer) => {
    socket.on('error', () => undefined);
    const url = req.url ?? '/';
    handshakes.push({ url, headers: req.headers });
    const refusal = /^\/api\/ws\/refuse\/(\d{3})/.exec(url);
    if (refusal) return refuse(socket, Number(refusal[1]), 'refused on purpose');
    void (checkBearer ? bearerAccepted(fakePort, req.headers.authorization) : Promise.resolve(true)).then((ok) => {
      if (!ok) return refuse(socket, 401, 'Authorization has been denied for this request.');
      wss.handleUpgrade(req, socket, head, (ws) => {
        if (opts.keepSockets !== false) sockets.push(ws);
        ws.on('error', () => undefined);
        if (url.startsWith('/api/ws/echo')) ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
        const ready = waiting;
        waiting = [];
        for (const fn of ready) fn(ws);
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    handshakes,
    sockets,
    nextSocket: () => new Promise((resolve) => waiting.push(resolve)),
    close: async () => {
      for (const ws of sockets) ws.terminate();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of conns) s.destroy();
      await closed;
    },
  };
}
