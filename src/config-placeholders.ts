/**
 * The placeholder values of the example files in `config/`. Operators copy those files; a copy
 * that still holds one of these must not start in production (CONTRACT: "Starting it").
 * `test/config-examples.test.ts` keeps this list and the files in step.
 */
export const EXAMPLE_PLACEHOLDERS: readonly string[] = Object.freeze([
  'change-me-redis-password',
  'change-me-sentinel-password',
  'change-me-session-secret-at-least-32-characters',
  'change-me-base64-of-32-random-bytes',
  'change-me-oidc-client-secret',
  // What earlier versions of the examples held: copies of those are still around.
  'replace-with-32+-random-characters',
  'replace-with-the-old-secret-32+-chars',
]);

/** Every example placeholder starts so; a value containing it was copied, not chosen. */
export const PLACEHOLDER_PREFIX = 'change-me';

/**
 * The placeholder a value still carries, anywhere in it (a password inside `REDIS_URL`, one item
 * of a comma list), or undefined. Matches the prefix too, so an edited placeholder such as
 * `change-me-2` is refused as well.
 */
export function findExamplePlaceholder(value: string): string | undefined {
  const lower = value.toLowerCase();
  const listed = EXAMPLE_PLACEHOLDERS.find((p) => lower.includes(p));
  if (listed !== undefined) return listed;
  return lower.includes(PLACEHOLDER_PREFIX) ? PLACEHOLDER_PREFIX : undefined;
}
