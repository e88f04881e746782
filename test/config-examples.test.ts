import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseEnv } from 'node:util';
import { describe, expect, it } from '@jest/globals';
import { CONFIG_VARIABLES, ConfigError, loadConfig } from '../src/config.js';
import { EXAMPLE_PLACEHOLDERS, findExamplePlaceholder } from '../src/config-placeholders.js';

/** The example files operators copy: config/*.env*. */
const CONFIG_DIR = fileURLToPath(new URL('../config/', import.meta.url));
const files = readdirSync(CONFIG_DIR).filter((f) => /\.env/.test(f)).sort();
const read = (f: string): Record<string, string> => {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(parseEnv(readFileSync(join(CONFIG_DIR, f), 'utf8')))) if (v !== undefined) out[k] = v;
  return out;
};
const production = files.filter((f) => read(f).NODE_ENV === 'production');
const SECRET_VARIABLES = ['SESSION_SECRET', 'TOKEN_ENCRYPTION_KEY', 'OIDC_CLIENT_SECRET', 'REDIS_PASSWORD', 'REDIS_SENTINEL_PASSWORD'];

/** The example with every placeholder replaced by a freshly made value of the right shape. */
function filledIn(env: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    out[k] = k === 'TOKEN_ENCRYPTION_KEY'
      ? randomBytes(32).toString('base64')
      : v.replace(/change-me[A-Za-z0-9._+-]*/g, () => randomBytes(24).toString('hex'));
  }
  return out;
}

describe('config/ example files', () => {
  it('there_is_a_development_example_and_at_least_one_production_example', () => {
    expect(files).toContain('development.env');
    expect(production).toContain('production.env.example');
  });

  it.each(files)('%s_names_only_variables_the_config_reads', (f) => {
    const unknown = Object.keys(read(f)).filter((k) => !CONFIG_VARIABLES.includes(k));
    expect(unknown).toEqual([]);
  });

  it.each(files)('%s_every_change_me_value_is_a_listed_placeholder', (f) => {
    const found = Object.values(read(f)).flatMap((v) => v.match(/change-me[A-Za-z0-9._+-]*/g) ?? []);
    for (const p of found) expect(EXAMPLE_PLACEHOLDERS).toContain(p);
  });

  it.each(production)('%s_holds_a_placeholder_for_every_secret_never_a_value', (f) => {
    const env = read(f);
    const secrets = SECRET_VARIABLES.filter((k) => env[k] !== undefined);
    expect(secrets).toEqual(expect.arrayContaining(['SESSION_SECRET', 'TOKEN_ENCRYPTION_KEY']));
    for (const k of secrets) expect([k, findExamplePlaceholder(env[k] ?? '')]).toEqual([k, expect.any(String)]);
    if (env.REDIS_URL !== undefined) {
      const password = new URL(env.REDIS_URL).password;
      if (password !== '') expect(findExamplePlaceholder(password)).toBeDefined();
    }
  });

  it.each(production)('%s_as_shipped_is_refused_at_start', (f) => {
    expect(() => loadConfig(read(f))).toThrow(ConfigError);
  });

  it.each(production)('%s_with_its_placeholders_replaced_starts_in_production', (f) => {
    const config = loadConfig(filledIn(read(f)));
    expect(config.production).toBe(true);
    expect(config.redis.kind).not.toBe('memory');
  });

  it('development_example_says_development_and_carries_no_secret', () => {
    const env = read('development.env');
    expect(env.NODE_ENV).toBe('development');
    expect(readFileSync(join(CONFIG_DIR, 'development.env'), 'utf8')).toMatch(/DEVELOPMENT ONLY/);
    for (const k of SECRET_VARIABLES) expect([k, env[k]]).toEqual([k, undefined]);
    const config = loadConfig(env);
    expect(config.production).toBe(false);
    expect(config.generatedSecrets).toEqual(['SESSION_SECRET', 'TOKEN_ENCRYPTION_KEY']);
  });

  it('development_example_is_refused_when_someone_runs_it_as_production', () => {
    expect(() => loadConfig({ ...read('development.env'), NODE_ENV: 'production' })).toThrow(ConfigError);
  });

  it('placeholder_finder_sees_a_placeholder_inside_a_url_and_a_list_but_not_a_real_value', () => {
    expect(findExamplePlaceholder('rediss://u:change-me-redis-password@h:6380')).toBe('change-me-redis-password');
    expect(findExamplePlaceholder(`${randomBytes(32).toString('base64')},change-me-base64-of-32-random-bytes`)).toBe('change-me-base64-of-32-random-bytes');
    expect(findExamplePlaceholder('Change-Me-2')).toBe('change-me');
    expect(findExamplePlaceholder(randomBytes(32).toString('base64url'))).toBeUndefined();
  });
});
