import { describe, expect, it } from '@jest/globals';
import type { SignInRefusal } from '../src/auth/dialect.js';
import { refusalError } from '../src/errors.js';

describe('refusalError', () => {
  const cases: [string, SignInRefusal, { status: number; code: string; message: string; extra?: Record<string, unknown> }][] = [
    ['wrong password with upstream wording', { kind: 'wrong_credentials', message: 'Bad password, try again' }, { status: 401, code: 'invalid_grant', message: 'Bad password, try again' }],
    ['wrong password without wording', { kind: 'wrong_credentials' }, { status: 401, code: 'invalid_grant', message: 'The user name or password is incorrect.' }],
    ['two-factor code needed', { kind: 'two_factor_required', message: 'Enter your code' }, { status: 401, code: 'two_factor_required', message: 'Enter your code' }],
    ['two-factor without wording', { kind: 'two_factor_required' }, { status: 401, code: 'two_factor_required', message: 'A two-factor code is required.' }],
    ['must reset, with its token', { kind: 'must_reset_password', resetToken: 'reset-123' }, { status: 403, code: 'must_reset_password', message: 'The password must be reset before signing in.', extra: { resetToken: 'reset-123' } }],
    ['must reset, no token sent', { kind: 'must_reset_password', resetToken: null }, { status: 403, code: 'must_reset_password', message: 'The password must be reset before signing in.', extra: { resetToken: null } }],
    ['invalid sign-in link', { kind: 'link_invalid' }, { status: 401, code: 'invalid_grant', message: 'The sign-in link is invalid or has expired.' }],
    ['provider said no', { kind: 'provider_refused', message: 'access_denied by user' }, { status: 401, code: 'invalid_grant', message: 'access_denied by user' }],
  ];
  it.each(cases)('%s_maps_to_the_contract_error', (_name, refusal, want) => {
    const e = refusalError(refusal);
    expect({ status: e.status, code: e.code, message: e.message, expose: e.expose }).toEqual({ status: want.status, code: want.code, message: want.message, expose: true });
    expect(e.extra).toEqual(want.extra ?? {});
  });
});
