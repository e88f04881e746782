import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { AppError, errors } from '../errors.js';
import type { SessionTokens } from '../core/token-vault.js';
import type { Logger } from '../logger.js';
import { rawErrorResponse, toAppError } from '../http/respond.js';
import { requestIdOf } from '../http/observe.js';
import type { Tracing } from '../tracing.js';
import { validTraceparent } from './header-rules.js';

/** What the WebSocket proxy needs from the rest of cloakroom; app.ts hands in the real ones. */
export interface WebSocketProxyDeps {
  /** UPSTREAM_URL (http or https); the socket goes to its ws:// or wss:// twin. */
  upstreamUrl: string;
  readSessionId(cookieHeader: string | undefined): string | null;
  tokens: {
    currentTokens(sid: string, requestId?: string): Promise<SessionTokens>;
    tokensAfterRejection(sid: string, used: SessionTokens, requestId?: string): Promise<SessionTokens>;
  };
  /** ALLOWED_ORIGINS, else the request's own origin. */
  originAllowed(req: IncomingMessage, origin: string): boolean;
  /** The HTTP proxy's path rules, on the raw path. */
  pathVerdict(rawPath: string): 'ok' | 'invalid' | 'forbidden';
  /**
   * The session's token record, or null when the session has ended (logout anywhere, timeout).
   * Throws when the store cannot answer: that is an outage, not an ended session.
   */
  readSession(sid: string): Promise<{ absoluteExpiresAt: number } | null>;
  /** Resolves when the session's token key may have changed (Redis tracking), or after maxMs. */
  changed?(sid: string, maxMs: number): Promise<void>;
  /** Extends the idle timeout (throttled by the toucher): an open socket is activity. */
  keepAlive(sid: string, absoluteExpiresAt: number): void;
  onOpenCountChange?(open: number): void;
  logger: Logger;
  clock?: () => number;
  upstreamTimeoutMs: number;
  maxPerSession: number;
  maxOpen: number;
  maxPayload: number;
  /** How often each session with an open socket is checked (also woken by tracking). */
  checkIntervalMs: number;
  /** With tracing on: a server span per handshake, and its upstream handshake a client span whose `traceparent` is sent. */
  tracing?: Pick<Tracing, 'traceHandshake' | 'startUpstream'> | undefined;
}

/** Sent on either side when the session has ended (contract). */
export const SESSION_ENDED = { code: 1008, reason: 'session_ended' } as const;

/** Bytes queued towards one side before the other side is paused. */
const HIGH_WATER = 4 << 20;

/** An ordinary JSON HTTP answer on the raw socket: the handshake never became a WebSocket. */
export function writeRawError(socket: Duplex, err: AppError, requestId?: string): void {
  if (!socket.writable) return void socket.destroy();
  socket.end(rawErrorResponse(err, requestId));
}

export const wsErrors = {
  originNotAllowed: errors.originNotAllowed,
  methodNotAllowed: () => errors.methodNotAllowed('A WebSocket handshake with any method but GET'),
  tooManyForSession: errors.tooManyWebSockets,
  tooManyOpen: errors.websocketsUnavailable,
  upstreamRefused: errors.upstreamRefused,
} as const;

/** The other side may only be sent what a peer may send: 1005 and 1006 are never on the wire. */
function relayClose(target: WebSocket, code: number, reason: Buffer): void {
  if (target.readyState === WebSocket.CLOSED || target.readyState === WebSocket.CLOSING) return;
  if (code === 1006) return target.terminate(); // abnormal: the far end sees it abnormal too
  if (code === 1005 || code < 1000) return target.close(); // no status: none is sent on
  try {
    target.close(code, reason);
  } catch {
    target.close(1011);
  }
}

/** A subprotocol header as ws wants it: the tokens in order, no duplicates. */
function offeredProtocols(header: string | undefined): string[] {
  if (!header) return [];
  return [...new Set(header.split(',').map((s) => s.trim()).filter(Boolean))];
}

function upstreamFailure(err: Error): AppError {
  return /timed out/i.test(err.message) ? errors.upstreamTimeout(err) : errors.upstreamUnavailable(err);
}

interface Pair {
  readonly sid: string;
  browser: WebSocket | null;
  upstream: WebSocket | null;
  /** Both sides closed: forgotten. */
  done: boolean;
}

type Handshake =
  | { kind: 'open'; ws: WebSocket }
  | { kind: 'refused'; status: number }
  | { kind: 'failed'; err: Error };

/**
 * `GET /api/*` with `Upgrade: websocket`: checked like an HTTP API call (origin instead of
 * X-CSRF, session, path rules), then a WebSocket to the same path upstream with the session's
 * bearer, and every frame relayed both ways as it is. Sessions with open sockets are watched
 * (Redis tracking wakes the watcher at once, a timer covers the rest) and their sockets are
 * closed with 1008 as soon as the session has ended.
 */
export function createWebSocketProxy(deps: WebSocketProxyDeps) {
  const clock = deps.clock ?? Date.now;
  const wsBase = deps.upstreamUrl.replace(/^http/, 'ws');
  const bySession = new Map<string, Set<Pair>>();
  let open = 0;
  let stopped = false;

  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: deps.maxPayload,
    perMessageDeflate: false,
    clientTracking: false,
    autoPong: false,
    // The browser gets the subprotocol upstream chose (set per handshake below).
    handleProtocols: (_offered, req) => (req as IncomingMessage & { chosenProtocol?: string }).chosenProtocol || false,
  });

  const setOpen = (delta: number) => {
    open += delta;
    deps.onOpenCountChange?.(open);
  };

  const release = (pair: Pair) => {
    if (pair.done) return;
    pair.done = true;
    const set = bySession.get(pair.sid);
    set?.delete(pair);
    if (set && set.size === 0) bySession.delete(pair.sid);
    setOpen(-1);
  };

  const closePair = (pair: Pair, code: number, reason: string) => {
    for (const side of [pair.browser, pair.upstream]) {
      if (!side) continue;
      if (side.readyState === WebSocket.OPEN) side.close(code, reason);
      else if (side.readyState === WebSocket.CONNECTING) side.terminate();
    }
    // A peer that never answers the closing handshake is cut after a short while.
    const timer = setTimeout(() => {
      pair.browser?.terminate();
      pair.upstream?.terminate();
    }, 3000);
    timer.unref();
  };

  const closeSession = (sid: string, code: number = SESSION_ENDED.code, reason: string = SESSION_ENDED.reason): number => {
    const set = bySession.get(sid);
    if (!set) return 0;
    for (const pair of set) closePair(pair, code, reason);
    return set.size;
  };

  const watching = new Set<string>();
  /** One watcher per session with open sockets, whatever their number (and however often they reconnect). */
  const watch = (sid: string) => {
    if (watching.has(sid)) return;
    watching.add(sid);
    void (async () => {
      try {
        await watchRounds(sid);
      } finally {
        watching.delete(sid);
      }
    })();
  };
  const watchRounds = async (sid: string) => {
    while (bySession.has(sid) && !stopped) {
      if (deps.changed) await deps.changed(sid, deps.checkIntervalMs);
      else await new Promise<void>((resolve) => setTimeout(resolve, deps.checkIntervalMs).unref());
      if (!bySession.has(sid) || stopped) return;
      try {
        const record = await deps.readSession(sid);
        if (!record || record.absoluteExpiresAt <= clock()) {
          deps.logger.debug({ sockets: bySession.get(sid)?.size ?? 0 }, 'websocket session ended');
          closeSession(sid);
          return;
        }
        deps.keepAlive(sid, record.absoluteExpiresAt);
      } catch (err) {
        // The store is unreachable: not a reason to close; the next round asks again.
        deps.logger.warn({ err }, 'websocket session check failed');
        await new Promise<void>((resolve) => setTimeout(resolve, deps.checkIntervalMs).unref());
      }
    }
  };

  const connectUpstream = (req: IncomingMessage, tokens: SessionTokens, protocols: string[], onStart: (ws: WebSocket) => void): Promise<Handshake> =>
    new Promise((resolve) => {
      const headers: Record<string, string> = { authorization: `Bearer ${tokens.accessToken}` };
      // The browser's id only when it is a valid one (contract), as on the HTTP proxy.
      headers['x-request-id'] = requestIdOf(req);
      // Tracing off: a browser `traceparent` of the W3C form goes on, as on the HTTP proxy
      // (header-rules.ts); tracing on: the upstream span's own is injected instead.
      if (!deps.tracing && validTraceparent(req.headers.traceparent)) headers.traceparent = req.headers.traceparent;
      const span = deps.tracing?.startUpstream('GET', headers);
      const ws = new WebSocket(`${wsBase}${req.url ?? '/'}`, protocols, {
        headers,
        maxPayload: deps.maxPayload,
        perMessageDeflate: false,
        autoPong: false,
        followRedirects: false,
        handshakeTimeout: deps.upstreamTimeoutMs,
        // ws builds the request from a WHATWG URL, which re-encodes some characters (`'` in a
        // query, for one): upstream gets the raw path and query the checks ran on, as over HTTP.
        finishRequest: (request) => {
          request.path = req.url ?? '/';
          request.end();
        },
      });
      onStart(ws);
      let settled = false;
      ws.once('open', () => {
        settled = true;
        span?.end({ status: 101 });
        // Frames that came with the 101 wait until the browser side is there to take them.
        ws.pause();
        resolve({ kind: 'open', ws });
      });
      ws.once('unexpected-response', (_r, res) => {
        settled = true;
        span?.end({ status: res.statusCode ?? 502 });
        res.resume();
        ws.terminate();
        resolve({ kind: 'refused', status: res.statusCode ?? 502 });
      });
      ws.on('error', (err) => {
        if (settled) return;
        settled = true;
        span?.end({ error: err });
        resolve({ kind: 'failed', err });
      });
    });

  /** Frames both ways as they come, with backpressure: a side with too much queued pauses the other. */
  const relay = (pair: Pair, browser: WebSocket, upstream: WebSocket) => {
    const pipe = (from: WebSocket, to: WebSocket) => {
      let queued = 0;
      let paused = false;
      from.on('message', (data: RawData, isBinary: boolean) => {
        if (to.readyState !== WebSocket.OPEN) return;
        const size = Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : data.byteLength;
        queued += size;
        to.send(data, { binary: isBinary }, () => {
          queued -= size;
          if (paused && queued < HIGH_WATER / 2) {
            paused = false;
            from.resume();
          }
        });
        if (!paused && queued >= HIGH_WATER) {
          paused = true;
          from.pause();
        }
      });
      from.on('ping', (data: Buffer) => {
        if (to.readyState === WebSocket.OPEN) to.ping(data);
      });
      from.on('pong', (data: Buffer) => {
        if (to.readyState === WebSocket.OPEN) to.pong(data);
      });
      from.on('close', (code: number, reason: Buffer) => {
        relayClose(to, code, reason);
        if (to.readyState === WebSocket.CLOSED) release(pair);
      });
      from.on('error', () => to.readyState === WebSocket.OPEN && to.close(1011));
    };
    pipe(browser, upstream);
    pipe(upstream, browser);
  };

  const accept = async (req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> => {
    if (req.method !== 'GET') throw wsErrors.methodNotAllowed();
    // Checked here rather than by ws, whose refusal is not the contract's JSON (and would come after upstream was asked).
    const key = req.headers['sec-websocket-key'];
    if (req.headers['sec-websocket-version'] !== '13' || typeof key !== 'string' || !/^[+/0-9A-Za-z]{22}==$/.test(key)) {
      throw errors.invalidRequest('A WebSocket handshake needs Sec-WebSocket-Version: 13 and a Sec-WebSocket-Key.');
    }
    const origin = req.headers.origin;
    if (origin === undefined || !deps.originAllowed(req, origin)) throw wsErrors.originNotAllowed();
    const rawUrl = req.url ?? '/';
    const q = rawUrl.indexOf('?');
    const verdict = deps.pathVerdict(q === -1 ? rawUrl : rawUrl.slice(0, q));
    // A raw `#` after the query is refused as on the HTTP proxy: upstream servers would cut the URL there.
    if (verdict === 'invalid' || (q !== -1 && rawUrl.includes('#', q))) throw errors.invalidPath();
    if (verdict === 'forbidden') throw errors.forbiddenPath();
    const sid = deps.readSessionId(req.headers.cookie);
    if (!sid) throw errors.unauthenticated();
    if (stopped) throw wsErrors.tooManyOpen();
    if (open >= deps.maxOpen) throw wsErrors.tooManyOpen();
    if ((bySession.get(sid)?.size ?? 0) >= deps.maxPerSession) throw wsErrors.tooManyForSession(deps.maxPerSession);

    // The slot is taken before anything is awaited, so concurrent handshakes cannot pass a cap together.
    const pair: Pair = { sid, browser: null, upstream: null, done: false };
    const set = bySession.get(sid) ?? new Set<Pair>();
    set.add(pair);
    bySession.set(sid, set);
    setOpen(1);
    let browserGone = false;
    const onBrowserGone = () => {
      browserGone = true;
      pair.upstream?.terminate();
    };
    socket.once('close', onBrowserGone);
    try {
      const protocols = offeredProtocols(req.headers['sec-websocket-protocol'] as string | undefined);
      const track = (ws: WebSocket) => {
        pair.upstream = ws;
      };
      let tokens = await deps.tokens.currentTokens(sid, requestIdOf(req));
      let result = await connectUpstream(req, tokens, protocols, track);
      if (result.kind === 'refused' && result.status === 401 && !browserGone) {
        // The access token may have been revoked early: refresh once, try once more.
        tokens = await deps.tokens.tokensAfterRejection(sid, tokens, requestIdOf(req));
        result = await connectUpstream(req, tokens, protocols, track);
      }
      if (browserGone) throw errors.upstreamUnavailable();
      if (result.kind === 'refused') throw wsErrors.upstreamRefused(result.status);
      if (result.kind === 'failed') throw upstreamFailure(result.err);
      const upstream = result.ws;
      if (stopped || !bySession.get(sid)?.has(pair)) {
        upstream.close(1001);
        throw wsErrors.tooManyOpen();
      }
      socket.off('close', onBrowserGone);
      // ws would destroy a dead socket without calling back: the pair would never be released.
      if (socket.destroyed || !socket.writable) {
        upstream.terminate();
        throw errors.upstreamUnavailable();
      }
      (req as IncomingMessage & { chosenProtocol?: string }).chosenProtocol = upstream.protocol;
      wss.handleUpgrade(req, socket, head, (browser) => {
        pair.browser = browser;
        relay(pair, browser, upstream);
        if (upstream.readyState !== WebSocket.OPEN) relayClose(browser, 1011, Buffer.alloc(0));
        else upstream.resume();
        deps.logger.debug({ path: rawUrl.slice(0, q === -1 ? undefined : q), protocol: upstream.protocol || undefined }, 'websocket open');
      });
      watch(sid);
    } catch (err) {
      socket.off('close', onBrowserGone);
      pair.upstream?.terminate();
      release(pair);
      throw err;
    }
  };

  return {
    /** The HTTP server's 'upgrade' listener for `/api/*`; refusals are JSON answers on the socket. */
    handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
      socket.on('error', () => socket.destroy());
      const answer = () =>
        accept(req, socket, head).then(
          () => 101,
          (err: unknown) => {
            const e = toAppError(err);
            if (e.status >= 500 && e.code !== 'websockets_unavailable') deps.logger.warn({ err: e.cause ?? e, code: e.code }, 'websocket handshake failed');
            writeRawError(socket, e, requestIdOf(req));
            return e.status;
          },
        );
      if (deps.tracing) void deps.tracing.traceHandshake(req, `${req.method ?? 'GET'} /api/*`, answer);
      else void answer();
    },
    closeSession,
    /** Every socket of this process (SIGTERM: 1001); resolves once all are closed, at most a few seconds. */
    closeAll(code = 1001, reason = ''): Promise<void> {
      stopped = true;
      const pairs = [...bySession.values()].flatMap((s) => [...s]);
      for (const pair of pairs) closePair(pair, code, reason);
      return new Promise((resolve) => {
        const started = clock();
        const check = () => {
          if (open === 0 || clock() - started > 4000) return resolve();
          setTimeout(check, 20).unref();
        };
        check();
      });
    },
    openCount: () => open,
  };
}

export type WebSocketProxy = ReturnType<typeof createWebSocketProxy>;
