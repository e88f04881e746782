import { parse } from 'cookie';
import signature from 'cookie-signature';
import { isSessionIdShape } from '../store/keys.js';

/**
 * Reads the session id from the signed cookie exactly as express-session writes it
 * (`s:` + HMAC over the id), trying every secret so rotated-out secrets still verify.
 */
export function createSessionIdReader(cookieName: string, secrets: readonly string[]) {
  const marker = `${cookieName}=`;
  return function readSessionId(cookieHeader: string | undefined): string | null {
    if (!cookieHeader || !cookieHeader.includes(marker)) return null;
    const raw = parse(cookieHeader)[cookieName];
    if (!raw || !raw.startsWith('s:')) return null;
    for (const secret of secrets) {
      const sid = signature.unsign(raw.slice(2), secret);
      if (sid !== false) return isSessionIdShape(sid) ? sid : null;
    }
    return null;
  };
}
