/**
 * What every seed's behaviour shares: the users, the access tokens this API accepts, the
 * HMAC key its JWTs are signed with, and the list of every credential it handed out (the
 * leak checks look for each of them where no token may be).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { headerValue, type JsonValue } from './http.js';

export interface FakeUser {
  id: number;
  email: string;
  password: string;
  fullName: string;
  totp?: string;
  mustResetPassword?: boolean;
}

export const DEMO_USERS: FakeUser[] = [
  { id: 1001, email: 'demo@example.com', password: 'demo-password', fullName: 'Demo User' },
  { id: 1002, email: 'totp@example.com', password: 'totp-password', fullName: 'Totp User', totp: '123456' },
  { id: 1003, email: 'reset@example.com', password: 'reset-password', fullName: 'Reset User', mustResetPassword: true },
  { id: 1004, email: 'other@example.com', password: 'other-password', fullName: 'Other User' },
];

interface AccessRecord {
  userId: number;
  expiresAt: number;
  revoked: boolean;
}

export interface Accounts {
  /** A user by email (case-insensitive). */
  byEmail(email: string): FakeUser | undefined;
  byId(id: number): FakeUser | undefined;
  /** Every credential handed out, in order. */
  issued(): string[];
  remember(token: string): void;
  newAccessToken(userId: number, ttlSeconds: number): string;
  /** The user behind `Authorization: Bearer`, if the token is live. */
  bearerUser(req: IncomingMessage): { user: FakeUser; token: string } | undefined;
  revokeAllAccessTokens(): void;
  signJwt(payload: Record<string, JsonValue>): string;
  /** The payload of a JWT this process signed, if the signature holds and it has not expired. */
  verifyJwt(jwt: string): Record<string, unknown> | undefined;
}

export function opaque(prefix: string): string {
  return prefix + randomBytes(32).toString('base64url');
}

export function createAccounts(users: readonly FakeUser[]): Accounts {
  const usersByEmail = new Map<string, FakeUser>();
  const usersById = new Map<number, FakeUser>();
  for (const u of users) {
    const copy = { ...u };
    usersByEmail.set(copy.email.toLowerCase(), copy);
    usersById.set(copy.id, copy);
  }
  const issued: string[] = [];
  const accessTokens = new Map<string, AccessRecord>();
  // Per process so that JWTs from an earlier run can never verify.
  const jwtKey = randomBytes(32);
  const remember = (token: string): void => {
    issued.push(token);
  };

  return {
    byEmail: (email) => usersByEmail.get(email.toLowerCase()),
    byId: (id) => usersById.get(id),
    issued: () => [...issued],
    remember,
    newAccessToken(userId, ttlSeconds) {
      const token = opaque('at_');
      accessTokens.set(token, { userId, expiresAt: Date.now() + ttlSeconds * 1000, revoked: false });
      remember(token);
      return token;
    },
    bearerUser(req) {
      const auth = headerValue(req, 'authorization');
      const m = auth === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(auth);
      const token = m?.[1];
      if (token === undefined) return undefined;
      const rec = accessTokens.get(token);
      if (rec === undefined || rec.revoked || rec.expiresAt <= Date.now()) return undefined;
      const user = usersById.get(rec.userId);
      return user === undefined ? undefined : { user, token };
    },
    revokeAllAccessTokens() {
      for (const rec of accessTokens.values()) rec.revoked = true;
    },
    signJwt(payload) {
      const head = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url');
      const body = Buffer.from(JSON.stringify(payload)).toString('base64url');
      const sig = createHmac('sha256', jwtKey).update(`${head}.${body}`).digest('base64url');
      return `${head}.${body}.${sig}`;
    },
    verifyJwt(jwt) {
      const parts = jwt.split('.');
      if (parts.length !== 3) return undefined;
      const [head, body, sig] = parts as [string, string, string];
      const expected = createHmac('sha256', jwtKey).update(`${head}.${body}`).digest();
      const given = Buffer.from(sig, 'base64url');
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
      let payload: unknown;
      try {
        payload = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
      } catch {
        return undefined;
      }
      if (payload === null || typeof payload !== 'object') return undefined;
      const p = payload as Record<string, unknown>;
      if (typeof p['exp'] !== 'number' || p['exp'] * 1000 <= Date.now()) return undefined;
      return p;
    },
  };
}
