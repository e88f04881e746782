import { parse } from 'cookie';
import signature from 'cookie-signature';
import { isSessionIdShape } from '../store/keys.js';

/**
 * Reads the session id from the signed cookie exactly as express-session writes it
 * (`s:` + HMAC over the id), trying every secret so rotated-out secrets still verify.
 *
 * Verified values are remembered (bounded): the HMAC and its constant-time comparison are
 * a measurable share of the proxy path (docs/performance.md), and a value that verified once
 * verifies for as long as the process runs with the same secrets.
 */
export function createSessionIdReader(cookieName: string, secrets: readonly string[], maxRemembered = 10_000) {
  const marker = `${cookieName}=`;
  const verified = new Map<string, string>();
  return function readSessionId(cookieHeader: string | undefined): string | null {
    if (!cookieHeader || !cookieHeader.includes(marker)) return null;
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
