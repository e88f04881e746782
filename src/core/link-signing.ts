import type { Dispatcher } from 'undici';
import { AppError, StoreError, errors } from '../errors.js';
import type { TokenStore } from '../store/token-store.js';
import { classifyUpstreamError, failureToError, isRecord, readJson, type UpstreamClient } from '../upstream/client.js';
import { buildDownloadLocation, buildPortalLocation } from './link-urls.js';
import type { TokenAccess } from './token-access.js';
import type { TokenSealer } from './token-crypto.js';
import type { SessionTokens } from './token-vault.js';

/** Seed 001 and seed 000: the two upstream endpoints that mint link credentials. */
export const MEDIA_TOKEN_PATH = '/api/auth/media/customer';
export const ONE_TIME_TOKEN_PATH = '/api/sys/users/token/refresh';

/** A cached media token is dropped this long before its `exp`, so a link never carries one about to die. */
export const MEDIA_EXPIRY_MARGIN_MS = 30_000;

export interface LinkSignerDeps {
  upstream: UpstreamClient;
  tokens: TokenAccess;
  store: TokenStore;
  sealer: TokenSealer;
  clock: () => number;
  mediaBaseUrl: string;
  /** Absent: portal links are not offered (404). */
  portalUrl?: string;
  portalLoginPath: string;
  observeUpstream?: (kind: 'media' | 'one_time', seconds: number) => void;
}

/**
 * `requestId`: the browser request the link is signed for, sent upstream as `X-Request-Id`
 * (a media token fetched for several requests at once carries the first one's).
 */
export interface LinkSigner {
  readonly portalEnabled: boolean;
  /** `path` must already be validated against DOWNLOAD_PATHS. */
  signDownloadLink(sid: string, path: string, requestId?: string): Promise<string>;
  /** `redirectUrl` must already be a validated local path; undefined or '' leaves it out. */
  signPortalLink(sid: string, redirectUrl?: string, requestId?: string): Promise<string>;
}

interface CachedMedia {
  jwt: string;
  /** Epoch ms after which the cached token is no longer handed out. */
  until: number;
}

/**
 * Epoch ms of the JWT's `exp`, or null. The payload is read without verifying the
 * signature: it decides only how long we cache, never whether anyone is trusted.
 */
export function jwtExpiryMs(jwt: string): number | null {
  const parts = jwt.split('.');
  if (parts.length !== 3 || !parts[1]) return null;
  let payload: unknown;
  try {
    payload = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
  } catch {
    return null;
  }
  if (!isRecord(payload)) return null;
  const exp = payload['exp'];
  return typeof exp === 'number' && Number.isFinite(exp) && exp > 0 ? exp * 1000 : null;
}

const tokenUnavailable = errors.tokenUnavailable;

const mediaRefused = (status: number) =>
  errors.upstreamUnavailable(new Error(`media token endpoint answered ${status} or an unusable body`));

/** Signed links: the upstream credentials go into a Location header and nowhere else. */
export function createLinkSigner(deps: LinkSignerDeps): LinkSigner {
  const { upstream, tokens, store, sealer, clock } = deps;
  // Per-process de-duplication: a page rendering 50 invoice links costs one upstream call.
  const mediaInflight = new Map<string, Promise<string>>();
  // Domain separation: a media blob can never be opened as the session's token blob, or vice versa.
  const mediaAad = (sid: string) => `${sid}#media`;

  type LinkCall = { method: Dispatcher.HttpMethod; path: string; requestId: string | undefined };

  const call = async (kind: 'media' | 'one_time', opts: LinkCall, access: SessionTokens) => {
    const started = performance.now();
    const response = await upstream.request({
      method: opts.method,
      path: opts.path,
      headers: { authorization: `Bearer ${access.accessToken}`, accept: 'application/json' },
      requestId: opts.requestId,
    });
    deps.observeUpstream?.(kind, (performance.now() - started) / 1000);
    return response;
  };

  /** Sends once; on a 401 refreshes through the shared single-flight refresher and sends once more. */
  const callWithRefresh = async (sid: string, first: SessionTokens, kind: 'media' | 'one_time', opts: LinkCall) => {
    const response = await call(kind, opts, first);
    if (response.statusCode !== 401) return response;
    response.body.resume();
    return call(kind, opts, await tokens.tokensAfterRejection(sid, first, opts.requestId));
  };

  const readCachedMedia = async (sid: string): Promise<string | null> => {
    const sealed = await store.readMedia(sid);
    if (sealed === null) return null;
    const opened = sealer.open(sealed, mediaAad(sid));
    if (opened === null) return null;
    let cached: unknown;
    try {
      cached = JSON.parse(opened);
    } catch {
      return null;
    }
    if (!isRecord(cached) || typeof cached['jwt'] !== 'string' || typeof cached['until'] !== 'number') return null;
    // The key's TTL is not enough: the idle-timeout touch extends every session key, this one included.
    return cached['until'] > clock() ? cached['jwt'] : null;
  };

  const cacheMedia = async (sid: string, jwt: string, sessionEndsAt: number): Promise<void> => {
    const exp = jwtExpiryMs(jwt);
    if (exp === null) return;
    const until = exp - MEDIA_EXPIRY_MARGIN_MS;
    // Never outlive the session: the key would linger in Redis after every other key of it is gone.
    const ttlMs = Math.min(until, sessionEndsAt) - clock();
    if (ttlMs <= 0) return;
    const value: CachedMedia = { jwt, until };
    await store.writeMedia(sid, sealer.seal(JSON.stringify(value), mediaAad(sid)), ttlMs);
  };

  const fetchMedia = async (sid: string, access: SessionTokens, requestId: string | undefined): Promise<string> => {
    let response: Dispatcher.ResponseData;
    let body: unknown;
    try {
      response = await callWithRefresh(sid, access, 'media', { method: 'GET', path: MEDIA_TOKEN_PATH, requestId });
      if (response.statusCode !== 200) {
        response.body.resume();
        throw mediaRefused(response.statusCode);
      }
      body = await readJson(response.body, 64 * 1024);
    } catch (err) {
      // AppErrors (ours, or session/refresh outcomes from token access) and store errors pass as they are.
      if (err instanceof AppError || err instanceof StoreError) throw err;
      throw failureToError(classifyUpstreamError(err), err);
    }
    const jwt = isRecord(body) ? body['jwt'] : undefined;
    if (typeof jwt !== 'string' || jwt === '') throw mediaRefused(response.statusCode);
    return jwt;
  };

  const mediaTokenFor = (sid: string, requestId: string | undefined): Promise<string> => {
    const running = mediaInflight.get(sid);
    if (running) return running;
    const work = (async () => {
      // Establishes that the session is live (and extends its idle time) even when the cache answers.
      const access = await tokens.currentTokens(sid, requestId);
      const cached = await readCachedMedia(sid);
      if (cached !== null) return cached;
      const jwt = await fetchMedia(sid, access, requestId);
      await cacheMedia(sid, jwt, access.absoluteExpiresAt);
      return jwt;
    })().finally(() => mediaInflight.delete(sid));
    mediaInflight.set(sid, work);
    return work;
  };

  const fetchOneTimeToken = async (sid: string, requestId: string | undefined): Promise<string> => {
    // Outside the try: session and refresh outcomes (401, session_expired, 503) keep their own codes.
    const access = await tokens.currentTokens(sid, requestId);
    let body: unknown;
    try {
      // Seed 000: no body at all; authentication is the Authorization header alone.
      const response = await callWithRefresh(sid, access, 'one_time', { method: 'POST', path: ONE_TIME_TOKEN_PATH, requestId });
      if (response.statusCode !== 200) {
        response.body.resume();
        throw tokenUnavailable(new Error(`one-time token endpoint answered ${response.statusCode}`));
      }
      body = await readJson(response.body, 64 * 1024);
    } catch (err) {
      if (err instanceof AppError || err instanceof StoreError) throw err;
      // Contract: any upstream failure here is token_unavailable, a timeout included. The SPA
      // has one thing to do either way (offer the link again), and a timed-out POST may even
      // have minted a token upstream that nobody will ever use.
      throw tokenUnavailable(err);
    }
    if (!isRecord(body) || body['WasSuccessful'] !== true) throw tokenUnavailable();
    const value = body['Value'];
    if (typeof value !== 'string' || value === '') throw tokenUnavailable();
    return value;
  };

  return {
    portalEnabled: deps.portalUrl !== undefined,

    async signDownloadLink(sid, path, requestId) {
      return buildDownloadLocation(deps.mediaBaseUrl, path, await mediaTokenFor(sid, requestId));
    },

    async signPortalLink(sid, redirectUrl, requestId) {
      if (deps.portalUrl === undefined) throw errors.notFound();
      // One-time tokens are single-use upstream: never cached, never shared between requests.
      const value = await fetchOneTimeToken(sid, requestId);
      return buildPortalLocation(deps.portalUrl, deps.portalLoginPath, value, redirectUrl);
    },
  };
}
