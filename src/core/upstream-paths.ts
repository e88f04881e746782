/**
 * Path checks for requests that end up at the upstream API: the `/api/*` proxy
 * and the `/links/download` target.
 *
 * Upstream servers, intermediaries and the WHATWG URL parser (used when building
 * the upstream request) each decode and normalise paths in their own way. These
 * checks therefore look at every decoding stage and err on the side of refusal.
 */

export const MAX_DOWNLOAD_PATH_LENGTH = 2048;

const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f]/;
const LONE_SURROGATE = /\p{Cs}/u;
const SEGMENT_SEPARATORS = /[/\\]/;

/** The part before the query; a raw `%3F` stays in the path, as upstream reads it. */
function pathPart(rawPath: string): string {
  const q = rawPath.indexOf('?');
  return q === -1 ? rawPath : rawPath.slice(0, q);
}

/** Every percent-decoding stage, raw first; `complete` is false when a stage was undecodable. */
export function decodingStages(value: string): { stages: string[]; complete: boolean } {
  const stages = [value];
  let current = value;
  for (let i = 0; i <= value.length; i += 1) {
    let next: string;
    try {
      next = decodeURIComponent(current);
    } catch {
      return { stages, complete: false };
    }
    if (next === current) return { stages, complete: true };
    stages.push(next);
    current = next;
  }
  return { stages, complete: false };
}

export function decodePathFully(path: string): string | null {
  const { stages, complete } = decodingStages(path);
  return complete ? (stages[stages.length - 1] ?? null) : null;
}

// Servers that honour matrix parameters (Tomcat and friends) read `..;x` as `..`.
function segmentName(segment: string): string {
  const semi = segment.indexOf(';');
  return semi === -1 ? segment : segment.slice(0, semi);
}

function hasSegment(rawPath: string, isBad: (name: string) => boolean): boolean {
  // Stages that decode fine are still inspected when a later stage fails, so an
  // undecodable tail cannot hide an earlier `..`.
  const { stages } = decodingStages(pathPart(rawPath));
  return stages.some((stage) => stage.split(SEGMENT_SEPARATORS).some((segment) => isBad(segmentName(segment))));
}

export function hasDotDotSegment(rawPath: string): boolean {
  return hasSegment(rawPath, (name) => name === '..');
}

function hasDotSegment(rawPath: string): boolean {
  return hasSegment(rawPath, (name) => name === '.' || name === '..');
}

/**
 * Canonical form used only to compare against FORBIDDEN_API_PATHS. It is
 * deliberately looser than any one server, so that every spelling some server
 * could route to a forbidden endpoint collapses onto the listed form.
 */
export function canonicalApiPath(rawPath: string): string | null {
  const decoded = decodePathFully(pathPart(rawPath));
  if (decoded === null) return null;
  const segments: string[] = [];
  for (const raw of decoded.replace(/\\/g, '/').split('/')) {
    let name = segmentName(raw);
    // IIS ignores trailing dots and spaces in a segment, so `token.` reaches `token`.
    if (name !== '.' && name !== '..') name = name.replace(/[.\s]+$/u, '');
    if (name === '' || name === '.') continue;
    if (name === '..') {
      // Resolved rather than kept so the list still matches if a `..` check is ever bypassed.
      segments.pop();
      continue;
    }
    // Upper-then-lower folds characters such as U+017F (long s) and U+0131 (dotless i)
    // that case-insensitive routers treat as `s` and `i`.
    segments.push(name.toUpperCase().toLowerCase());
  }
  return '/' + segments.join('/');
}

export const FORBIDDEN_API_PATHS: readonly string[] = [
  '/api/token',
  '/api/sys/users/token/refresh',
  '/api/sys/users/exchange',
  '/api/auth/media/customer',
];

/**
 * The credential endpoints of this deployment: the four Nexudus ones always, and in `json` mode
 * the login and refresh paths too (else `POST /api/login` through the proxy is an unthrottled
 * password oracle). Canonical, so a configured `/API/Login/` still matches every spelling.
 */
export function credentialApiPaths(opts: { authMode: string; jsonLoginPath?: string; jsonRefreshPath?: string }): readonly string[] {
  const extra = opts.authMode === 'json' ? [opts.jsonLoginPath, opts.jsonRefreshPath] : [];
  const paths = [...FORBIDDEN_API_PATHS];
  for (const p of extra) if (p !== undefined) paths.push(canonicalApiPath(p) ?? p);
  return paths;
}

export function isForbiddenApiPath(rawPath: string, forbidden: readonly string[] = FORBIDDEN_API_PATHS): boolean {
  const canonical = canonicalApiPath(rawPath);
  return canonical !== null && forbidden.includes(canonical);
}

// A segment of dots followed by spaces, tabs or more dots (`...`, `.. `, `..\t`, `. `): servers
// that trim trailing dots and spaces (IIS, Windows file APIs) or read `...` as a parent read
// these as `.` or `..`; cloakroom does not guess which, it refuses them.
const DOTTED_SEGMENT = /^\.[.\s]+$/u;
// After a decoding stage these change where the path ends for a server that decodes and then
// parses again (`%3F`, `%23`) or reads the path as a C string (`%00`).
const PATH_ENDERS = /[?#\u0000]/;

/**
 * A path part that some upstream server may read differently from cloakroom's own checks
 * (contract: 400 `invalid_path`): `..` or a dotted segment in any decoding stage, an encoded
 * `?` or `#`, a NUL, a raw `#`, or a stage that cannot be decoded.
 */
export function isAmbiguousApiPath(rawPath: string): boolean {
  const path = pathPart(rawPath);
  if (path.includes('#')) return true;
  const { stages, complete } = decodingStages(path);
  if (!complete) return true;
  for (const stage of stages) {
    if (PATH_ENDERS.test(stage)) return true;
    for (const segment of stage.split(SEGMENT_SEPARATORS)) {
      const name = segmentName(segment);
      if (name === '..' || DOTTED_SEGMENT.test(name)) return true;
    }
  }
  return false;
}

export type ApiPathVerdict = 'ok' | 'invalid' | 'forbidden';

/** The proxy's verdict on the path part of a request (what precedes the first raw `?`). */
export function apiPathVerdict(rawPath: string, forbidden: readonly string[] = FORBIDDEN_API_PATHS): ApiPathVerdict {
  if (isAmbiguousApiPath(rawPath) || hasDotDotSegment(rawPath)) return 'invalid';
  return isForbiddenApiPath(rawPath, forbidden) ? 'forbidden' : 'ok';
}

export interface DownloadPathMatcher {
  matches(path: string): boolean;
}

type PatternSegment = { kind: 'literal'; value: string } | { kind: 'one' } | { kind: 'rest' };

function compilePattern(pattern: string): PatternSegment[] {
  if (!pattern.startsWith('/')) throw new Error(`download path pattern "${pattern}" must start with "/"`);
  const parts = pattern.slice(1).split('/');
  return parts.map((part, index): PatternSegment => {
    if (part === '') throw new Error(`download path pattern "${pattern}" has an empty segment`);
    if (part === '**') {
      if (index !== parts.length - 1) throw new Error(`download path pattern "${pattern}": "**" is only allowed as the last segment`);
      return { kind: 'rest' };
    }
    if (part === '*') return { kind: 'one' };
    // A partial glob like `*.pdf` would otherwise be taken literally and silently never match.
    if (part.includes('*')) throw new Error(`download path pattern "${pattern}": "*" must be a whole segment`);
    return { kind: 'literal', value: part };
  });
}

function matchSegments(pattern: readonly PatternSegment[], segments: readonly string[]): boolean {
  for (let i = 0; i < pattern.length; i += 1) {
    const p = pattern[i];
    if (p === undefined) return false;
    if (p.kind === 'rest') return segments.length > i;
    const segment = segments[i];
    if (segment === undefined) return false;
    if (p.kind === 'literal' && segment !== p.value) return false;
  }
  return segments.length === pattern.length;
}

/**
 * Segments of the decoded path part, or null when the path cannot be matched
 * safely: undecodable, empty or dot segments, or a backslash. Matching decoded
 * segments means `a%2Fb` is two segments, as an upstream that decodes `%2F` sees it.
 */
function downloadSegments(path: string): string[] | null {
  const decoded = decodePathFully(pathPart(path));
  if (decoded === null || !decoded.startsWith('/') || decoded.includes('\\')) return null;
  const segments = decoded.slice(1).split('/');
  if (segments.some((s) => s === '' || s === '.' || s === '..')) return null;
  return segments;
}

export function compileDownloadPaths(patterns: string[]): DownloadPathMatcher {
  const compiled = patterns.map(compilePattern);
  return {
    matches(path: string): boolean {
      const segments = downloadSegments(path);
      if (segments === null) return false;
      return compiled.some((pattern) => matchSegments(pattern, segments));
    },
  };
}

export type DownloadPathResult = { ok: true; path: string } | { ok: false };

export function validateDownloadPath(path: unknown, matcher: DownloadPathMatcher): DownloadPathResult {
  if (typeof path !== 'string') return { ok: false };
  if (path.length === 0 || path.length > MAX_DOWNLOAD_PATH_LENGTH) return { ok: false };
  // A leading single `/` also rules out a scheme and a `//host` authority.
  if (path[0] !== '/' || path[1] === '/' || path[1] === '\\') return { ok: false };
  if (path.includes('\\') || CONTROL_CHARS.test(path) || LONE_SURROGATE.test(path)) return { ok: false };
  // `?t=` is appended after the path; a fragment would swallow it.
  if (path.includes('#')) return { ok: false };
  const decodedPath = decodePathFully(pathPart(path));
  if (decodedPath === null) return { ok: false };
  if (decodedPath.startsWith('//') || decodedPath.includes('\\') || CONTROL_CHARS.test(decodedPath)) return { ok: false };
  if (hasDotSegment(path)) return { ok: false };
  if (!matcher.matches(path)) return { ok: false };
  return { ok: true, path };
}
