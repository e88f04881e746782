// cloakroom browser client. The same file is served by cloakroom at GET /auth/client.js and
// shipped as the @cloakroom/client package, so it must stay one dependency-free ES module.
// The session cookie is httpOnly: nothing here ever sees a token or the cookie itself.

const SESSION_ENDED_CODES = new Set(['session_expired', 'unauthenticated']);

/** An error the client rejects with: the contract's `{error, message}` plus the HTTP status. */
export class CloakroomError extends Error {
  constructor(status, code, message, resetToken) {
    super(message);
    this.name = 'CloakroomError';
    this.status = status;
    this.code = code;
    if (resetToken !== undefined) this.resetToken = resetToken;
  }
}

async function readJson(res) {
  const type = res.headers.get('content-type') || '';
  if (!type.includes('json')) return undefined;
  try {
    return await res.json();
  } catch {
    return undefined;
  }
}

async function errorOf(res) {
  const body = await readJson(res);
  const code = body && typeof body.error === 'string' ? body.error : res.status >= 500 ? 'server_error' : 'invalid_request';
  const message = body && typeof body.message === 'string' ? body.message : `cloakroom answered ${res.status}`;
  const resetToken = body && typeof body.resetToken === 'string' ? body.resetToken : undefined;
  return new CloakroomError(res.status, code, message, resetToken);
}

/**
 * @param {{ baseUrl?: string, onSessionEnded?: (code: string) => void, fetch?: typeof fetch }} [options]
 */
export function createClient(options = {}) {
  const base = options.baseUrl ?? '';
  // Tests and non-window hosts hand in their own fetch; the browser's must be called unbound-safe.
  const doFetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const onSessionEnded = options.onSessionEnded;

  const here = () => (typeof location !== 'undefined' ? location.href : 'http://localhost/');
  // Only same-origin /api/* calls get the anti-forgery header: it must never be sent elsewhere.
  const isOwnApi = (path) => {
    const url = new URL(base + path, here());
    const own = new URL(base || '/', here());
    return url.origin === own.origin && url.pathname.startsWith('/api/');
  };

  async function call(path, init = {}) {
    const headers = new Headers(init.headers);
    headers.set('X-CSRF', '1');
    return doFetch(base + path, { ...init, headers, credentials: 'same-origin' });
  }

  async function apiFetch(path, init = {}) {
    if (typeof path !== 'string' || !isOwnApi(path)) {
      throw new TypeError('cloakroom client: fetch() takes a same-origin /api/... path');
    }
    const res = await call(path, init);
    if (res.status === 401 && onSessionEnded) {
      const body = await readJson(res.clone());
      if (body && SESSION_ENDED_CODES.has(body.error)) onSessionEnded(body.error);
    }
    return res;
  }

  async function session() {
    const res = await call('/auth/session', { method: 'GET' });
    if (!res.ok) throw await errorOf(res);
    return res.json();
  }

  async function login(credentials) {
    const { email, password, totp, remember } = credentials ?? {};
    const body = { email, password };
    if (totp !== undefined && totp !== '') body.totp = totp;
    if (remember !== undefined) body.remember = remember;
    const res = await call('/auth/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (!res.ok) throw await errorOf(res);
    const answer = await res.json();
    return answer.user;
  }

  async function logout(opts = {}) {
    const init = { method: 'POST' };
    if (opts.everywhere === true) {
      init.headers = { 'Content-Type': 'application/json' };
      init.body = JSON.stringify({ everywhere: true });
    }
    const res = await call('/auth/logout', init);
    // 200 {logoutUrl} is oidc mode's answer: the provider's session ends there.
    if (res.status === 200) {
      const answer = await readJson(res);
      if (answer && typeof answer.logoutUrl === 'string') return { logoutUrl: answer.logoutUrl };
      return {};
    }
    if (!res.ok) throw await errorOf(res);
    return {};
  }

  function downloadUrl(path) {
    return `${base}/links/download?${new URLSearchParams({ path })}`;
  }

  function portalUrl(redirectUrl) {
    if (redirectUrl === undefined || redirectUrl === null || redirectUrl === '') return `${base}/links/portal`;
    return `${base}/links/portal?${new URLSearchParams({ redirectUrl })}`;
  }

  return { fetch: apiFetch, session, login, logout, downloadUrl, portalUrl };
}
