/**
 * Builders for the URLs the BFF sends browsers to. Tokens and caller-supplied
 * values are always encoded, so a token can never break out of its parameter.
 */

function withoutTrailingSlash(url: string): string {
  return url.replace(/\/+$/, '');
}

/** The separator that appends one more query parameter to `url`. */
function querySeparator(url: string): string {
  if (!url.includes('?')) return '?';
  return url.endsWith('?') || url.endsWith('&') ? '' : '&';
}

/**
 * Percent-encodes characters that may not appear literally in a Location header
 * (non-ASCII, spaces); existing `%XX` escapes stay as they are, so an already
 * encoded path is not double-encoded.
 */
export function escapeUrlUnsafeChars(value: string): string {
  // A lone surrogate has no UTF-8 form; U+FFFD is what a browser would send for it.
  return value.replace(/[^\x21-\x7e]/gu, (char) => (/\p{Cs}/u.test(char) ? '%EF%BF%BD' : encodeURIComponent(char)));
}

export function buildDownloadLocation(mediaBaseUrl: string, path: string, token: string): string {
  const target = withoutTrailingSlash(mediaBaseUrl) + escapeUrlUnsafeChars(path);
  return `${target}${querySeparator(target)}t=${encodeURIComponent(token)}`;
}

export function buildPortalLocation(portalUrl: string, loginPath: string, token: string, redirectUrl?: string): string {
  const target = withoutTrailingSlash(portalUrl) + loginPath;
  const redirect = redirectUrl === undefined || redirectUrl === '' ? '' : `&redirectUrl=${encodeURIComponent(redirectUrl)}`;
  return `${target}${querySeparator(target)}t=${encodeURIComponent(token)}${redirect}`;
}

export function buildLoginRedirect(loginPageUrl: string, returnTo: string): string {
  // The fragment must stay last, or the parameter would end up inside it and never reach the server.
  const hash = loginPageUrl.indexOf('#');
  const base = hash === -1 ? loginPageUrl : loginPageUrl.slice(0, hash);
  const fragment = hash === -1 ? '' : loginPageUrl.slice(hash);
  return `${base}${querySeparator(base)}returnTo=${encodeURIComponent(returnTo)}${fragment}`;
}
