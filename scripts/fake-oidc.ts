import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import type { FakeUpstream } from './fake-upstream/index.js';

/**
 * A small OpenID Connect provider for tests and the demo: discovery, JWKS (RS256), an
 * authorization endpoint that signs in `loginAs` without a form, the token endpoint
 * (authorization code with PKCE S256 only, refresh with single-use rotation), userinfo and,
 * when enabled, an end-session endpoint. Its access tokens are minted by the fake upstream, so
 * cloakroom's proxy can use them there. It also signs Back-Channel Logout tokens for tests,
 * correct or broken in one named way.
 */
export interface FakeOidcOptions {
  upstream: FakeUpstream;
  clientId?: string;
  /** Absent: a public client (no client authentication at the token endpoint). */
  clientSecret?: string;
  endSession?: boolean;
}

export interface LogoutTokenOptions {
  sid?: string;
  sub?: string;
  /** Breaks one rule of Back-Channel Logout 1.0 section 2.6. */
  flaw?: 'no-events' | 'nonce' | 'wrong-aud' | 'wrong-iss' | 'expired' | 'alg-none' | 'foreign-key' | 'no-sub-or-sid' | 'no-iat';
}

export interface FakeOidc {
  readonly issuer: string;
  readonly clientId: string;
  readonly stats: { authorizations: number; codeGrants: number; refreshGrants: number; userinfo: number };
  /** Every call to the token and userinfo endpoints, oldest first: its grant and `X-Request-Id`. */
  readonly calls: { path: '/token' | '/userinfo'; grant: string | null; requestId: string | undefined }[];
  /** How the client authenticated at the token endpoint last time. */
  readonly lastClientAuth: 'basic' | 'post' | 'none' | undefined;
  /** Who the authorization endpoint signs in. */
  loginAs: string;
  accessTokenTtlSeconds: number;
  /** Leave email and name out of the ID token, so they must come from userinfo. */
  idTokenWithoutProfile: boolean;
  /** The next token endpoint answers fail this way (one per request, in order). */
  readonly tokenFaults: ('http500' | 'garbage')[];
  /** The authorization endpoint's last redirect target and the query it was asked with. */
  readonly lastAuthorization: URLSearchParams | undefined;
  /** The provider session (`sid`) of the last sign-in. */
  readonly lastSid: string | undefined;
  subjectOf(email: string): string;
  /** Every refresh token issued so far stops working (the next refresh is refused). */
  revokeRefreshTokens(): void;
  logoutToken(opts?: LogoutTokenOptions): Promise<string>;
  close(): Promise<void>;
}

const b64url = (buf: Buffer) => buf.toString('base64url');
const opaque = (prefix: string) => prefix + b64url(randomBytes(24));

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': String(Buffer.byteLength(text)), ...headers });
  res.end(text);
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

interface CodeRecord { redirectUri: string; challenge: string; nonce: string; email: string; sid: string }
interface RefreshRecord { email: string; sid: string }

export async function startFakeOidc(opts: FakeOidcOptions): Promise<FakeOidc> {
  const { upstream } = opts;
  const clientId = opts.clientId ?? 'cloakroom-test';
  const keys = await generateKeyPair('RS256', { extractable: true });
  const foreign = await generateKeyPair('RS256', { extractable: true });
  const jwk: JWK = { ...(await exportJWK(keys.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
  const codes = new Map<string, CodeRecord>();
  const refreshTokens = new Map<string, RefreshRecord>();
  const accessOwners = new Map<string, string>();
  const sockets = new Set<Socket>();
  let issuer = '';
  let lastAuthorization: URLSearchParams | undefined;
  let lastSid: string | undefined;
  let lastClientAuth: 'basic' | 'post' | 'none' | undefined;

  const tokenFaults: ('http500' | 'garbage')[] = [];
  const calls: FakeOidc['calls'] = [];
  const requestIdOf = (req: IncomingMessage) => (typeof req.headers['x-request-id'] === 'string' ? req.headers['x-request-id'] : undefined);
  const state = {
    loginAs: 'demo@example.com',
    accessTokenTtlSeconds: 3600,
    idTokenWithoutProfile: false,
    stats: { authorizations: 0, codeGrants: 0, refreshGrants: 0, userinfo: 0 },
  };
  const subjectOf = (email: string) => `sub-${upstream.user(email)?.id ?? email}`;

  const sign = (claims: Record<string, unknown>, key: CryptoKey = keys.privateKey) =>
    new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).sign(key);

  const tokens = async (email: string, sid: string, nonce: string | null) => {
    const user = upstream.user(email);
    const access = upstream.mintAccessToken(email, state.accessTokenTtlSeconds);
    accessOwners.set(access, email);
    const refresh = opaque('ort_');
    refreshTokens.set(refresh, { email, sid });
    upstream.noteIssued(refresh);
    const now = Math.floor(Date.now() / 1000);
    const profile = state.idTokenWithoutProfile ? {} : { email, name: user?.fullName };
    const idToken = await sign({ iss: issuer, sub: subjectOf(email), aud: clientId, iat: now, exp: now + 600, sid, ...(nonce ? { nonce } : {}), ...profile });
    upstream.noteIssued(idToken);
    return { access_token: access, token_type: 'Bearer', expires_in: state.accessTokenTtlSeconds, refresh_token: refresh, id_token: idToken, scope: 'openid profile email offline_access' };
  };

  const clientAuthenticated = (req: IncomingMessage, form: URLSearchParams): boolean => {
    const basic = /^Basic\s+(\S+)$/i.exec(req.headers.authorization ?? '');
    let id = form.get('client_id');
    let secret = form.get('client_secret');
    lastClientAuth = basic?.[1] ? 'basic' : secret ? 'post' : 'none';
    if (basic?.[1]) {
      const [u, p] = Buffer.from(basic[1], 'base64').toString('utf8').split(':');
      id = decodeURIComponent(u ?? '');
      secret = decodeURIComponent(p ?? '');
    }
    if (id !== clientId) return false;
    return opts.clientSecret === undefined || secret === opts.clientSecret;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', issuer);
    if (url.pathname === '/.well-known/openid-configuration') {
      return send(res, 200, {
        issuer,
        authorization_endpoint: `${issuer}/authorize`,
        token_endpoint: `${issuer}/token`,
        userinfo_endpoint: `${issuer}/userinfo`,
        jwks_uri: `${issuer}/jwks`,
        ...(opts.endSession === false ? {} : { end_session_endpoint: `${issuer}/logout` }),
        response_types_supported: ['code'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['RS256'],
        code_challenge_methods_supported: ['S256'],
        token_endpoint_auth_methods_supported: opts.clientSecret === undefined ? ['none'] : ['client_secret_basic', 'client_secret_post'],
        backchannel_logout_supported: true,
        backchannel_logout_session_supported: true,
      });
    }
    if (url.pathname === '/jwks') return send(res, 200, { keys: [jwk] });
    if (url.pathname === '/authorize') {
      const q = url.searchParams;
      lastAuthorization = q;
      const redirectUri = q.get('redirect_uri') ?? '';
      if (q.get('client_id') !== clientId || q.get('response_type') !== 'code' || !redirectUri) return send(res, 400, { error: 'invalid_request' });
      if (q.get('code_challenge_method') !== 'S256' || !q.get('code_challenge') || !q.get('state') || !q.get('nonce')) return send(res, 400, { error: 'invalid_request' });
      state.stats.authorizations++;
      const code = opaque('code_');
      lastSid = opaque('sid_');
      codes.set(code, { redirectUri, challenge: q.get('code_challenge') ?? '', nonce: q.get('nonce') ?? '', email: state.loginAs, sid: lastSid });
      const back = new URL(redirectUri);
      back.searchParams.set('code', code);
      back.searchParams.set('state', q.get('state') ?? '');
      back.searchParams.set('iss', issuer);
      res.writeHead(302, { location: back.toString() });
      res.end();
      return;
    }
    if (url.pathname === '/token' && req.method === 'POST') {
      const form = await readForm(req);
      calls.push({ path: '/token', grant: form.get('grant_type'), requestId: requestIdOf(req) });
      const fault = tokenFaults.shift();
      if (fault === 'http500') return send(res, 500, { error: 'server_error' });
      if (fault === 'garbage') {
        res.writeHead(200, { 'content-type': 'text/html' });
        res.end('<html>maintenance</html>');
        return;
      }
      if (!clientAuthenticated(req, form)) return send(res, 401, { error: 'invalid_client' });
      if (form.get('grant_type') === 'authorization_code') {
        const rec = codes.get(form.get('code') ?? '');
        codes.delete(form.get('code') ?? '');
        if (!rec || rec.redirectUri !== form.get('redirect_uri')) return send(res, 400, { error: 'invalid_grant' });
        const verifier = form.get('code_verifier') ?? '';
        if (b64url(createHash('sha256').update(verifier).digest()) !== rec.challenge) return send(res, 400, { error: 'invalid_grant', error_description: 'PKCE verification failed' });
        state.stats.codeGrants++;
        return send(res, 200, await tokens(rec.email, rec.sid, rec.nonce));
      }
      if (form.get('grant_type') === 'refresh_token') {
        const presented = form.get('refresh_token') ?? '';
        const rec = refreshTokens.get(presented);
        // Single use: a refresh token is gone once it has been exchanged.
        refreshTokens.delete(presented);
        if (!rec) return send(res, 400, { error: 'invalid_grant' });
        state.stats.refreshGrants++;
        const fresh = await tokens(rec.email, rec.sid, null);
        return send(res, 200, fresh);
      }
      return send(res, 400, { error: 'unsupported_grant_type' });
    }
    if (url.pathname === '/userinfo') {
      calls.push({ path: '/userinfo', grant: null, requestId: requestIdOf(req) });
      const bearer = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
      const email = bearer ? accessOwners.get(bearer) : undefined;
      if (!email) return send(res, 401, { error: 'invalid_token' }, { 'www-authenticate': 'Bearer error="invalid_token"' });
      state.stats.userinfo++;
      return send(res, 200, { sub: subjectOf(email), email, name: upstream.user(email)?.fullName });
    }
    send(res, 404, { error: 'not_found' });
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch(() => send(res, 500, { error: 'server_error' }));
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    get issuer() {
      return issuer;
    },
    clientId,
    get stats() {
      return state.stats;
    },
    get loginAs() {
      return state.loginAs;
    },
    set loginAs(v: string) {
      state.loginAs = v;
    },
    get accessTokenTtlSeconds() {
      return state.accessTokenTtlSeconds;
    },
    set accessTokenTtlSeconds(v: number) {
      state.accessTokenTtlSeconds = v;
    },
    get idTokenWithoutProfile() {
      return state.idTokenWithoutProfile;
    },
    set idTokenWithoutProfile(v: boolean) {
      state.idTokenWithoutProfile = v;
    },
    tokenFaults,
    calls,
    get lastClientAuth() {
      return lastClientAuth;
    },
    get lastAuthorization() {
      return lastAuthorization;
    },
    get lastSid() {
      return lastSid;
    },
    subjectOf,
    revokeRefreshTokens: () => refreshTokens.clear(),
    async logoutToken(o: LogoutTokenOptions = {}) {
      const now = Math.floor(Date.now() / 1000);
      const flaw = o.flaw;
      const claims: Record<string, unknown> = {
        iss: flaw === 'wrong-iss' ? 'https://elsewhere.example' : issuer,
        aud: flaw === 'wrong-aud' ? 'someone-else' : clientId,
        iat: now,
        exp: flaw === 'expired' ? now - 60 : now + 120,
        jti: opaque('jti_'),
        ...(flaw === 'no-events' ? {} : { events: { 'http://schemas.openid.net/event/backchannel-logout': {} } }),
        ...(flaw === 'nonce' ? { nonce: 'n' } : {}),
        ...(flaw === 'no-sub-or-sid' ? {} : { ...(o.sub ? { sub: o.sub } : {}), ...(o.sid ? { sid: o.sid } : {}) }),
      };
      if (flaw === 'no-iat') delete claims['iat'];
      if (flaw === 'alg-none') {
        const part = (v: unknown) => b64url(Buffer.from(JSON.stringify(v)));
        return `${part({ alg: 'none', typ: 'logout+jwt' })}.${part(claims)}.`;
      }
      return new SignJWT(claims)
        .setProtectedHeader({ alg: 'RS256', kid: 'k1', typ: 'logout+jwt' })
        .sign(flaw === 'foreign-key' ? foreign.privateKey : keys.privateKey);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}
