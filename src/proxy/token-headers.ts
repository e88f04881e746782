import { containsSecret, type SecretSet } from './secret-scrubber.js';

/**
 * Response headers that carry one of the session's tokens are dropped, whole: a redacted
 * `Location` or `Link` would point somewhere else, and no header is worth the bearer. The
 * secret is found plain, percent-encoded (any characters, any hex case), or JSON-escaped.
 * Returns the names dropped so the caller can log them (names only, never values).
 */
export function dropHeadersWithSecrets(headers: Record<string, string | string[]>, set: SecretSet): string[] {
  if (set.secrets.length === 0) return [];
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
