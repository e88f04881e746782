import type { IncomingMessage, ServerResponse } from 'node:http';
import { LRUCache } from 'lru-cache';
import type { Dispatcher } from 'undici';
import { errors } from '../errors.js';
import type { TokenAccess } from '../core/token-access.js';
import type { SessionTokens } from '../core/token-vault.js';
import { apiPathVerdict, FORBIDDEN_API_PATHS, type ApiPathVerdict } from '../core/upstream-paths.js';
import type { Tracing } from '../tracing.js';
import type { UpstreamClient } from '../upstream/client.js';
import { UPSTREAM_ACCEPT_ENCODING } from './encoding.js';
import { ProxyExchange, type ExchangeHooks, type ExchangeRequest, type Outcome } from './exchange.js';
import { directForwarding } from './forwarding.js';
import { requestHeadersToForward, type ForwardedFor } from './header-rules.js';
import { BODY_IDLE_TIMEOUT_MS, hasNoBody, NO_BODY, readRequestBody, type RequestBody } from './replayable-body.js';
import { applyBodyRequestRules } from './response-body.js';
import { secretSet, type SecretSet } from './secret-scrubber.js';

export { REPLAY_LIMIT } from './replayable-body.js';

/**
 * The path checks (every decoding stage, canonical form) are a pure function of the raw path
 * and an SPA asks for the same few paths again and again, so verdicts are remembered: the
 * 4096 most recently used paths of up to 256 characters (about 1 MB), per proxy.
 */
function createPathVerdicts(forbidden: readonly string[]): (rawPath: string) => ApiPathVerdict {
  const verdicts = new LRUCache<string, ApiPathVerdict>({ max: 4096 });
  return (rawPath) => {
    const known = verdicts.get(rawPath);
    if (known !== undefined) return known;
    const verdict = apiPathVerdict(rawPath, forbidden);
    if (rawPath.length <= 256) verdicts.set(rawPath, verdict);
    return verdict;
  };
}

/**
 * The session's tokens as the scrubber searches for them, prepared once per token record:
 * the token cache hands out the same record object until a refresh replaces it.
 */
function createSecretSets(): (tokens: SessionTokens) => SecretSet {
  const sets = new WeakMap<SessionTokens, SecretSet>();
  return (tokens) => {
    let set = sets.get(tokens);
    if (set === undefined) {
      set = secretSet([tokens.accessToken, tokens.refreshToken]);
      sets.set(tokens, set);
    }
    return set;
  };
}

export interface ApiProxyDeps extends ExchangeHooks {
  upstream: UpstreamClient;
  tokens: TokenAccess;
  readSessionId(cookieHeader: string | undefined): string | null;
  /** Canonical credential paths refused with 403 (`credentialApiPaths(config)`); default: the four Nexudus ones. */
  forbiddenPaths?: readonly string[];
  /** `X-Forwarded-*` for a request (`createForwarding(trustFn, ownOrigin)`); default: the socket's own. */
  forwarding?: (req: IncomingMessage) => ForwardedFor;
  /** A request body idle this long is given up on; default BODY_IDLE_TIMEOUT_MS. */
  bodyIdleTimeoutMs?: number;
  /** The request's id, sent upstream as `X-Request-Id` (http/observe.ts `requestIdOf`). */
  requestId?: (req: IncomingMessage) => string;
  /** Tracing on: a client span per upstream exchange, its `traceparent` sent upstream. */
  tracing?: Tracing | undefined;
}

/**
 * `ANY /api/*`: a raw Node handler, no framework on the hot path (see docs/performance.md).
 * Steady state sends no Redis command: the token record comes from the tracked cache
 * (store/tracked-token-store.ts), else from one GET. The parts: path verdicts (here), header
 * rules (header-rules.ts), the replayable body (replayable-body.ts), one upstream exchange
 * written into the browser's answer (exchange.ts).
 */
export function createApiProxy(deps: ApiProxyDeps) {
  const { upstream } = deps;
  const pathVerdict = createPathVerdicts(deps.forbiddenPaths ?? FORBIDDEN_API_PATHS);
  const forwarding = deps.forwarding ?? directForwarding;
  const { tracing } = deps;

  const secretsOf = createSecretSets();

  const exchange = (req: IncomingMessage, res: ServerResponse, body: RequestBody, tokens: SessionTokens, replayable: boolean): Promise<Outcome> => {
    const requestId = deps.requestId?.(req);
    const headers = requestHeadersToForward(req.headers, {
      accessToken: tokens.accessToken,
      streamedBody: body.kind === 'stream',
      forwarded: forwarding(req),
      ...(requestId !== undefined ? { requestId } : {}),
      tracing: tracing !== undefined,
    });
    // No Range (a token could be pieced together from parts) and no coding we cannot decode.
    applyBodyRequestRules(headers, UPSTREAM_ACCEPT_ENCODING);
    const opts: ExchangeRequest = { method: req.method ?? 'GET', acceptEncoding: req.headers['accept-encoding'], secrets: secretsOf(tokens), bodyTimeoutMs: upstream.timeoutMs, replayable };
    if (requestId !== undefined) opts.requestId = requestId;
    const method = (req.method ?? 'GET') as Dispatcher.HttpMethod;
    const span = tracing?.startUpstream(method, headers);
    const sent = new Promise<Outcome>((resolve, reject) => {
      upstream.dispatch({ method, path: req.url ?? '/', headers, body: body.kind === 'none' ? null : body.data }, new ProxyExchange(req, res, opts, resolve, reject, deps));
    });
    if (!span) return sent;
    return sent.then(
      (outcome) => {
        span.end({ status: outcome === 'rejected' ? 401 : res.statusCode });
        return outcome;
      },
      (error: unknown) => {
        span.end({ error });
        throw error;
      },
    );
  };

  // The access token may have been revoked early: refresh once, replay once.
  const replayAfterRejection = async (req: IncomingMessage, res: ServerResponse, sid: string, body: RequestBody, used: SessionTokens): Promise<void> => {
    const fresh = await deps.tokens.tokensAfterRejection(sid, used, deps.requestId?.(req));
    await exchange(req, res, body, fresh, false);
  };

  const exchangeOnce = async (req: IncomingMessage, res: ServerResponse, sid: string): Promise<void> => {
    const tokens = await deps.tokens.currentTokens(sid, deps.requestId?.(req));
    const body = await readRequestBody(req, deps.bodyIdleTimeoutMs ?? BODY_IDLE_TIMEOUT_MS);
    if ((await exchange(req, res, body, tokens, body.kind !== 'stream')) === 'rejected') await replayAfterRejection(req, res, sid, body, tokens);
  };

  /** Throws the contract's refusals; returns the session id. */
  const admit = (req: IncomingMessage): string => {
    // TRACE echoes the request (its Cookie and our Bearer with it); CONNECT would make us a tunnel.
    if (req.method === 'TRACE' || req.method === 'CONNECT') throw errors.methodNotAllowed(req.method);
    const rawUrl = req.url ?? '/';
    const q = rawUrl.indexOf('?');
    const verdict = pathVerdict(q === -1 ? rawUrl : rawUrl.slice(0, q));
    // A raw `#` (a raw client can send one) ends the path or query for every server upstream.
    if (verdict === 'invalid' || (q !== -1 && rawUrl.includes('#', q))) throw errors.invalidPath();
    if (verdict === 'forbidden') throw errors.forbiddenPath();
    const sid = deps.readSessionId(req.headers.cookie);
    if (!sid) throw errors.unauthenticated();
    return sid;
  };

  return function proxyApiRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let sid: string;
    try {
      sid = admit(req);
    } catch (err) {
      return Promise.reject(err);
    }
    // The common request: tokens held here and not due, no body. No await before the exchange.
    const tokens = hasNoBody(req) ? deps.tokens.tokensNow(sid) : undefined;
    if (tokens === undefined) return exchangeOnce(req, res, sid);
    return exchange(req, res, NO_BODY, tokens, true).then((outcome) => (outcome === 'rejected' ? replayAfterRejection(req, res, sid, NO_BODY, tokens) : undefined));
  };
}
