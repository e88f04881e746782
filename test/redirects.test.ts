import { describe, it, expect } from '@jest/globals';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { isLocalRedirectPath, resolveReturnTo } from '../src/core/redirects.js';

const APP_ORIGIN = 'https://app.example.com';
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f]/;

/** The README's property: the browser stays on our origin, on a plain local path. */
function landsOnOrigin(value: string): boolean {
  let url: URL;
  try {
    url = new URL(value, APP_ORIGIN);
  } catch {
    return false;
  }
  return (
    url.origin === APP_ORIGIN &&
    url.pathname.startsWith('/') &&
    !url.pathname.startsWith('//') &&
    !url.pathname.includes('\\') &&
    !CONTROL_CHARS.test(url.pathname)
  );
}

describe('isLocalRedirectPath', () => {
  const accepted: [string, string][] = [
    ['root', '/'],
    ['path with query and fragment', '/a/b?x=1#y'],
    ['unicode path', '/café'],
    ['encoded unicode path', '/caf%C3%A9'],
    ['encoded space', '/en/my%20invoices'],
    ['double slash inside the query', '/a?next=//evil.com'],
    ['a colon later in the path', '/a/b:c'],
    ['an at-sign in the path', '/user@example'],
    ['exactly 2048 characters', '/' + 'a'.repeat(2047)],
    ['dot segments that stay local', '/a/../b'],
  ];
  it.each(accepted)('accepts %s', (_name, value) => {
    expect(isLocalRedirectPath(value)).toBe(true);
    expect(landsOnOrigin(value)).toBe(true);
  });

  const refused: [string, string][] = [
    ['empty string', ''],
    ['no leading slash', 'a/b'],
    ['encoded slash decoding to //', '/%2Fevil.com'],
    ['lower-case encoded slash', '/%2fevil.com'],
    ['double-encoded slash', '/%252Fevil.com'],
    ['encoded backslash', '/%5Cevil.com'],
    ['protocol-relative', '//evil.com'],
    ['slash-backslash', '/\\evil.com'],
    ['backslash later in the path', '/a\\b'],
    ['absolute https URL', 'https://evil.com'],
    ['javascript scheme', 'javascript:alert(1)'],
    ['CRLF header injection', '/%0d%0aSet-Cookie:x'],
    ['raw CRLF', '/a\r\nSet-Cookie:x'],
    ['raw tab before //', '/\t/evil.com'],
    ['encoded tab before //', '/%09/evil.com'],
    ['raw NUL', '/a\u0000b'],
    ['DEL', '/a\u007fb'],
    ['raw C1 control', '/a\u0085b'],
    ['encoded C1 control', '/a%C2%85b'],
    ['2049 characters', '/' + 'a'.repeat(2048)],
    ['percent sign alone', '%'],
    ['truncated escape after slash', '/%'],
    ['truncated UTF-8 escape', '/%E0%A4%A'],
    ['invalid UTF-8', '/%C0%AF'],
    ['encoded percent that decodes to an undecodable value', '/%25'],
    ['dot segment the parser folds into //', '/.//evil.com'],
    ['encoded dot segment folded into //', '/%2e//evil.com'],
    ['parent segment folded into //', '/..//evil.com'],
    ['encoded parent segment after a segment folded into //', '/a/%2e%2e//evil.com'],
    ['lone surrogate', '/a\ud800'],
    ['leading space', ' /a'],
  ];
  it.each(refused)('refuses %s', (_name, value) => {
    expect(isLocalRedirectPath(value)).toBe(false);
  });
});

describe('resolveReturnTo', () => {
  it('returns the default fallback when the value is missing', () => {
    expect(resolveReturnTo(undefined)).toEqual({ ok: true, path: '/' });
  });
  it('returns the given fallback when the value is empty', () => {
    expect(resolveReturnTo('', '/home')).toEqual({ ok: true, path: '/home' });
  });
  it('returns an accepted value undecoded', () => {
    expect(resolveReturnTo('/en/invoices%2F42?x=%20')).toEqual({ ok: true, path: '/en/invoices%2F42?x=%20' });
  });
  it('refuses an array from a repeated query parameter', () => {
    expect(resolveReturnTo(['/a', '/b'])).toEqual({ ok: false });
  });
  it('refuses an object from bracket query syntax', () => {
    expect(resolveReturnTo({ a: '/b' })).toEqual({ ok: false });
  });
  it('refuses a number', () => {
    expect(resolveReturnTo(42)).toEqual({ ok: false });
  });
  it('refuses an off-origin string', () => {
    expect(resolveReturnTo('//evil.com')).toEqual({ ok: false });
  });
});

describe('open-redirect corpus', () => {
  const text = readFileSync(new URL('../../shared/data/openredirects.txt', import.meta.url), 'utf8');
  // The final newline ends the last line; it does not start another one.
  const lines = text.replace(/\n$/, '').split('\n');

  it('reads all 559 lines, the first one empty', () => {
    expect(lines).toHaveLength(559);
    expect(lines[0]).toBe('');
  });

  it.each(lines.map((line, index) => [index + 1, line] as const))(
    'line %i is refused or stays on the origin on a plain local path',
    (_lineNumber, line) => {
      if (isLocalRedirectPath(line)) expect(landsOnOrigin(line)).toBe(true);
    },
  );

  it('refuses at least 500 of the lines, so the property is not satisfied vacuously', () => {
    const refused = lines.filter((line) => !isLocalRedirectPath(line));
    expect(refused.length).toBeGreaterThanOrEqual(500);
  });
});

describe('isLocalRedirectPath property', () => {
  const hostilePiece = fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom('/', '\\', '%2f', '%2F', '%5c', '%5C', '%09', '%0a', '%0d', '%00', '%25', '%2e', '@', ':', '.', '..', '//', '\t', '\n', 'javascript', 'http', 'evil.com', '?', '#', '%252f', '%C2%85', 'é', '〱', 'ｰ', '／', '\u0085', '\u2028') },
    { weight: 1, arbitrary: fc.string({ maxLength: 4 }) },
    { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 3 }) },
  );
  const candidate = fc.oneof(
    fc.array(hostilePiece, { maxLength: 10 }).map((pieces) => pieces.join('')),
    fc.array(hostilePiece, { maxLength: 10 }).map((pieces) => '/' + pieces.join('')),
  );

  it('never accepts a value that leaves the origin, directly or after one decode', () => {
    let acceptedCount = 0;
    fc.assert(
      fc.property(candidate, (value) => {
        if (!isLocalRedirectPath(value)) return;
        acceptedCount += 1;
        expect(landsOnOrigin(value)).toBe(true);
        expect(landsOnOrigin(decodeURIComponent(value))).toBe(true);
      }),
      { numRuns: 5000 },
    );
    // Guards against generators drifting so far that nothing is ever accepted.
    expect(acceptedCount).toBeGreaterThan(250);
  });
});
