import { decodingStages } from './upstream-paths.js';
/**
 * Validation of browser-supplied return targets (`returnTo`, `redirectUrl`).
 *
 * A target is only ever used as a same-origin path. Anything that a browser, a
 * proxy or a later decoding step could read as "another host" is refused, so the
 * checks run on the raw value and on every stage of percent-decoding.
 */

export const MAX_REDIRECT_LENGTH = 2048;

// C0, DEL and C1. Browsers silently drop tab/CR/LF inside URLs, which turns
// `/\t/evil.com` into `//evil.com`, so none of these may appear anywhere.
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f]/;
// A lone surrogate makes encodeURIComponent throw later on; refusing it here keeps
// that failure a 400 instead of a 500.
const LONE_SURROGATE = /\p{Cs}/u;

// A reserved TLD, so the probe can never coincide with a real configured origin.
const PROBE_BASE = 'https://probe.invalid';
const PROBE_ORIGIN = new URL(PROBE_BASE).origin;

/** Every percent-decoding stage (raw first), or null when one cannot be decoded: a value we cannot decode is a value we cannot reason about. */
function decodingStagesOrNull(value: string): string[] | null {
  const { stages, complete } = decodingStages(value);
  return complete ? stages : null;
}

function isLocalForm(value: string): boolean {
  if (value.length === 0 || value[0] !== '/') return false;
  const second = value[1];
  if (second === '/' || second === '\\') return false;
  if (value.includes('\\') || CONTROL_CHARS.test(value) || LONE_SURROGATE.test(value)) return false;
  // The textual rules above are the contract; the parser check catches what they
  // cannot see, such as dot segments (`/.//evil.com`, `/%2e//evil.com`) that the
  // WHATWG parser folds into a `//host`-looking pathname.
  let parsed: URL;
  try {
    parsed = new URL(value, PROBE_BASE);
  } catch {
    return false;
  }
  return parsed.origin === PROBE_ORIGIN && parsed.pathname.startsWith('/') && !parsed.pathname.startsWith('//');
}

export function isLocalRedirectPath(value: string): boolean {
  if (value.length > MAX_REDIRECT_LENGTH) return false;
  const stages = decodingStagesOrNull(value);
  if (stages === null) return false;
  return stages.every(isLocalForm);
}

export type ReturnToResult = { ok: true; path: string } | { ok: false };

/**
 * `value` is whatever the query parser produced, so it may be an array (repeated
 * parameter) or an object (`a[b]=c`); only a single string is meaningful.
 * The accepted path is returned undecoded: the caller puts it in a Location
 * header or re-encodes it, and decoding here would change what the browser sees.
 */
export function resolveReturnTo(value: unknown, fallback = '/'): ReturnToResult {
  if (value === undefined || value === '') return { ok: true, path: fallback };
  if (typeof value !== 'string') return { ok: false };
  return isLocalRedirectPath(value) ? { ok: true, path: value } : { ok: false };
}
