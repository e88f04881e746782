/**
 * Seed 002, "Making a Request": `GET /api/auth/me` with a bearer answers the user's profile,
 * in the seed's shape (the bearer itself in `AccessToken`, which cloakroom must strip).
 */
import { createHash } from 'node:crypto';
import type { FakeUser } from './accounts.js';
import type { JsonValue } from './http.js';

export function nexudusProfile(user: FakeUser, bearer: string): JsonValue {
  const h = createHash('sha256').update(`user:${user.id}`).digest('hex');
  const uniqueId = `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
  return {
    NewPasswordConfirm: null,
    OldPassword: null,
    DefaultBusinessId: 1234566,
    DefaultBusinessName: 'Demo Space',
    DefaultCurrencyId: 3005,
    DefaultCurrencyName: 'UK Pound Sterling (GBP)',
    DefaultCurrencyCode: 'GBP',
    DefaultCountryId: 1221,
    DefaultCountryName: 'United States',
    DefaultSimpleTimeZoneId: 2023,
    DefaultSimpleTimeZoneName: 'GMT Standard Time',
    DefaultSimpleTimeZoneNameIana: 'Europe/London',
    FullName: user.fullName,
    Email: user.email,
    AccessToken: bearer,
    PreferredLanguageId: 287965678,
    NewPassword: null,
    Active: true,
    IsAdmin: false,
    APIAccess: true,
    Validated: true,
    MustResetPassword: user.mustResetPassword === true,
    LastAccess: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
    Businesses: [1234566],
    UserRoles: [],
    Id: user.id,
    UpdatedOn: '2019-05-14T08:22:25Z',
    CreatedOn: '2017-02-24T23:45:48Z',
    UniqueId: uniqueId,
    UpdatedBy: user.email,
    IsNew: false,
    SystemId: null,
    ToStringText: `${user.fullName} - ${user.email}`,
    LocalizationDetails: null,
  };
}
