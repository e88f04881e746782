import type { SessionUser } from './auth/dialect.js';

// The session record's shape, declared once. Tokens are never here: they live in their own
// sealed key so that no save of this record can overwrite a rotated refresh token.
declare module 'express-session' {
  interface SessionData {
    user: SessionUser;
    createdAt: number;
    absoluteExpiresAt: number;
  }
}

export {};
