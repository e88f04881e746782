import type { SessionUser } from './auth/dialect.js';

// The session record's shape, declared once. Tokens are never here: they live in their own
// sealed key so that no save of this record can overwrite a rotated refresh token.
declare module 'express-session' {
  interface SessionData {
    user: SessionUser;
    /** The absolute end follows from it (core/session-lifecycle.ts); only the token record stores it. */
    createdAt: number;
  }
}

export {};
