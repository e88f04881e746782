import { parse } from 'cookie';
import signature from 'cookie-signature';
import { isSessionIdShape } from '../store/keys.js';

/**
 * Reads the session id from the signed cookie exactly as express-session writes it
 * (`s:` + HMAC over the id), trying every secret so rotated-out secrets still verify.
 *
 * The header is read as express-session reads it on /auth: the same `cookie.parse` (RFC 6265:
 * the name is what stands before the first `=`, white space trimmed; surrounding quotes dropped;
 * the first of two cookies of one name wins). So a header is one session, or none, on /api and
 * /auth alike (test/hardening.test.ts checks a table of headers on both). The quick test before
 * parsing looks for the name alone: `bff.sid = v` has no `bff.sid=` in it.
 *
 * Verified values are remembered (bounded): the HMAC and its constant-time comparison are
 * a measurable share of the proxy path (docs/performance.md), and a value that verified once
 * verifies for as long as the process runs with the same secrets.
 */
export function createSessionIdReader(cookieName: string, secrets: readonly string[], maxRemembered = 10_000) {
  const verified = new Map<string, string>();
  return function readSessionId(cookieHeader: string | undefined): string | null {
    if (!cookieHeader || !cookieHeader.includes(cookieName)) return null;
    const raw = parse(cookieHeader)[cookieName];
    if (!raw || !raw.startsWith('s:')) return null;
    const known = verified.get(raw);
    if (known !== undefined) return known;
    for (const secret of secrets) {
      const sid = signature.unsign(raw.slice(2), secret);
      if (sid === false) continue;
      if (!isSessionIdShape(sid)) return null;
      if (verified.size >= maxRemembered) verified.delete(verified.keys().next().value as string);
      verified.set(raw, sid);
      return sid;
    }
    return null;
  };
}

/**
 * express-session writes a persistent cookie with `Expires` only; the contract says `Max-Age`
 * (a remembered sign-in), which does not depend on the browser's clock. This rewrites the
 * session cookie it sets on this response: `Expires=<date>` becomes `Max-Age=<seconds left>`,
 * counted from the session's own expiry (ms precision) so a fresh sign-in shows exactly
 * SESSION_ABSOLUTE_TIMEOUT. Other cookies, and the cleared cookie of a logout, pass unchanged.
 */
export function sessionCookieMaxAge(cookieName: string) {
  const ours = `${cookieName}=s%3A`;
  const expires = /; Expires=[^;]*/i;
  return (
    req: { session?: { cookie?: { maxAge?: number | null } } },
    res: { setHeader(name: string, value: number | string | readonly string[]): unknown },
    next: () => void,
  ): void => {
    const setHeader = res.setHeader.bind(res);
    res.setHeader = (name, value) => {
      if (name.toLowerCase() !== 'set-cookie' || typeof value === 'number') return setHeader(name, value);
      const rewrite = (line: string) => {
        const left = req.session?.cookie?.maxAge;
        if (!line.startsWith(ours) || typeof left !== 'number' || !expires.test(line)) return line;
        return line.replace(expires, `; Max-Age=${Math.max(0, Math.round(left / 1000))}`);
      };
      return setHeader(name, typeof value === 'string' ? rewrite(value) : value.map(rewrite));
    };
    next();
  };
}
