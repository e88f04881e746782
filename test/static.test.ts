import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { ConfigError, loadConfig } from '../src/config.js';
import { isHashedAssetName, isSpaNavigation, spaContentSecurityPolicy } from '../src/http/static-routes.js';
import { startHarness, type Harness, type Instance, closeExpectingNoLeaks } from './support/harness.js';

let h: Harness;
let app: Instance;
let secure: Instance;
let custom: Instance;
let dir: string;

const NAVIGATION = { Accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8', 'Sec-Fetch-Dest': 'document', 'Sec-Fetch-Mode': 'navigate' };

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cloakroom-spa-'));
  writeFileSync(join(dir, 'index.html'), '<!doctype html><title>spa</title>');
  writeFileSync(join(dir, 'app.js'), 'console.log("spa")');
  mkdirSync(join(dir, 'assets'));
  writeFileSync(join(dir, 'assets', 'app.3f2a9c1b.js'), 'console.log("hashed")');
  h = await startHarness();
  app = await h.start({ STATIC_DIR: dir });
  secure = await h.start({ STATIC_DIR: dir, COOKIE_SECURE: 'true' });
  custom = await h.start({ STATIC_DIR: dir, CONTENT_SECURITY_POLICY: "default-src 'self'; connect-src 'self' https://api.example.com" });
});
afterAll(() => closeExpectingNoLeaks(h));

describe('STATIC_DIR', () => {
  it('serves_the_spa_files_from_the_same_origin', async () => {
    const res = await request(app.url).get('/app.js');
    expect(res.status).toBe(200);
    expect(res.text).toContain('spa');
  });

  it('unknown_path_navigated_to_falls_back_to_index_html_with_no_cache', async () => {
    const res = await request(app.url).get('/invoices/42').set(NAVIGATION);
    expect(res.status).toBe(200);
    expect(res.text).toContain('<title>spa</title>');
    expect(res.headers['cache-control']).toBe('no-cache');
  });

  it('unknown_path_with_plain_accept_text_html_falls_back_too', async () => {
    const res = await request(app.url).get('/settings').set('Accept', 'text/html');
    expect(res.status).toBe(200);
    expect(res.text).toContain('<title>spa</title>');
  });

  it('missing_script_or_favicon_asked_with_any_accept_is_a_404_not_index_html', async () => {
    for (const p of ['/assets/app.js', '/favicon.ico']) {
      const res = await request(app.url).get(p).set('Accept', '*/*');
      expect(res.status).toBe(404);
      expect(res.body.error).toBe('not_found');
    }
  });

  it('missing_file_with_an_extension_is_a_404_even_for_an_html_navigation', async () => {
    const res = await request(app.url).get('/assets/app.js').set(NAVIGATION);
    expect(res.status).toBe(404);
  });

  it('accept_any_without_text_html_never_gets_index_html', async () => {
    const res = await request(app.url).get('/invoices/42').set('Accept', '*/*');
    expect(res.status).toBe(404);
  });

  it('a_subresource_fetch_that_mentions_html_is_not_a_navigation', async () => {
    const res = await request(app.url).get('/invoices/42').set({ Accept: 'text/html', 'Sec-Fetch-Dest': 'empty', 'Sec-Fetch-Mode': 'cors' });
    expect(res.status).toBe(404);
  });

  it('unknown_path_not_accepting_html_is_a_json_404', async () => {
    const res = await request(app.url).get('/missing.js').set('Accept', 'application/javascript');
    expect(res.status).toBe(404);
    expect(res.body.error).toBe('not_found');
  });

  it('hashed_asset_is_cached_for_a_year_and_immutable', async () => {
    const res = await request(app.url).get('/assets/app.3f2a9c1b.js');
    expect(res.status).toBe(200);
    expect(res.headers['cache-control']).toBe('public, max-age=31536000, immutable');
  });

  it('index_html_itself_is_no_cache', async () => {
    for (const p of ['/', '/index.html']) {
      const res = await request(app.url).get(p).set(NAVIGATION);
      expect(res.status).toBe(200);
      expect(res.headers['cache-control']).toBe('no-cache');
    }
  });

  it('plain_http_policy_has_no_upgrade_insecure_requests', async () => {
    const res = await request(app.url).get('/').set(NAVIGATION);
    const csp = String(res.headers['content-security-policy']);
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('upgrade-insecure-requests');
    expect(res.headers['strict-transport-security']).toBeUndefined();
  });

  it('secure_cookie_policy_upgrades_insecure_requests', async () => {
    const res = await request(secure.url).get('/').set(NAVIGATION);
    expect(String(res.headers['content-security-policy'])).toContain('upgrade-insecure-requests');
    expect(res.headers['strict-transport-security']).toBeDefined();
  });

  it('content_security_policy_variable_replaces_the_default', async () => {
    const res = await request(custom.url).get('/').set(NAVIGATION);
    expect(res.headers['content-security-policy']).toBe("default-src 'self'; connect-src 'self' https://api.example.com");
  });

  it('api_auth_and_links_paths_never_fall_back_to_the_spa', async () => {
    const api = await request(app.url).get('/api/echo/x').set('Accept', 'text/html').set('X-CSRF', '1');
    expect(api.status).toBe(401);
    const links = await request(app.url).get('/links/nope').set(NAVIGATION);
    expect(links.status).toBe(404);
    expect(links.headers['content-type']).toMatch(/json/);
    const auth = await request(app.url).get('/auth/nope').set(NAVIGATION);
    expect(auth.status).toBe(404);
  });
});

describe('GET /auth/client.js', () => {
  it('serves_the_package_file_as_a_javascript_module_without_x_csrf', async () => {
    const res = await request(app.url).get('/auth/client.js');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/javascript/);
    expect(res.headers['cache-control']).toBe('no-cache');
    expect(res.text).toBe(readFileSync(new URL('../packages/client/index.js', import.meta.url), 'utf8'));
    expect(res.text).toContain('export function createClient');
  });
});

describe('isHashedAssetName', () => {
  it.each([
    ['app.3f2a9c1b.js', true],
    ['index-BXk3j2Qa.js', true],
    ['chunk.a1b2c3d4e5f6.css', true],
    ['logo.12345678.svg', true],
    ['app.js', false],
    ['index.html', false],
    ['logo.original.png', false],
    ['app.3f2a9c.js', false],
    ['favicon.ico', false],
  ])('%s_is_hashed_%s', (name, hashed) => {
    expect(isHashedAssetName(name)).toBe(hashed);
  });
});

describe('isSpaNavigation', () => {
  const nav = { method: 'GET', path: '/invoices/42', accept: 'text/html', secFetchDest: undefined, secFetchMode: undefined };
  it.each([
    ['html_navigation', true, nav],
    ['browser_navigation_headers', true, { ...nav, accept: NAVIGATION.Accept, secFetchDest: 'document', secFetchMode: 'navigate' }],
    ['accept_any', false, { ...nav, accept: '*/*' }],
    ['no_accept', false, { ...nav, accept: undefined }],
    ['text_htmlx_is_not_html', false, { ...nav, accept: 'text/htmlx' }],
    ['file_extension', false, { ...nav, path: '/assets/app.js' }],
    ['script_destination', false, { ...nav, secFetchDest: 'script' }],
    ['cors_mode', false, { ...nav, secFetchMode: 'cors' }],
    ['post', false, { ...nav, method: 'POST' }],
    ['api_path', false, { ...nav, path: '/api/x' }],
    ['auth_path', false, { ...nav, path: '/auth' }],
  ])('%s_gives_%s', (_name, expected, hints) => {
    expect(isSpaNavigation(hints)).toBe(expected);
  });
});

describe('spaContentSecurityPolicy', () => {
  it('follows_the_cookie_setting_and_an_override', () => {
    expect(spaContentSecurityPolicy({ cookieSecure: false })).not.toContain('upgrade-insecure-requests');
    expect(spaContentSecurityPolicy({ cookieSecure: true })).toMatch(/; upgrade-insecure-requests$/);
    expect(spaContentSecurityPolicy({ cookieSecure: true, override: "default-src 'none'" })).toBe("default-src 'none'");
  });
});

describe('CONTENT_SECURITY_POLICY', () => {
  it('multi_line_value_is_a_configuration_error_naming_the_variable', () => {
    let problems: string[] = [];
    try {
      loadConfig({ NODE_ENV: 'test', UPSTREAM_URL: 'http://127.0.0.1:1', CONTENT_SECURITY_POLICY: "default-src 'self'\r\nX-Injected: 1" });
    } catch (err) {
      if (err instanceof ConfigError) problems = err.problems;
    }
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^CONTENT_SECURITY_POLICY: /);
  });
});
