import { describe, it, expect } from '@jest/globals';
import {
  FORBIDDEN_API_PATHS,
  apiPathVerdict,
  canonicalApiPath,
  credentialApiPaths,
  isAmbiguousApiPath,
  compileDownloadPaths,
  decodePathFully,
  hasDotDotSegment,
  isForbiddenApiPath,
  validateDownloadPath,
} from '../src/core/upstream-paths.js';

const DEFAULT_DOWNLOAD_PATTERNS = ['/api/public/billing/invoices/*/pdf', '/api/public/files/**'];

describe('decodePathFully', () => {
  it.each([
    ['a plain path stays as it is', '/api/x', '/api/x'],
    ['a single encoding is decoded', '/api/%74oken', '/api/token'],
    ['a double encoding is decoded twice', '/api/%2574oken', '/api/token'],
    ['an encoded slash becomes a slash', '/a%2Fb', '/a/b'],
    ['unicode escapes are decoded', '/caf%C3%A9', '/café'],
  ])('%s', (_name, input, expected) => {
    expect(decodePathFully(input)).toBe(expected);
  });

  it.each([
    ['a lone percent', '/a%'],
    ['a truncated escape', '/%E0%A4%A'],
    ['invalid UTF-8', '/%C0%AF'],
    ['an encoded percent that becomes undecodable', '/%25'],
  ])('returns null for %s', (_name, input) => {
    expect(decodePathFully(input)).toBeNull();
  });
});

describe('hasDotDotSegment', () => {
  it.each([
    ['plain', '/api/../token'],
    ['at the end', '/api/x/..'],
    ['encoded lower-case', '/api/%2e%2e/token'],
    ['encoded upper-case', '/api/%2E%2E/token'],
    ['half encoded', '/api/.%2e/token'],
    ['other half encoded', '/api/%2e./token'],
    ['double-encoded', '/api/%252e%252e/token'],
    ['with backslash separators', '/api\\..\\token'],
    ['with encoded slash separators', '/api%2f..%2ftoken'],
    ['with encoded backslash separators', '/api%5c..%5ctoken'],
    ['with a matrix parameter', '/api/..;x/token'],
    ['before an undecodable tail', '/api/../%'],
  ])('finds a %s dot-dot segment', (_name, path) => {
    expect(hasDotDotSegment(path)).toBe(true);
  });

  it.each([
    ['a normal path', '/api/token'],
    ['dots inside a name', '/api/file..pdf'],
    ['three dots', '/api/.../x'],
    ['a single dot segment', '/api/./x'],
    ['dot-dot only in the query', '/api/x?p=../..'],
    ['encoded dot-dot only in the query', '/api/x?p=%2e%2e'],
    ['a leading dot-dot in a name', '/api/..x'],
  ])('ignores %s', (_name, path) => {
    expect(hasDotDotSegment(path)).toBe(false);
  });
});

describe('canonicalApiPath', () => {
  it.each([
    ['removes the query', '/api/token?x=1', '/api/token'],
    ['lower-cases', '/API/Token', '/api/token'],
    ['collapses repeated slashes', '//api//token', '/api/token'],
    ['removes a trailing slash', '/api/token/', '/api/token'],
    ['turns backslashes into slashes', '/api\\token', '/api/token'],
    ['removes matrix parameters', '/api/token;x=1', '/api/token'],
    ['removes single-dot segments', '/api/./token', '/api/token'],
    ['keeps the root', '/', '/'],
  ])('%s', (_name, input, expected) => {
    expect(canonicalApiPath(input)).toBe(expected);
  });

  it('returns null for an undecodable path', () => {
    expect(canonicalApiPath('/api/%E0%A4%A')).toBeNull();
  });
});

describe('isForbiddenApiPath', () => {
  it.each<[string, string]>([
    ...FORBIDDEN_API_PATHS.map((path) => ['the listed path', path] as [string, string]),
    ['upper-case', '/API/TOKEN'],
    ['mixed case', '/API/Token'],
    ['repeated slashes', '//api//token'],
    ['a trailing slash', '/api/token/'],
    ['an encoded letter', '/api/%74oken'],
    ['a double-encoded letter', '/api/%2574oken'],
    ['an encoded trailing slash', '/api/token%2f'],
    ['a matrix parameter', '/api/token;x'],
    ['a query', '/api/token?x=1'],
    ['a backslash separator', '/api\\token'],
    ['an encoded backslash separator', '/api%5ctoken'],
    ['a single-dot segment', '/api/./token'],
    ['a resolved dot-dot', '/api/x/../token'],
    ['a trailing dot', '/api/token.'],
    ['long s folding to s', '/api/\u017Fys/users/exchange'],
    ['the media token path in upper case', '/API/AUTH/MEDIA/CUSTOMER'],
    ['the refresh path encoded', '/api/sys/users/token%2Frefresh'],
  ])('forbids %s: %s', (_name, path) => {
    expect(isForbiddenApiPath(path)).toBe(true);
  });

  it.each([
    ['a plural neighbour', '/api/tokens'],
    ['a hyphenated neighbour', '/api/token-info'],
    ['a sub-path', '/api/token/info'],
    ['a parent path', '/api/sys/users/token'],
    ['the user profile', '/api/auth/me'],
    ['an undecodable path', '/api/token%'],
    ['the forbidden name only in the query', '/api/x?next=/api/token'],
  ])('allows %s: %s', (_name, path) => {
    expect(isForbiddenApiPath(path)).toBe(false);
  });
});

describe('isAmbiguousApiPath', () => {
  it.each([
    ['a raw fragment', '/api/auth/media/customer#x'],
    ['an empty raw fragment', '/api/token#'],
    ['a NUL', '/api/token%00'],
    ['a double-encoded NUL', '/api/token%2500'],
    ['an encoded question mark', '/api/token%3Fx=1'],
    ['a lower-case encoded question mark', '/api/token%3f'],
    ['a double-encoded question mark', '/api/token%253F'],
    ['an encoded hash', '/api/token%23'],
    ['dot-dot and an encoded space', '/api/x/..%20/token'],
    ['dot-dot and an encoded tab', '/api/x/..%09/token'],
    ['three dots', '/api/x/.../token'],
    ['dot-dot and an encoded dot', '/api/x/..%2e/token'],
    ['a dot and a space', '/api/x/.%20/token'],
    ['dot-dot and a double-encoded space', '/api/x/..%2520/token'],
    ['dotted with a matrix parameter', '/api/x/...;a/token'],
    ['plain dot-dot', '/api/x/../token'],
    ['an undecodable stage', '/api/token%'],
  ])('refuses %s: %s', (_name, path) => {
    expect(isAmbiguousApiPath(path)).toBe(true);
    expect(apiPathVerdict(path)).toBe('invalid');
  });

  it.each([
    ['a normal path', '/api/echo/x'],
    ['an encoded slash', '/api/echo/a%2Fb'],
    ['an encoded space inside a name', '/api/files/my%20file.pdf'],
    ['dots inside a name', '/api/file..pdf'],
    ['a name starting with dots', '/api/..x'],
    ['a single dot segment', '/api/./x'],
    ['a hash only in the query, encoded', '/api/x?next=%23a'],
    ['a question mark only in the query', '/api/x?a=?b'],
  ])('accepts %s: %s', (_name, path) => {
    expect(isAmbiguousApiPath(path)).toBe(false);
  });
});

describe('credentialApiPaths', () => {
  it('is the four Nexudus paths outside json mode', () => {
    expect(credentialApiPaths({ authMode: 'nexudus', jsonLoginPath: '/api/login', jsonRefreshPath: '/api/login/refresh-token' })).toEqual(FORBIDDEN_API_PATHS);
    expect(credentialApiPaths({ authMode: 'oidc' })).toEqual(FORBIDDEN_API_PATHS);
  });

  it('adds the configured login and refresh paths in json mode, canonical', () => {
    const list = credentialApiPaths({ authMode: 'json', jsonLoginPath: '/API/Session/', jsonRefreshPath: '/api/session/renew?v=2' });
    expect(list).toEqual([...FORBIDDEN_API_PATHS, '/api/session', '/api/session/renew']);
    expect(apiPathVerdict('/api/session', list)).toBe('forbidden');
    expect(apiPathVerdict('/api/%53ession/renew/', list)).toBe('forbidden');
    expect(apiPathVerdict('/api/session', FORBIDDEN_API_PATHS)).toBe('ok');
  });
});

describe('compileDownloadPaths', () => {
  const matcher = compileDownloadPaths(DEFAULT_DOWNLOAD_PATTERNS);

  it.each([
    ['an invoice pdf', '/api/public/billing/invoices/42/pdf'],
    ['an invoice pdf with a query', '/api/public/billing/invoices/42/pdf?lang=en'],
    ['a file one level below', '/api/public/files/a.pdf'],
    ['a file several levels below', '/api/public/files/a/b/c.pdf'],
    ['an encoded literal segment', '/api/public/%66iles/a.pdf'],
  ])('matches %s', (_name, path) => {
    expect(matcher.matches(path)).toBe(true);
  });

  it.each([
    ['a missing star segment', '/api/public/billing/invoices/pdf'],
    ['an empty star segment', '/api/public/billing/invoices//pdf'],
    ['two segments for one star', '/api/public/billing/invoices/1/2/pdf'],
    ['an encoded slash inside the star segment', '/api/public/billing/invoices/1%2F2/pdf'],
    ['a wrong suffix', '/api/public/billing/invoices/42/xml'],
    ['the double-star folder itself', '/api/public/files'],
    ['the double-star folder with a trailing slash', '/api/public/files/'],
    ['a different case', '/api/public/Files/a.pdf'],
    ['a dot-dot under double star', '/api/public/files/../../token'],
    ['an empty segment under double star', '/api/public/files//a'],
    ['an unrelated path', '/api/auth/me'],
    ['an undecodable path', '/api/public/files/%'],
  ])('does not match %s', (_name, path) => {
    expect(matcher.matches(path)).toBe(false);
  });

  it.each([
    ['no leading slash', 'api/files/**'],
    ['double star before the end', '/api/**/pdf'],
    ['a partial star', '/api/files/*.pdf'],
    ['an empty segment', '/api//files'],
  ])('rejects a pattern with %s', (_name, pattern) => {
    expect(() => compileDownloadPaths([pattern])).toThrow(/download path pattern/);
  });

  it('matches nothing when there are no patterns', () => {
    expect(compileDownloadPaths([]).matches('/api/public/files/a')).toBe(false);
  });
});

describe('validateDownloadPath', () => {
  const matcher = compileDownloadPaths(DEFAULT_DOWNLOAD_PATTERNS);

  it.each([
    ['an invoice pdf', '/api/public/billing/invoices/42/pdf'],
    ['a path with its query kept', '/api/public/files/a.pdf?download=1'],
    ['an encoded space kept encoded', '/api/public/files/my%20file.pdf'],
  ])('accepts %s and returns it unchanged', (_name, path) => {
    expect(validateDownloadPath(path, matcher)).toEqual({ ok: true, path });
  });

  it.each([
    ['an absolute URL', 'https://evil.com/api/public/files/a'],
    ['a javascript URL', 'javascript:alert(1)'],
    ['a protocol-relative host', '//evil.com/api/public/files/a'],
    ['a slash-backslash host', '/\\evil.com/api/public/files/a'],
    ['no leading slash', 'api/public/files/a'],
    ['an empty string', ''],
    ['a plain dot-dot', '/api/public/files/../../token'],
    ['an encoded dot-dot', '/api/public/files/%2e%2e/%2e%2e/token'],
    ['a double-encoded dot-dot', '/api/public/files/%252e%252e/x'],
    ['a single-dot segment', '/api/public/files/./a'],
    ['an encoded slash making a host', '/%2Fevil.com/api/public/files/a'],
    ['a raw newline', '/api/public/files/a\nb'],
    ['an encoded newline', '/api/public/files/a%0Ab'],
    ['a raw tab', '/api/public/files/\ta'],
    ['a C1 control', '/api/public/files/a\u0085'],
    ['a backslash', '/api/public/files\\a'],
    ['an encoded backslash', '/api/public/files%5ca'],
    ['an undecodable path', '/api/public/files/%E0%A4%A'],
    ['a fragment', '/api/public/files/a#x'],
    ['a path outside the list', '/api/auth/me'],
    ['a forbidden path', '/api/token'],
    ['more than 2048 characters', '/api/public/files/' + 'a'.repeat(2048)],
  ])('refuses %s', (_name, path) => {
    expect(validateDownloadPath(path, matcher)).toEqual({ ok: false });
  });

  it.each([
    ['undefined', undefined],
    ['an array from a repeated parameter', ['/api/public/files/a', '/api/public/files/b']],
    ['an object from bracket syntax', { a: '/api/public/files/a' }],
    ['a number', 42],
  ])('refuses a non-string: %s', (_name, path) => {
    expect(validateDownloadPath(path, matcher)).toEqual({ ok: false });
  });
});
