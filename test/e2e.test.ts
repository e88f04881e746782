/**
 * End to end: Debian's Chromium (never a downloaded browser) driven by playwright-core, on the
 * demo SPA served through STATIC_DIR. Screenshots go to test-output/screenshots/.
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { createProxyMiddleware } from 'http-proxy-middleware';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import ts from 'typescript';
import { startHarness, type Harness, type Instance, closeExpectingNoLeaks } from './support/harness.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SCREENSHOTS = fileURLToPath(new URL('../test-output/screenshots/', import.meta.url));
const DEMO = fileURLToPath(new URL('../demo/', import.meta.url));

let h: Harness;
let app: Instance;
let context: BrowserContext;
let page: Page;
let attacker: Server;
let attackerUrl: string;

/** The demo as `npm run build` makes it, without a type check (lint and the build do that). */
function buildDemo(): string {
  const out = mkdtempSync(join(tmpdir(), 'cloakroom-demo-'));
  for (const file of readdirSync(join(DEMO, 'src'))) {
    if (!file.endsWith('.ts')) continue;
    const js = ts.transpileModule(readFileSync(join(DEMO, 'src', file), 'utf8'), {
      compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ES2022, verbatimModuleSyntax: true },
    });
    writeFileSync(join(out, file.replace(/\.ts$/, '.js')), js.outputText);
  }
  cpSync(join(DEMO, 'public'), out, { recursive: true });
  return out;
}

/** A page on another site (localhost vs 127.0.0.1, another port) that tries to use the session. */
function startAttacker(target: string): Promise<Server> {
  const server = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    if (req.url === '/form') {
      res.end(`<!doctype html><form id="f" method="post" action="${target}/auth/logout"><input name="everywhere" value="true"></form>
        <script>document.getElementById('f').submit()</script>`);
    } else {
      res.end('<!doctype html><title>elsewhere</title><p>another site</p>');
    }
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

/** A dev server's proxy as Vite makes it (http-proxy, changeOrigin), on 127.0.0.1, opened as localhost. */
async function startDevProxy(target: () => string): Promise<{ server: Server; origin: string }> {
  const proxy = createProxyMiddleware({ router: target, target: 'http://127.0.0.1:1', changeOrigin: true });
  const server = createServer((req, res) => {
    void proxy(req, res, () => {
      res.writeHead(404).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, origin: `http://localhost:${(server.address() as AddressInfo).port}` };
}

async function shot(name: string): Promise<void> {
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

async function openDemo(): Promise<void> {
  await page.goto(`${app.url}/`);
  await page.waitForSelector('body[data-ready="true"]');
}

async function signIn(email: string, password: string): Promise<void> {
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.click('#signin-button');
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} missing: apt-get install chromium (.ci/run does)`);
  mkdirSync(SCREENSHOTS, { recursive: true });
  h = await startHarness();
  app = await h.start({ STATIC_DIR: buildDemo(), PORTAL_URL: `${h.upstream.url}/en` });
  attacker = await startAttacker(app.url);
  attackerUrl = `http://localhost:${(attacker.address() as AddressInfo).port}`;
  context = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), 'cloakroom-chromium-')), {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    viewport: { width: 900, height: 900 },
  });
  page = context.pages()[0] ?? (await context.newPage());
  // A missing element fails in seconds, within the test's own timeout.
  context.setDefaultTimeout(5000);
}, 40_000);

afterAll(async () => {
  await context?.close();
  await new Promise<void>((resolve) => (attacker ? attacker.close(() => resolve()) : resolve()));
  if (h) await closeExpectingNoLeaks(h);
}, 20_000);

beforeEach(async () => {
  await context.clearCookies();
});

describe('demo SPA in Chromium', () => {
  it('sign_in_shows_the_session_calls_the_api_signs_links_and_signs_out', async () => {
    await openDemo();
    await expect(page.isVisible('#signin')).resolves.toBe(true);
    await shot('01-sign-in');

    await signIn('demo@example.com', 'demo-password');
    await page.waitForSelector('#account:not([hidden])');
    expect(await page.textContent('#user-name')).toBe('Demo User');
    const iso = await page.getAttribute('#expires-at', 'data-iso');
    expect(Date.parse(iso ?? '')).toBeGreaterThan(Date.now());

    await page.click('#call-api');
    await page.waitForSelector('#api-result:not(:empty)');
    const api = await page.textContent('#api-result');
    expect(api).toContain('GET /api/auth/me → 200');
    expect(api).toContain('Demo User');
    await shot('02-signed-in');

    const invoice = await page.getAttribute('#invoice-link', 'href');
    expect(invoice).toBe('/links/download?path=%2Fapi%2Fpublic%2Fbilling%2Finvoices%2F42%2Fpdf');
    const link = await context.request.get(`${app.url}${invoice}`, { maxRedirects: 0 });
    expect(link.status()).toBe(302);
    const location = link.headers()['location'] ?? '';
    expect(location.startsWith(`${h.upstream.url}/api/public/billing/invoices/42/pdf?t=`)).toBe(true);
    const pdf = await context.request.get(location);
    expect(pdf.status()).toBe(200);
    expect(await pdf.text()).toContain('%PDF');

    const portal = await page.getAttribute('#portal-link', 'href');
    expect(portal).toBe('/links/portal?redirectUrl=%2Fen%2Finvoices');
    const portalLink = await context.request.get(`${app.url}${portal}`, { maxRedirects: 0 });
    expect(portalLink.status()).toBe(302);
    expect(portalLink.headers()['location']).toMatch(new RegExp(`^${h.upstream.url}/en/user/login\\?server=true&t=[^&]+&redirectUrl=%2Fen%2Finvoices$`));

    await page.click('#signout');
    await page.waitForSelector('#signin:not([hidden])');
    expect(await page.textContent('#signin-message')).toBe('Signed out.');
    await page.reload();
    await page.waitForSelector('body[data-ready="true"]');
    await expect(page.isVisible('#account')).resolves.toBe(false);
  }, 30_000);

  it('session_cookie_is_httponly_and_invisible_to_document_cookie', async () => {
    await openDemo();
    await signIn('demo@example.com', 'demo-password');
    await page.waitForSelector('#account:not([hidden])');
    const cookies = await context.cookies(app.url);
    const sid = cookies.find((c) => c.name === app.config.cookie.name);
    expect(sid?.httpOnly).toBe(true);
    const visible = await page.evaluate<string>('document.cookie');
    expect(visible).not.toContain(app.config.cookie.name);
    expect(visible).not.toContain(sid?.value ?? 'no-cookie');
  }, 20_000);

  it('two_factor_user_is_asked_for_the_code_then_signed_in', async () => {
    await openDemo();
    await signIn('totp@example.com', 'totp-password');
    await page.waitForSelector('#totp-row:not([hidden])');
    expect(await page.textContent('#signin-message')).toContain('Enter the code');
    await shot('03-two-factor');
    await page.fill('#totp', '123456');
    await page.click('#signin-button');
    await page.waitForSelector('#account:not([hidden])');
    expect(await page.textContent('#user-name')).toBe('Totp User');
  }, 20_000);

  it('must_reset_user_gets_the_reset_message_and_no_session', async () => {
    await openDemo();
    await signIn('reset@example.com', 'reset-password');
    await page.waitForSelector('#signin-message.error');
    expect(await page.textContent('#signin-message')).toContain('must choose a new password');
    await shot('04-must-reset');
    const session = await context.request.get(`${app.url}/auth/session`);
    expect(await session.json()).toEqual({ authenticated: false });
  }, 20_000);

  it('session_ended_elsewhere_calls_on_session_ended_at_the_next_api_call', async () => {
    await openDemo();
    await signIn('demo@example.com', 'demo-password');
    await page.waitForSelector('#account:not([hidden])');
    const sid = (await context.cookies(app.url)).find((c) => c.name === app.config.cookie.name);
    // Signed out from another tab or device: this page does not know yet.
    const out = await fetch(`${app.url}/auth/logout`, { method: 'POST', headers: { 'X-CSRF': '1', cookie: `${sid?.name}=${sid?.value}` } });
    expect(out.status).toBe(204);
    await page.click('#call-api');
    await page.waitForSelector('#session-ended:not([hidden])');
    expect(await page.getAttribute('#session-ended', 'data-code')).toMatch(/^(unauthenticated|session_expired)$/);
    await expect(page.isVisible('#signin')).resolves.toBe(true);
    await shot('05-session-ended');
  }, 20_000);
});

describe('a dev server proxying with changeOrigin', () => {
  const servers: Server[] = [];
  afterAll(async () => {
    for (const s of servers) await new Promise<void>((resolve) => s.close(() => resolve()));
  });

  it('works_with_allowed_origins_and_is_refused_origin_not_allowed_without', async () => {
    const plain = await startDevProxy(() => app.url);
    let allowedTarget = '';
    const allowed = await startDevProxy(() => allowedTarget);
    servers.push(plain.server, allowed.server);
    const dir = app.config.staticDir ?? '';
    allowedTarget = (await h.start({ STATIC_DIR: dir, ALLOWED_ORIGINS: allowed.origin })).url;

    await page.goto(`${plain.origin}/`);
    await page.waitForSelector('body[data-ready="true"]');
    await signIn('demo@example.com', 'demo-password');
    await page.waitForSelector('#signin-message.error');
    expect(await page.textContent('#signin-message')).toContain('origin_not_allowed');

    await page.goto(`${allowed.origin}/`);
    await page.waitForSelector('body[data-ready="true"]');
    await signIn('demo@example.com', 'demo-password');
    await page.waitForSelector('#account:not([hidden])');
    await page.click('#call-api');
    await page.waitForSelector('#api-result:not(:empty)');
    expect(await page.textContent('#api-result')).toContain('→ 200');
    await shot('06-dev-proxy');
    await page.click('#signout');
    await page.waitForSelector('#signin:not([hidden])');
    expect(await page.textContent('#signin-message')).toBe('Signed out.');
  }, 30_000);
});

describe('another site in the same browser', () => {
  it('cannot_sign_out_or_read_the_api_with_the_session', async () => {
    await openDemo();
    await signIn('demo@example.com', 'demo-password');
    await page.waitForSelector('#account:not([hidden])');
    const apiCalls = h.upstream.stats.apiCalls;

    const evil = await context.newPage();
    try {
      // A form post carries no X-CSRF header, and SameSite keeps the cookie off it anyway.
      const navigation = evil.waitForURL(`${app.url}/auth/logout`);
      await evil.goto(`${attackerUrl}/form`);
      await navigation;
      expect(await evil.textContent('body')).toContain('csrf_required');

      await evil.goto(`${attackerUrl}/`);
      const outcome = await evil.evaluate(async (target) => {
        const read = await fetch(`${target}/api/auth/me`, { credentials: 'include', headers: { 'X-CSRF': '1' } })
          .then((r) => `read ${r.status}`, (e: Error) => `blocked ${e.name}`);
        const session = await fetch(`${target}/auth/session`, { credentials: 'include' })
          .then((r) => `read ${r.status}`, (e: Error) => `blocked ${e.name}`);
        const blind = await fetch(`${target}/auth/logout`, { method: 'POST', mode: 'no-cors', credentials: 'include' })
          .then((r) => r.type, (e: Error) => `blocked ${e.name}`);
        return { read, session, blind };
      }, app.url);
      // CORS stops the reads; the blind post's answer is withheld too (Cross-Origin-Resource-Policy).
      expect(outcome).toEqual({ read: 'blocked TypeError', session: 'blocked TypeError', blind: 'blocked TypeError' });
    } finally {
      await evil.close();
    }

    expect(h.upstream.stats.apiCalls).toBe(apiCalls);
    await page.reload();
    await page.waitForSelector('body[data-ready="true"]');
    await page.waitForSelector('#account:not([hidden])');
    expect(await page.textContent('#user-name')).toBe('Demo User');
  }, 30_000);
});
