import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { startHarness, type Harness, type Instance, closeExpectingNoLeaks } from './support/harness.js';

let h: Harness;
let app: Instance;

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cloakroom-spa-'));
  writeFileSync(join(dir, 'index.html'), '<!doctype html><title>spa</title>');
  writeFileSync(join(dir, 'app.js'), 'console.log("spa")');
  h = await startHarness();
  app = await h.start({ STATIC_DIR: dir });
});
afterAll(() => closeExpectingNoLeaks(h));

describe('STATIC_DIR', () => {
  it('serves_the_spa_files_from_the_same_origin', async () => {
    const res = await request(app.url).get('/app.js');
    expect(res.status).toBe(200);
    expect(res.text).toContain('spa');
  });

  it('unknown_path_accepting_html_falls_back_to_index_html', async () => {
    const res = await request(app.url).get('/invoices/42').set('Accept', 'text/html');
    expect(res.status).toBe(200);
    expect(res.text).toContain('<title>spa</title>');
  });

  it('unknown_path_not_accepting_html_is_a_json_404', async () => {
    const res = await request(app.url).get('/missing.js').set('Accept', 'application/javascript');
    expect(res.status).toBe(404);
    expect(res.body.error).toBe('not_found');
  });

  it('api_auth_and_links_paths_never_fall_back_to_the_spa', async () => {
    const api = await request(app.url).get('/api/echo/x').set('Accept', 'text/html').set('X-CSRF', '1');
    expect(api.status).toBe(401);
    const links = await request(app.url).get('/links/nope').set('Accept', 'text/html');
    expect(links.status).toBe(404);
    expect(links.headers['content-type']).toMatch(/json/);
  });
});
