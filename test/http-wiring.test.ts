import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { IncomingMessage } from 'node:http';
import request from 'supertest';
import { createAntiForgeryCheck, type AntiForgeryRule } from '../src/http/anti-forgery.js';
import { findRoute, routeLabel, type Route, type RouteGroup } from '../src/http/route-table.js';
import { startHarness, type Harness, type Instance, closeExpectingNoLeaks } from './support/harness.js';

describe('route table', () => {
  const table: Route<string>[] = [
    { group: 'api', match: { prefix: '/api/' }, handler: 'proxy' },
    { group: 'ops', match: { paths: ['/healthz', '/readyz', '/metrics'] }, handler: 'ops' },
    { group: 'auth', match: { prefix: '/auth/' }, handler: 'auth' },
    { group: 'links', match: { prefix: '/links/' }, handler: 'links' },
  ];
  const cases: [string, RouteGroup | undefined, string][] = [
    ['/api/public/me?x=1', 'api', '/api/*'],
    ['/api/', 'api', '/api/*'],
    ['/api', undefined, 'other'],
    ['/api?/x', undefined, 'other'],
    ['/healthz', 'ops', '/healthz'],
    ['/metrics?name=x', 'ops', '/metrics'],
    ['/healthz/x', undefined, 'other'],
    ['/auth/login?returnTo=/a', 'auth', '/auth/login'],
    ['/auth/back-channel', 'auth', 'other'],
    ['/auth/backchannel-logout', 'auth', '/auth/backchannel-logout'],
    ['/auth/callback?code=x&state=y', 'auth', '/auth/callback'],
    ['/auth/sessions', 'auth', '/auth/sessions'],
    ['/auth/sessions/AbC-123_x', 'auth', '/auth/sessions'],
    ['/auth/sessions/a/b', 'auth', 'other'],
    ['/auth/login/', 'auth', '/auth/login'],
    ['/auth/client.js', 'auth', '/auth/client.js'],
    ['/auth/xyzzy', 'auth', 'other'],
    ['/links/portal?redirectUrl=/x', 'links', '/links/portal'],
    ['/links/anything', 'links', 'other'],
    ['/auth/Login', 'auth', 'other'],
    ['/auth/a/b', 'auth', 'other'],
    ['/links/download?path=/x', 'links', '/links/download'],
    ['/', undefined, 'other'],
    ['/index.html', undefined, 'other'],
  ];
  it.each(cases)('%s_belongs_to_group_%s_labelled_%s', (url, group, label) => {
    const route = findRoute(table, url);
    expect(route?.group).toBe(group);
    expect(routeLabel(route, url)).toBe(label);
  });
});

describe('anti-forgery rules', () => {
  const check = createAntiForgeryCheck({ ownOrigin: () => 'http://app.test' });
  const req = (method: string, headers: Record<string, string> = {}) => ({ method, headers, socket: {} }) as unknown as IncomingMessage;
  const cases: [AntiForgeryRule, string, Record<string, string>, string | null][] = [
    ['always', 'GET', {}, 'csrf_required'],
    ['always', 'GET', { 'x-csrf': '1' }, null],
    ['always', 'POST', { 'x-csrf': '1', origin: 'http://evil.test' }, 'origin_not_allowed'],
    ['always', 'POST', { 'x-csrf': '1', origin: 'http://app.test' }, null],
    ['unsafe-methods', 'GET', {}, null],
    ['unsafe-methods', 'HEAD', {}, 'csrf_required'],
    ['unsafe-methods', 'HEAD', { 'x-csrf': '1' }, null],
    ['unsafe-methods', 'OPTIONS', {}, 'csrf_required'],
    ['unsafe-methods', 'POST', {}, 'csrf_required'],
    ['unsafe-methods', 'POST', { 'x-csrf': '1', origin: 'http://evil.test' }, 'origin_not_allowed'],
    ['navigation', 'POST', { origin: 'http://evil.test' }, null],
    ['provider-called', 'POST', {}, null],
  ];
  it.each(cases)('%s_%s_%j_answers_%s', (rule, method, headers, code) => {
    expect(check(req(method, headers), rule)?.code ?? null).toBe(code);
  });
});

describe('the app reads one route table', () => {
  let h: Harness;
  let app: Instance;
  beforeAll(async () => {
    h = await startHarness();
    app = await h.start();
  });
  afterAll(() => closeExpectingNoLeaks(h));

  it('each_route_group_is_counted_under_its_route_label', async () => {
    await request(app.url).get('/api/public/nothing').set('X-CSRF', '1');
    await request(app.url).get('/healthz');
    await request(app.url).get('/auth/session');
    await request(app.url).get('/AUTH/session');
    await request(app.url).get('/nowhere/at/all');
    const text = (await request(app.url).get('/metrics')).text;
    expect(text).toMatch(/cloakroom_http_requests_total\{route="\/api\/\*",status="401"\} 1/);
    expect(text).toMatch(/cloakroom_http_requests_total\{route="\/healthz",status="200"\} 1/);
    expect(text).toMatch(/cloakroom_http_requests_total\{route="\/auth\/session",status="200"\} 1/);
    // Express matches /AUTH case-insensitively; the label stays bounded all the same.
    expect(text).toMatch(/cloakroom_http_requests_total\{route="other",status="200"\} 1/);
    expect(text).toMatch(/cloakroom_http_requests_total\{route="other",status="404"\} 1/);
  });

  it('each_router_applies_its_own_anti_forgery_rule', async () => {
    // The proxy: the header on every method.
    expect((await request(app.url).get('/api/public/me')).body.error).toBe('csrf_required');
    // /auth: unsafe methods only.
    expect((await request(app.url).get('/auth/session')).status).toBe(200);
    expect((await request(app.url).post('/auth/logout')).body.error).toBe('csrf_required');
    // /links: navigations, no header.
    expect((await request(app.url).get('/links/download')).body.error).toBe('invalid_path');
    // Without oidc there is no provider-called route: back-channel logout is an ordinary unsafe call.
    expect((await request(app.url).post('/auth/backchannel-logout').type('form').send({ logout_token: 'x' })).body.error).toBe('csrf_required');
  });
});
