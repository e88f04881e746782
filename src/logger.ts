import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

/**
 * JSON lines on stdout. Redaction is the second line of defence: code never passes a token,
 * cookie, password or Authorization value to the logger in the first place.
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'cloakroom' },
      redact: {
        paths: [
          'password',
          '*.password',
          'totp',
          '*.totp',
          'authorization',
          '*.authorization',
          'headers.authorization',
          'headers.cookie',
          'headers["set-cookie"]',
          'cookie',
          '*.cookie',
          'accessToken',
          'refreshToken',
          'idToken',
          '*.accessToken',
          '*.refreshToken',
          'access_token',
          'refresh_token',
          'token',
          '*.token',
        ],
        censor: '[redacted]',
      },
      // Errors are logged by name and message; causes from undici/ioredis never echo request headers.
      serializers: { err: (err: unknown) => serializeError(err) },
    },
    destination,
  );
}

function serializeError(err: unknown): Record<string, unknown> {
  if (!(err instanceof Error)) return { message: String(err) };
  const out: Record<string, unknown> = { type: err.name, message: err.message };
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') out.code = code;
  if (err.cause !== undefined) out.cause = serializeError(err.cause);
  return out;
}
