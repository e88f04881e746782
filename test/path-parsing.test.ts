import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { DEMO, startHarness, type Harness, type Instance, closeExpectingNoLeaks } from './support/harness.js';
import { SECRET, SECRET_PATHS, normalisePath, startExpressUpstream, startNormalisingUpstream, type PathParsingUpstream } from './support/path-parsing-upstream.js';

/**
 * The fake upstream routes on the raw path, so it cannot show what a real server makes of a
 * spelling. Here cloakroom sits in front of upstreams that parse paths as common servers do
 * and serve a secret on the credential paths: no spelling may reach them.
 */

let h: Harness;
let cookie: string;
let expressUp: PathParsingUpstream;
let normalisingUp: PathParsingUpstream;

interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** The request target exactly as given, `#` included, as a raw HTTP client sends it. */
function raw(base: string, path: string, method = 'GET'): Promise<RawResponse> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: hostname, port, path, method, headers: { cookie, 'x-csrf': '1' }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

const hex = (c: string) => '%' + c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0');

/** Spellings of `path` (`/api/<rest>`) that some server may route to `path`. */
function spellings(path: string): string[] {
  const rest = path.slice('/api/'.length);
  const segs = rest.split('/');
  const last = segs[segs.length - 1] ?? '';
  const head = segs.slice(0, -1).map((s) => s + '/').join('');
  const firstLetter = last[0] ?? '';
  return [
    path,
    path.toUpperCase(),
    path + '/',
    path + '#',
    path + '#x',
    path + '?#',
    path + '?a=1#x',
    path + '%23',
    path + '%23x',
    path + '%2523',
    path + '%3F',
    path + '%3Fx=1',
    path + '%253F',
    path + '%00',
    path + '%00.json',
    path + '%2500',
    path + '.',
    path + '..',
    path + '%20',
    path + '%09',
    path + ';x',
    path + '%3Bx',
    path + '%2F',
    `/api/${head}${hex(firstLetter)}${last.slice(1)}`,
    `/api/${head}%25${hex(firstLetter).slice(1)}${last.slice(1)}`,
    `/api//${rest}`,
    `/api%2F${rest}`,
    `/api%5C${rest}`,
    `/api\\${rest}`,
    `/api/./${rest}`,
    `/api/%2e/${rest}`,
    `/api/x/../${rest}`,
    `/api/x/%2e%2e/${rest}`,
    `/api/x/..%20/${rest}`,
    `/api/x/..%09/${rest}`,
    `/api/x/.../${rest}`,
    `/api/x/..%2e/${rest}`,
    `/api/x/%2e%2e%20/${rest}`,
    `/api/x/..%2520/${rest}`,
    `/api/x/...%20/${rest}`,
    `/api/x/..;a/${rest}`,
    `/api/x/..%3Fy/${rest}`,
  ];
}

const NEXUDUS_SECRETS = SECRET_PATHS.filter((p) => !p.startsWith('/api/login'));

beforeAll(async () => {
  h = await startHarness();
  expressUp = await startExpressUpstream();
  normalisingUp = await startNormalisingUpstream();
  const signedIn = await h.start();
  const res = await request(signedIn.url).post('/auth/login').set('X-CSRF', '1').send(DEMO);
  expect(res.status).toBe(200);
  const set = (res.headers['set-cookie'] as unknown as string[] | undefined) ?? [];
  cookie = (set.find((c) => c.startsWith(`${signedIn.config.cookie.name}=`)) ?? '').split(';')[0] ?? '';
});
afterAll(async () => {
  await expressUp.close();
  await normalisingUp.close();
  await closeExpectingNoLeaks(h);
});

describe('refusals against the fake upstream', () => {
  let app: Instance;
  let json: Instance;
  beforeAll(async () => {
    app = await h.start();
    json = await h.start({ AUTH_MODE: 'json' });
  });

  it.each([
    '/api/auth/media/customer#x',
    '/api/token#',
    '/api/echo/x?a=1#frag',
    '/api/echo/x%00',
    '/api/echo/x%3Fy=1',
    '/api/echo/x%23y',
    '/api/echo/..%20/x',
    '/api/echo/..%09/x',
    '/api/echo/.../x',
    '/api/echo/..%2e/x',
  ])('path_%s_should_fail_with_invalid_path_and_never_reach_upstream', async (path) => {
    h.upstream.reset();
    const res = await raw(app.url, path, 'POST');
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body)).toEqual({ error: 'invalid_path', message: expect.any(String) });
    expect(h.upstream.requests).toHaveLength(0);
  });

  it.each(['/api/login', '/api/login/refresh-token', '/api/Login/', '/api/login%2Frefresh-token', '/api/token'])(
    'json_mode_post_%s_should_fail_with_forbidden_path_and_never_reach_upstream',
    async (path) => {
      h.upstream.reset();
      const res = await raw(json.url, path, 'POST');
      expect(res.status).toBe(403);
      expect(JSON.parse(res.body).error).toBe('forbidden_path');
      expect(h.upstream.requests).toHaveLength(0);
    },
  );

  it('nexudus_mode_proxies_api_login_as_an_ordinary_path', async () => {
    h.upstream.reset();
    const res = await raw(app.url, '/api/login', 'POST');
    expect(res.status).not.toBe(403);
    expect(h.upstream.requests.map((r) => r.url)).toEqual(['/api/login']);
  });
});

describe('the path-parsing upstreams are meaningful', () => {
  it('express_serves_the_secret_for_a_fragment_a_trailing_slash_and_another_case', async () => {
    for (const target of ['/api/auth/media/customer#x', '/api/token#', '/API/TOKEN/']) {
      const res = await raw(expressUp.url, target, 'POST');
      expect(res.body).toContain(SECRET);
    }
  });

  it.each(['/api/x/..%20/token', '/api/x/..%09/token', '/api/x/.../token', '/api/x/..%2e/token', '/api/token%00', '/api/token%3Fx', '/api/token%23'])(
    'the_normaliser_reads_%s_as_a_credential_path',
    (target) => {
      expect(normalisePath(target)).toBe('/api/token');
    },
  );
});

describe.each([
  ['express', () => expressUp],
  ['normalising', () => normalisingUp],
])('behind an %s upstream', (_name, upstreamOf) => {
  const cases = (mode: 'nexudus' | 'json') => {
    const secrets = mode === 'json' ? SECRET_PATHS : NEXUDUS_SECRETS;
    return secrets.flatMap((p) => spellings(p));
  };

  it.each(['nexudus', 'json'] as const)('in_%s_mode_no_spelling_of_a_credential_path_reaches_it', async (mode) => {
    const upstream = upstreamOf();
    const instance: Instance = await h.start({ UPSTREAM_URL: upstream.url, AUTH_MODE: mode });
    upstream.secretHits.length = 0;
    const leaked: string[] = [];
    for (const target of cases(mode)) {
      for (const method of ['GET', 'POST']) {
        const res = await raw(instance.url, target, method);
        // 404: `/api%2F...` and friends are not `/api/*` to cloakroom at all, and never proxied.
        if (res.body.includes(SECRET) || ![400, 403, 404].includes(res.status)) leaked.push(`${method} ${target} -> ${res.status}`);
      }
    }
    expect(leaked).toEqual([]);
    expect(upstream.secretHits).toEqual([]);
    // The session is fine and other paths are proxied: the refusals above are the paths'.
    expect((await raw(instance.url, '/api/echo/x')).status).toBe(200);
  });
});
