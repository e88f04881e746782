import type { IncomingMessage } from 'node:http';
import { errors, type AppError } from '../errors.js';

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

export interface AntiForgeryOptions {
  /** ALLOWED_ORIGINS; when absent, only the request's own origin is accepted. */
  allowedOrigins?: readonly string[];
  ownOrigin(req: IncomingMessage): string;
}

export function createAntiForgeryCheck(opts: AntiForgeryOptions) {
  const allowed = opts.allowedOrigins ? new Set(opts.allowedOrigins) : null;
  /**
   * `X-CSRF: 1` cannot be sent cross-site without a CORS preflight we never approve;
   * the Origin check is the second fence for unsafe methods.
   */
  return function checkAntiForgery(req: IncomingMessage, requireHeader: boolean): AppError | null {
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
