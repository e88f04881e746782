import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

/**
 * AES-256-GCM sealing of token material kept in Redis. The first key seals, every key
 * opens (rotation). The session id is bound in as additional data, so a sealed blob
 * copied under another session's key does not open.
 */
export interface TokenSealer {
  seal(plaintext: string, sessionId: string): string;
  /** null when no configured key opens it (rotated out, tampered, other session). */
  open(sealed: string, sessionId: string): string | null;
  /** Whether the first (sealing) key sealed it: `cloakroom reseal` skips those. */
  sealedWithFirstKey(sealed: string): boolean;
}

const VERSION = 'v1';

function keyId(key: Buffer): string {
  return createHash('sha256').update(key).digest('base64url').slice(0, 8);
}

export function createTokenSealer(keys: readonly Buffer[]): TokenSealer {
  if (keys.length === 0 || keys.some((k) => k.length !== 32)) throw new Error('token keys must be 32 bytes');
  const byId = new Map(keys.map((k) => [keyId(k), k] as const));
  const sealingKey = keys[0] as Buffer;
  const sealingId = keyId(sealingKey);

  return {
    seal(plaintext, sessionId) {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', sealingKey, iv);
      cipher.setAAD(Buffer.from(sessionId));
      const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      return [VERSION, sealingId, iv.toString('base64url'), ct.toString('base64url'), cipher.getAuthTag().toString('base64url')].join('.');
    },
    sealedWithFirstKey: (sealed) => sealed.startsWith(`${VERSION}.${sealingId}.`),
    open(sealed, sessionId) {
      const parts = sealed.split('.');
      if (parts.length !== 5 || parts[0] !== VERSION) return null;
      const key = byId.get(parts[1] ?? '');
      if (!key) return null;
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(parts[2] ?? '', 'base64url'));
        decipher.setAAD(Buffer.from(sessionId));
        decipher.setAuthTag(Buffer.from(parts[4] ?? '', 'base64url'));
        return Buffer.concat([decipher.update(Buffer.from(parts[3] ?? '', 'base64url')), decipher.final()]).toString('utf8');
      } catch {
        return null;
      }
    },
  };
}
