import { describe, it, expect } from '@jest/globals';
import {
  buildDownloadLocation,
  buildLoginRedirect,
  buildPortalLocation,
  escapeUrlUnsafeChars,
} from '../src/core/link-urls.js';

describe('buildDownloadLocation', () => {
  it.each([
    [
      'appends ?t= to a path without a query',
      'https://spaces.nexudus.com', '/api/public/billing/invoices/42/pdf', 'eyJ.a.b',
      'https://spaces.nexudus.com/api/public/billing/invoices/42/pdf?t=eyJ.a.b',
    ],
    [
      'appends &t= to a path with a query',
      'https://spaces.nexudus.com', '/api/public/files/a.pdf?download=1', 'tok',
      'https://spaces.nexudus.com/api/public/files/a.pdf?download=1&t=tok',
    ],
    [
      'drops the trailing slash of the base URL',
      'https://media.example.com/', '/api/public/files/a', 'tok',
      'https://media.example.com/api/public/files/a?t=tok',
    ],
    [
      'keeps a base path',
      'https://media.example.com/prefix', '/api/public/files/a', 'tok',
      'https://media.example.com/prefix/api/public/files/a?t=tok',
    ],
    [
      'encodes token characters that would break the query',
      'https://m.example.com', '/f', 'a+b/c=d&e',
      'https://m.example.com/f?t=a%2Bb%2Fc%3Dd%26e',
    ],
    [
      'does not double-encode an encoded path',
      'https://m.example.com', '/api/public/files/my%20file.pdf', 't',
      'https://m.example.com/api/public/files/my%20file.pdf?t=t',
    ],
    [
      'encodes non-ASCII and spaces so the Location header stays valid',
      'https://m.example.com', '/api/public/files/café 日本.pdf', 't',
      'https://m.example.com/api/public/files/caf%C3%A9%20%E6%97%A5%E6%9C%AC.pdf?t=t',
    ],
  ])('%s', (_name, base, path, token, expected) => {
    expect(buildDownloadLocation(base, path, token)).toBe(expected);
  });
});

describe('buildPortalLocation', () => {
  it('builds the seed 000 example exactly', () => {
    expect(
      buildPortalLocation(
        'https://app.example.com/en',
        '/user/login?server=true',
        'a3f8c2d1e5b74091bc6e2f3a4d5c6b7e',
        '/en/invoices/download/42',
      ),
    ).toBe(
      'https://app.example.com/en/user/login?server=true&t=a3f8c2d1e5b74091bc6e2f3a4d5c6b7e&redirectUrl=%2Fen%2Finvoices%2Fdownload%2F42',
    );
  });

  it.each([
    [
      'leaves out redirectUrl when it is not given',
      'https://app.example.com/en', '/user/login?server=true', 'tok', undefined,
      'https://app.example.com/en/user/login?server=true&t=tok',
    ],
    [
      'leaves out redirectUrl when it is empty',
      'https://app.example.com/en', '/user/login?server=true', 'tok', '',
      'https://app.example.com/en/user/login?server=true&t=tok',
    ],
    [
      'uses ?t= when the login path has no query',
      'https://app.example.com/en', '/login', 'tok', '/dash',
      'https://app.example.com/en/login?t=tok&redirectUrl=%2Fdash',
    ],
    [
      'drops the trailing slash of the portal URL',
      'https://app.example.com/en/', '/user/login?server=true', 'tok', undefined,
      'https://app.example.com/en/user/login?server=true&t=tok',
    ],
    [
      'adds no extra separator after a login path ending in ?',
      'https://app.example.com', '/login?', 'tok', undefined,
      'https://app.example.com/login?t=tok',
    ],
    [
      'encodes the token and a redirect with its own query',
      'https://app.example.com/en', '/user/login?server=true', 'a&b=c', '/x?y=1&z=2#h',
      'https://app.example.com/en/user/login?server=true&t=a%26b%3Dc&redirectUrl=%2Fx%3Fy%3D1%26z%3D2%23h',
    ],
  ])('%s', (_name, portal, loginPath, token, redirectUrl, expected) => {
    expect(buildPortalLocation(portal, loginPath, token, redirectUrl)).toBe(expected);
  });
});

describe('buildLoginRedirect', () => {
  it.each([
    [
      'adds returnTo as the only query parameter',
      'https://app.example.com/login', '/links/portal?redirectUrl=%2Fen%2Fx',
      'https://app.example.com/login?returnTo=%2Flinks%2Fportal%3FredirectUrl%3D%252Fen%252Fx',
    ],
    [
      'keeps an existing query',
      'https://app.example.com/login?lang=en', '/links/download?path=%2Fa',
      'https://app.example.com/login?lang=en&returnTo=%2Flinks%2Fdownload%3Fpath%3D%252Fa',
    ],
    [
      'keeps the fragment last',
      'https://app.example.com/#/login', '/links/portal',
      'https://app.example.com/?returnTo=%2Flinks%2Fportal#/login',
    ],
    [
      'works with a relative login page',
      '/login', '/x',
      '/login?returnTo=%2Fx',
    ],
  ])('%s', (_name, loginPage, returnTo, expected) => {
    expect(buildLoginRedirect(loginPage, returnTo)).toBe(expected);
  });
});

describe('escapeUrlUnsafeChars', () => {
  it.each([
    ['leaves printable ASCII and escapes untouched', '/a%2Fb?c=d&e', '/a%2Fb?c=d&e'],
    ['encodes a space', '/a b', '/a%20b'],
    ['encodes an astral character as UTF-8', '/😀', '/%F0%9F%98%80'],
    ['replaces a lone surrogate instead of throwing', '/a\ud800', '/a%EF%BF%BD'],
  ])('%s', (_name, input, expected) => {
    expect(escapeUrlUnsafeChars(input)).toBe(expected);
  });
});
