import type { IncomingMessage } from 'node:http';
import { errors, type AppError } from '../errors.js';

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

export interface AntiForgeryOptions {
  /** ALLOWED_ORIGINS; when absent, only the request's own origin is accepted. */
  allowedOrigins?: readonly string[];
  ownOrigin(req: IncomingMessage): string;
}

/**
 * Who calls a group of routes, and so what shows a call was not forged:
 * - `always`: the SPA's scripts (the proxy): `X-CSRF: 1` on every method, Origin on unsafe ones;
 * - `unsafe-methods`: scripts and forms (/auth): `X-CSRF: 1` on all but GET, Origin on unsafe ones. HEAD
 *   needs it too (contract): Express answers HEAD with the GET handler, so a HEAD /auth/exchange
 *   would otherwise make a session from a cross-site request nobody sees the answer of;
 * - `navigation`: plain `<a href>` navigations (/links, probes): nothing to check;
 * - `provider-called`: server to server (back-channel logout): the call proves itself with a signed token.
 */
export type AntiForgeryRule = 'always' | 'unsafe-methods' | 'navigation' | 'provider-called';

/** What a router declares: its rule, and the paths under it (exact, as Express's req.path) that differ. */
export interface RouterAntiForgery {
  rule: AntiForgeryRule;
  except?: Readonly<Record<string, AntiForgeryRule>>;
}

export type AntiForgeryCheck = (req: IncomingMessage, rule: AntiForgeryRule) => AppError | null;

export function createAntiForgeryCheck(opts: AntiForgeryOptions): AntiForgeryCheck {
  const allowed = opts.allowedOrigins ? new Set(opts.allowedOrigins) : null;
  /**
   * `X-CSRF: 1` cannot be sent cross-site without a CORS preflight we never approve;
   * the Origin check is the second fence for unsafe methods.
   */
  return function checkAntiForgery(req: IncomingMessage, rule: AntiForgeryRule): AppError | null {
    if (rule === 'navigation' || rule === 'provider-called') return null;
    const requireHeader = rule === 'always' || req.method !== 'GET';
    if (requireHeader && req.headers['x-csrf'] !== '1') return errors.csrfRequired();
    const origin = req.headers.origin;
    if (origin !== undefined && !SAFE_METHODS.has(req.method ?? 'GET')) {
      const ok = allowed ? allowed.has(origin) : origin === opts.ownOrigin(req);
      if (!ok) return errors.originNotAllowed();
    }
    return null;
  };
}

/** The origin the browser sees: forwarded headers count only from a trusted proxy. */
export function ownOriginResolver(trusts: (req: IncomingMessage) => boolean, secureCookies: boolean) {
  return (req: IncomingMessage): string => {
    const trusted = trusts(req);
    const first = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v)?.split(',')[0]?.trim();
    const forwardedProto = trusted ? first(req.headers['x-forwarded-proto']) : undefined;
    const forwardedHost = trusted ? first(req.headers['x-forwarded-host']) : undefined;
    const encrypted = (req.socket as { encrypted?: boolean }).encrypted === true;
    // Secure cookies only travel over https, so TLS ends in front of us even if no proxy is trusted.
    const proto = forwardedProto ?? (encrypted || secureCookies ? 'https' : 'http');
    return `${proto}://${forwardedHost ?? req.headers.host ?? ''}`;
  };
}

/** A router's declared rule as middleware, run before its bodies are parsed. */
export function antiForgeryGuard(check: AntiForgeryCheck, declared: RouterAntiForgery) {
  return (req: IncomingMessage & { path: string }, _res: unknown, next: (err?: unknown) => void): void => {
    next(check(req, declared.except?.[req.path] ?? declared.rule) ?? undefined);
  };
}
