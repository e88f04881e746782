import { describe, expect, it } from '@jest/globals';
import { createClient } from '../packages/client/index.js';

interface Seen { url: string; init: RequestInit }

/** A fetch that records each call and answers from a table, as the browser's would. */
function fakeFetch(answer: (url: string) => { status: number; body?: unknown }) {
  const seen: Seen[] = [];
  const fetch = async (input: Parameters<typeof globalThis.fetch>[0], init: RequestInit = {}) => {
    const url = String(input);
    seen.push({ url, init });
    const { status, body } = answer(url);
    return new Response(body === undefined ? null : JSON.stringify(body), {
      status,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
    });
  };
  return { fetch: fetch as typeof globalThis.fetch, seen };
}

describe('browser client', () => {
  it('api_fetch_adds_x_csrf_and_same_origin_credentials', async () => {
    const f = fakeFetch(() => ({ status: 200, body: { ok: true } }));
    const client = createClient({ fetch: f.fetch });
    const res = await client.fetch('/api/auth/me', { headers: { Accept: 'application/json' } });
    expect(res.status).toBe(200);
    const call = f.seen[0];
    expect(call?.url).toBe('/api/auth/me');
    expect(call?.init.credentials).toBe('same-origin');
    const headers = new Headers(call?.init.headers);
    expect(headers.get('x-csrf')).toBe('1');
    expect(headers.get('accept')).toBe('application/json');
  });

  it('api_fetch_of_another_origin_or_a_non_api_path_is_refused_before_any_request', async () => {
    const f = fakeFetch(() => ({ status: 200 }));
    const client = createClient({ fetch: f.fetch });
    await expect(client.fetch('https://evil.example/api/x')).rejects.toThrow(TypeError);
    await expect(client.fetch('/auth/session')).rejects.toThrow(TypeError);
    expect(f.seen).toHaveLength(0);
  });

  it.each(['session_expired', 'unauthenticated'])('api_401_%s_calls_on_session_ended', async (code) => {
    const ended: string[] = [];
    const f = fakeFetch(() => ({ status: 401, body: { error: code, message: 'x' } }));
    const client = createClient({ fetch: f.fetch, onSessionEnded: (c) => ended.push(c) });
    const res = await client.fetch('/api/data');
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: string }).error).toBe(code);
    expect(ended).toEqual([code]);
  });

  it('api_401_of_the_upstream_itself_does_not_end_the_session', async () => {
    const ended: string[] = [];
    const f = fakeFetch(() => ({ status: 401, body: { Message: 'denied' } }));
    const client = createClient({ fetch: f.fetch, onSessionEnded: (c) => ended.push(c) });
    await client.fetch('/api/data');
    expect(ended).toEqual([]);
  });

  it('login_resolves_to_the_user_and_sends_json_with_x_csrf', async () => {
    const f = fakeFetch(() => ({ status: 200, body: { authenticated: true, user: { id: 1, email: 'a@b.c' } } }));
    const client = createClient({ fetch: f.fetch });
    await expect(client.login({ email: 'a@b.c', password: 'pw', remember: true })).resolves.toEqual({ id: 1, email: 'a@b.c' });
    const call = f.seen[0];
    expect(call?.init.method).toBe('POST');
    expect(new Headers(call?.init.headers).get('x-csrf')).toBe('1');
    expect(JSON.parse(String(call?.init.body))).toEqual({ email: 'a@b.c', password: 'pw', remember: true });
  });

  it('login_refusal_rejects_with_status_code_message_and_reset_token', async () => {
    const f = fakeFetch(() => ({ status: 403, body: { error: 'must_reset_password', message: 'Reset first.', resetToken: 'reset_abc' } }));
    const client = createClient({ fetch: f.fetch });
    const err = await client.login({ email: 'a@b.c', password: 'pw' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err).toMatchObject({ status: 403, code: 'must_reset_password', message: 'Reset first.', resetToken: 'reset_abc' });
  });

  it('logout_everywhere_posts_the_json_body', async () => {
    const f = fakeFetch(() => ({ status: 204 }));
    const client = createClient({ fetch: f.fetch });
    await expect(client.logout({ everywhere: true })).resolves.toEqual({});
    expect(JSON.parse(String(f.seen[0]?.init.body))).toEqual({ everywhere: true });
    await client.logout();
    expect(f.seen[1]?.init.body).toBeUndefined();
  });

  it('link_urls_encode_their_query_values', () => {
    const client = createClient();
    expect(client.downloadUrl('/api/public/files/a b&c.pdf')).toBe('/links/download?path=%2Fapi%2Fpublic%2Ffiles%2Fa+b%26c.pdf');
    expect(client.portalUrl('/en/invoices?id=1&x=2')).toBe('/links/portal?redirectUrl=%2Fen%2Finvoices%3Fid%3D1%26x%3D2');
    expect(client.portalUrl()).toBe('/links/portal');
  });
});
