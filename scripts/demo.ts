import { fileURLToPath } from 'node:url';
import { startFakeOidc } from './fake-oidc.js';
import { startFakeUpstream, DEMO_USERS } from './fake-upstream/index.js';

/**
 * `npm run demo`: a local Nexudus-like upstream with demo users, and cloakroom in front of it
 * on the in-process store (or REDIS_URL when set). Nothing to configure, no credentials.
 * `AUTH_MODE=oidc npm run demo` adds a local OpenID Connect provider that signs in the first
 * demo user without a form.
 */
const upstream = await startFakeUpstream({ port: Number(process.env.DEMO_UPSTREAM_PORT ?? 0) });
process.env.UPSTREAM_URL ??= upstream.url;
process.env.PORT ??= '3000';
process.env.HOST ??= '127.0.0.1';
process.env.PORTAL_URL ??= `${upstream.url}/en`;
// The demo SPA (demo/, built by `npm run build` into dist/demo) is served by cloakroom itself.
process.env.STATIC_DIR ??= fileURLToPath(new URL('../demo/', import.meta.url));

const base = `http://127.0.0.1:${process.env.PORT}`;
const user = DEMO_USERS[0];
const oidc = process.env.AUTH_MODE === 'oidc' ? await startFakeOidc({ upstream }) : null;
if (oidc) {
  process.env.OIDC_ISSUER ??= oidc.issuer;
  process.env.OIDC_CLIENT_ID ??= oidc.clientId;
  process.env.OIDC_REDIRECT_URI ??= `${base}/auth/callback`;
}
process.stdout.write(`
cloakroom demo
  upstream (fake Nexudus): ${upstream.url}
  cloakroom:               ${base}
  demo SPA:                ${base}/   (open it in a browser)
  demo users:              ${DEMO_USERS.map((u) => `${u.email} / ${u.password}${u.totp ? ` (totp ${u.totp})` : ''}`).join(', ')}

Try it (cookies kept in ./demo-cookies.txt):
${
  oidc
    ? `  (oidc: provider ${oidc.issuer}, signs in ${user?.email} without a form)
  curl -sL -c demo-cookies.txt -b demo-cookies.txt '${base}/auth/login?returnTo=/auth/session'   # or open it in a browser`
    : `  curl -i -c demo-cookies.txt -H 'X-CSRF: 1' -H 'Content-Type: application/json' \\
       -d '{"email":"${user?.email}","password":"${user?.password}"}' ${base}/auth/login`
}
  curl -b demo-cookies.txt ${base}/auth/session
  curl -b demo-cookies.txt -H 'X-CSRF: 1' ${base}/api/auth/me        # no AccessToken in the answer
  curl -i -b demo-cookies.txt '${base}/links/download?path=/api/public/billing/invoices/42/pdf'
  curl -i -b demo-cookies.txt -X POST -H 'X-CSRF: 1' ${base}/auth/logout

`);
await import('../src/main.js');
