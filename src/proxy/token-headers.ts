import { containsSecret, type SecretSet } from './secret-scrubber.js';

/**
 * Response headers that carry one of the session's tokens are dropped, whole: a redacted
 * `Location` or `Link` would point somewhere else, and no header is worth the bearer. The
 * secret is found plain, percent-encoded (any characters, any hex case), or JSON-escaped.
 * Returns the names dropped so the caller can log them (names only, never values).
 */
export function dropHeadersWithSecrets(headers: Record<string, string | string[]>, set: SecretSet): string[] {
  if (set.secrets.length === 0) return [];
  // One look at every value first (the usual answer: none carries a secret). A line break can
  // be neither in a header value nor in an escape unit, so no match spans two values.
  let all = '';
  for (const name in headers) {
    const value = headers[name];
    if (value !== undefined) all += (typeof value === 'string' ? value : value.join('\n')) + '\n';
  }
  if (!containsSecret(all, set)) return [];
  const dropped: string[] = [];
  for (const name of Object.keys(headers)) {
    const value = headers[name];
    if (value === undefined) continue;
    const values = Array.isArray(value) ? value : [value];
    if (values.some((v) => containsSecret(v, set))) {
      delete headers[name];
      dropped.push(name);
    }
  }
  return dropped;
}
