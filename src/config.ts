import { randomBytes } from 'node:crypto';
import { accessSync, constants as fsConstants, statSync } from 'node:fs';
import express from 'express';
import { z } from 'zod';
import { findExamplePlaceholder } from './config-placeholders.js';
import { compileDownloadPaths } from './core/upstream-paths.js';

export type AuthMode = 'nexudus' | 'json' | 'oidc';

export type RedisTarget =
  | { kind: 'url'; url: string }
  | { kind: 'sentinel'; sentinels: HostPort[]; name: string; sentinelPassword?: string }
  | { kind: 'cluster'; nodes: HostPort[] }
  | { kind: 'memory' };

export interface HostPort { host: string; port: number }

export interface OidcConfig {
  issuer: string;
  clientId: string;
  clientSecret?: string;
  redirectUri: string;
  scopes: string;
  postLogoutRedirectUri?: string;
}

export interface Config {
  production: boolean;
  port: number;
  host: string;
  upstreamUrl: string;
  authMode: AuthMode;
  redis: RedisTarget;
  redisUsername?: string;
  redisPassword?: string;
  redisTls: boolean;
  sessionSecrets: string[];
  tokenKeys: Buffer[];
  /** Secrets made up at start (development only): sessions do not survive a restart. */
  generatedSecrets: string[];
  cookie: { secure: boolean; name: string; sameSite: 'lax' | 'strict' };
  idleTimeoutSeconds: number;
  absoluteTimeoutSeconds: number;
  refreshSkewSeconds: number;
  portalUrl?: string;
  portalLoginPath: string;
  mediaBaseUrl: string;
  downloadPaths: string[];
  loginPageUrl?: string;
  allowedOrigins?: string[];
  trustProxy: boolean | number | string;
  upstreamTimeoutMs: number;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** ACCESS_LOG: one info line per answered request. */
  accessLog: boolean;
  /** OTEL_EXPORTER_OTLP_ENDPOINT: traces are exported there (src/tracing.ts); absent, tracing is not loaded. */
  otlpEndpoint?: string;
  loginMaxFailures: number;
  staticDir?: string;
  /** CONTENT_SECURITY_POLICY: replaces the SPA pages' default policy (STATIC_DIR). */
  contentSecurityPolicy?: string;
  jsonLoginPath: string;
  jsonRefreshPath: string;
  exchangeValidMinutes: number;
  /** The whole shutdown, from the signal to exit (drain included), stays within this. */
  shutdownTimeoutMs: number;
  /** After the signal, readiness is 503 this long before the listener closes. */
  shutdownDelayMs: number;
  /** When set, /metrics is served on this port only. */
  metricsPort?: number;
  oidc?: OidcConfig;
  /** WebSockets on /api/*: caps and the largest message either side may send. */
  websocket: { maxPerSession: number; maxOpen: number; maxMessageBytes: number };
}

/** Seconds readiness is 503 before the listener closes, so a load balancer can stop sending (production default). */
export const DEFAULT_PRODUCTION_SHUTDOWN_DELAY = 2;

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n${problems.join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

type Env = Record<string, string | undefined>;

/** 100 years: past that, epoch-millisecond arithmetic on a session's end stops being meaningful. */
const MAX_TIMEOUT_SECONDS = 3_153_600_000;

const intIn = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d+$/, 'must be a whole number')
    .transform(Number)
    .refine((n) => n >= min && n <= max, `must be between ${min} and ${max}`);

const httpUrl = z
  .string()
  .refine((v) => {
    try {
      const u = new URL(v);
      return (u.protocol === 'http:' || u.protocol === 'https:') && u.username === '' && u.password === '';
    } catch {
      return false;
    }
  }, 'must be an absolute http(s) URL without credentials')
  .transform((v) => v.replace(/\/+$/, ''));

const bool = z.enum(['true', 'false', '1', '0', 'yes', 'no']).transform((v) => v === 'true' || v === '1' || v === 'yes');

const list = (v: string): string[] =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);

const hostPortList = z.string().transform((v, ctx) => {
  const out: HostPort[] = [];
  for (const item of list(v)) {
    const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(item);
    const port = m ? Number(m[2]) : 0;
    if (!m || port < 1 || port > 65535) {
      ctx.addIssue({ code: 'custom', message: `"${item}" is not host:port` });
      return z.NEVER;
    }
    out.push({ host: (m[1] ?? '').replace(/^\[|\]$/g, ''), port });
  }
  if (out.length === 0) {
    ctx.addIssue({ code: 'custom', message: 'must list at least one host:port' });
    return z.NEVER;
  }
  return out;
});

const schema = z.object({
  NODE_ENV: z.string().optional(),
  PORT: intIn(0, 65535).default(3000),
  HOST: z.string().min(1).default('0.0.0.0'),
  UPSTREAM_URL: httpUrl,
  AUTH_MODE: z.enum(['nexudus', 'json', 'oidc']).default('nexudus'),
  REDIS_URL: z
    .string()
    .refine((v) => /^rediss?:\/\/[^\s]+$/.test(v) && URL.canParse(v), 'must be a redis:// or rediss:// URL')
    .optional(),
  REDIS_SENTINELS: hostPortList.optional(),
  REDIS_SENTINEL_NAME: z.string().min(1).optional(),
  REDIS_SENTINEL_PASSWORD: z.string().optional(),
  REDIS_CLUSTER_NODES: hostPortList.optional(),
  REDIS_USERNAME: z.string().optional(),
  REDIS_PASSWORD: z.string().optional(),
  REDIS_TLS: bool.default(false),
  SESSION_SECRET: z.string().transform(list).optional(),
  TOKEN_ENCRYPTION_KEY: z
    .string()
    .transform((v, ctx) => {
      const keys: Buffer[] = [];
      for (const item of list(v)) {
        const key = /^[A-Za-z0-9+/_-]+={0,2}$/.test(item) ? Buffer.from(item, 'base64') : Buffer.alloc(0);
        if (key.length !== 32) {
          ctx.addIssue({ code: 'custom', message: 'every key must be base64 of exactly 32 bytes' });
          return z.NEVER;
        }
        keys.push(key);
      }
      return keys;
    })
    .optional(),
  COOKIE_SECURE: bool.optional(),
  COOKIE_NAME: z
    .string()
    .regex(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/, 'must be a cookie token (letters, digits, !#$%&\'*+-.^_`|~)')
    .default('bff.sid'),
  COOKIE_SAMESITE: z.enum(['lax', 'strict']).default('lax'),
  // Any whole number of seconds from 1: short values are how operators try timeouts out in staging.
  SESSION_IDLE_TIMEOUT: intIn(1, MAX_TIMEOUT_SECONDS).default(28_800),
  SESSION_ABSOLUTE_TIMEOUT: intIn(1, MAX_TIMEOUT_SECONDS).default(1_296_000),
  REFRESH_SKEW: intIn(0, 3600).default(60),
  PORTAL_URL: httpUrl.optional(),
  PORTAL_LOGIN_PATH: z.string().startsWith('/', 'must start with /').default('/user/login?server=true'),
  MEDIA_BASE_URL: httpUrl.optional(),
  DOWNLOAD_PATHS: z
    .string()
    .transform(list)
    // The matcher's own compiler is the judge: a pattern it refuses must stop the start, not the first /links/download.
    .superRefine((ps, ctx) => {
      try {
        compileDownloadPaths(ps);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: err instanceof Error ? err.message : String(err) });
      }
    })
    .default(['/api/public/billing/invoices/*/pdf', '/api/public/files/**']),
  LOGIN_PAGE_URL: z
    .string()
    .refine((v) => v.startsWith('/') ? !v.startsWith('//') : URL.canParse(v) && /^https?:/.test(v), 'must be a local path or an http(s) URL')
    .optional(),
  ALLOWED_ORIGINS: z
    .string()
    .transform(list)
    .refine((os) => os.every((o) => URL.canParse(o) && new URL(o).origin === o), 'must be a comma list of origins like https://app.example.com')
    .optional(),
  TRUST_PROXY: z
    .string()
    // Express's own compiler is the judge: a value it refuses must stop the start, not the first request.
    .refine((v) => {
      try {
        express().set('trust proxy', parseTrustProxy(v));
        return true;
      } catch {
        return false;
      }
    }, 'must be true, false, a hop count, or a comma list of addresses, CIDR ranges or loopback/linklocal/uniquelocal')
    .default('false'),
  UPSTREAM_TIMEOUT: intIn(1, 600).default(30),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  ACCESS_LOG: bool.optional(),
  OTEL_EXPORTER_OTLP_ENDPOINT: httpUrl.optional(),
  LOGIN_MAX_FAILURES: intIn(1, 100_000).default(10),
  STATIC_DIR: z.string().min(1).refine(isReadableFolder, 'must be a readable folder (the SPA\'s built files)').optional(),
  CONTENT_SECURITY_POLICY: z.string().trim().min(1).refine((v) => !/[\r\n]/.test(v), 'must be one line (a header value)').optional(),
  METRICS_PORT: intIn(1, 65535).optional(),
  JSON_LOGIN_PATH: z.string().startsWith('/', 'must start with /').default('/api/login'),
  JSON_REFRESH_PATH: z.string().startsWith('/', 'must start with /').default('/api/login/refresh-token'),
  EXCHANGE_VALID_MINUTES: intIn(1, 43_200).default(60),
  SHUTDOWN_TIMEOUT: intIn(1, 600).default(10),
  SHUTDOWN_DELAY: intIn(0, 600).optional(),
  OIDC_ISSUER: z.string().optional(),
  OIDC_CLIENT_ID: z.string().min(1).optional(),
  OIDC_CLIENT_SECRET: z.string().min(1).optional(),
  OIDC_REDIRECT_URI: httpUrl.optional(),
  OIDC_SCOPES: z.string().min(1).default('openid profile email offline_access'),
  OIDC_POST_LOGOUT_REDIRECT_URI: httpUrl.optional(),
  WEBSOCKET_MAX_PER_SESSION: intIn(1, 10_000).default(10),
  WEBSOCKET_MAX_OPEN: intIn(1, 1_000_000).default(10_000),
  WEBSOCKET_MAX_MESSAGE: intIn(1 << 20, 1 << 30).default(16 << 20),
});

function isReadableFolder(dir: string): boolean {
  try {
    if (!statSync(dir).isDirectory()) return false;
    accessSync(dir, fsConstants.R_OK | fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Every variable the schema reads, for the README's configuration table test and the example files' test. */
export const CONFIG_VARIABLES: readonly string[] = Object.freeze(Object.keys(schema.shape));

function parseTrustProxy(v: string): boolean | number | string {
  if (v === 'true') return true;
  if (v === 'false' || v === '') return false;
  if (/^\d+$/.test(v)) return Number(v);
  return v;
}

/** `localhost`, `127.0.0.0/8` or `[::1]`: where the contract allows an http OIDC issuer. */
export function isLoopbackHost(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

/** Reads the whole configuration once, reporting every bad variable together. */
export function loadConfig(env: Env): Readonly<Config> {
  // An empty variable means "not set": shells and .env files often leave them blank.
  const cleaned: Env = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined && v !== '') cleaned[k] = v;

  let parsed = schema.safeParse(cleaned);
  const problems: string[] = [];
  if (!parsed.success) {
    const seen = new Set<string>();
    for (const issue of parsed.error.issues) {
      const name = String(issue.path[0] ?? 'environment');
      if (seen.has(name)) continue;
      seen.add(name);
      const message = cleaned[name] === undefined ? 'is required' : issue.message;
      problems.push(`${name}: ${message}`);
    }
    // Every bad variable in one run: check the rest without the ones already reported
    // (a placeholder stands in for the one required variable; this run fails anyway).
    const rest: Env = { UPSTREAM_URL: 'http://reported.invalid' };
    for (const [k, v] of Object.entries(cleaned)) if (!seen.has(k)) rest[k] = v;
    parsed = schema.safeParse(rest);
    if (!parsed.success) throw new ConfigError(problems);
  }
  const e = parsed.data;
  const production = e.NODE_ENV === 'production';
  if (production) {
    // A copied example file must not run in production with its change-me values.
    for (const [name, value] of Object.entries(cleaned)) {
      if (CONFIG_VARIABLES.includes(name) && value !== undefined && findExamplePlaceholder(value) !== undefined) {
        problems.push(`${name}: still holds the example file's placeholder; set a real value`);
      }
    }
  }
  const generatedSecrets: string[] = [];

  const topologies = [e.REDIS_URL, e.REDIS_SENTINELS, e.REDIS_CLUSTER_NODES].filter((v) => v !== undefined);
  if (topologies.length > 1) problems.push('REDIS_URL: set only one of REDIS_URL, REDIS_SENTINELS, REDIS_CLUSTER_NODES');
  if (e.REDIS_SENTINELS && !e.REDIS_SENTINEL_NAME) problems.push('REDIS_SENTINEL_NAME: is required with REDIS_SENTINELS');
  if (topologies.length === 0 && production) problems.push('REDIS_URL: is required when NODE_ENV=production (the in-process store is for development only)');

  let sessionSecrets = e.SESSION_SECRET ?? [];
  if (sessionSecrets.length === 0) {
    if (production) problems.push('SESSION_SECRET: is required when NODE_ENV=production');
    sessionSecrets = [randomBytes(32).toString('base64url')];
    generatedSecrets.push('SESSION_SECRET');
  } else if (production && sessionSecrets.some((s) => s.length < 32)) {
    problems.push('SESSION_SECRET: every secret must be at least 32 characters when NODE_ENV=production');
  }

  let tokenKeys = e.TOKEN_ENCRYPTION_KEY ?? [];
  if (tokenKeys.length === 0) {
    if (production) problems.push('TOKEN_ENCRYPTION_KEY: is required when NODE_ENV=production');
    tokenKeys = [randomBytes(32)];
    generatedSecrets.push('TOKEN_ENCRYPTION_KEY');
  } else if (production && tokenKeys.some((k) => k.every((b) => b === k[0]))) {
    // All zeros (or any one byte repeated) is what a copied example or `head -c 32 /dev/zero` gives.
    problems.push('TOKEN_ENCRYPTION_KEY: a key made of one repeated byte is not a key; generate one with `openssl rand -base64 32`');
  }

  if (e.METRICS_PORT !== undefined && e.METRICS_PORT === e.PORT) problems.push('METRICS_PORT: must differ from PORT');
  const shutdownDelay = e.SHUTDOWN_DELAY ?? (production ? DEFAULT_PRODUCTION_SHUTDOWN_DELAY : 0);
  if (shutdownDelay >= e.SHUTDOWN_TIMEOUT) problems.push('SHUTDOWN_DELAY: must be shorter than SHUTDOWN_TIMEOUT');

  if (e.SESSION_ABSOLUTE_TIMEOUT < e.SESSION_IDLE_TIMEOUT) {
    problems.push('SESSION_ABSOLUTE_TIMEOUT: must not be shorter than SESSION_IDLE_TIMEOUT');
  }

  let oidc: OidcConfig | undefined;
  if (e.AUTH_MODE === 'oidc') {
    if (!e.OIDC_ISSUER) problems.push('OIDC_ISSUER: is required when AUTH_MODE=oidc');
    else if (!URL.canParse(e.OIDC_ISSUER)) problems.push('OIDC_ISSUER: must be an absolute URL');
    else {
      const u = new URL(e.OIDC_ISSUER);
      if (u.protocol !== 'https:' && !(u.protocol === 'http:' && isLoopbackHost(u.hostname))) {
        problems.push('OIDC_ISSUER: must be https (http is allowed only on a loopback host)');
      }
    }
    if (!e.OIDC_CLIENT_ID) problems.push('OIDC_CLIENT_ID: is required when AUTH_MODE=oidc');
    if (!e.OIDC_REDIRECT_URI) problems.push('OIDC_REDIRECT_URI: is required when AUTH_MODE=oidc');
    if (e.OIDC_ISSUER && e.OIDC_CLIENT_ID && e.OIDC_REDIRECT_URI) {
      oidc = {
        issuer: e.OIDC_ISSUER,
        clientId: e.OIDC_CLIENT_ID,
        redirectUri: e.OIDC_REDIRECT_URI,
        scopes: e.OIDC_SCOPES,
        ...(e.OIDC_CLIENT_SECRET ? { clientSecret: e.OIDC_CLIENT_SECRET } : {}),
        ...(e.OIDC_POST_LOGOUT_REDIRECT_URI ? { postLogoutRedirectUri: e.OIDC_POST_LOGOUT_REDIRECT_URI } : {}),
      };
    }
  }

  if (problems.length > 0) {
    // One line per variable: a value already refused is not also reported as missing.
    const named = new Set<string>();
    throw new ConfigError(problems.filter((p) => {
      const name = p.slice(0, p.indexOf(':'));
      if (named.has(name)) return false;
      named.add(name);
      return true;
    }));
  }

  const redis: RedisTarget = e.REDIS_URL
    ? { kind: 'url', url: e.REDIS_URL }
    : e.REDIS_SENTINELS
      ? {
          kind: 'sentinel',
          sentinels: e.REDIS_SENTINELS,
          name: e.REDIS_SENTINEL_NAME ?? '',
          ...(e.REDIS_SENTINEL_PASSWORD ? { sentinelPassword: e.REDIS_SENTINEL_PASSWORD } : {}),
        }
      : e.REDIS_CLUSTER_NODES
        ? { kind: 'cluster', nodes: e.REDIS_CLUSTER_NODES }
        : { kind: 'memory' };

  const secure = e.COOKIE_SECURE ?? production;
  const config: Config = {
    production,
    port: e.PORT,
    host: e.HOST,
    upstreamUrl: e.UPSTREAM_URL,
    authMode: e.AUTH_MODE,
    redis,
    redisTls: e.REDIS_TLS,
    ...(e.REDIS_USERNAME ? { redisUsername: e.REDIS_USERNAME } : {}),
    ...(e.REDIS_PASSWORD ? { redisPassword: e.REDIS_PASSWORD } : {}),
    sessionSecrets,
    tokenKeys,
    generatedSecrets,
    cookie: { secure, name: secure ? `__Host-${e.COOKIE_NAME}` : e.COOKIE_NAME, sameSite: e.COOKIE_SAMESITE },
    idleTimeoutSeconds: e.SESSION_IDLE_TIMEOUT,
    absoluteTimeoutSeconds: e.SESSION_ABSOLUTE_TIMEOUT,
    refreshSkewSeconds: e.REFRESH_SKEW,
    ...(e.PORTAL_URL ? { portalUrl: e.PORTAL_URL } : {}),
    portalLoginPath: e.PORTAL_LOGIN_PATH,
    mediaBaseUrl: e.MEDIA_BASE_URL ?? e.UPSTREAM_URL,
    downloadPaths: e.DOWNLOAD_PATHS,
    ...(e.LOGIN_PAGE_URL ? { loginPageUrl: e.LOGIN_PAGE_URL } : {}),
    ...(e.ALLOWED_ORIGINS ? { allowedOrigins: e.ALLOWED_ORIGINS } : {}),
    trustProxy: parseTrustProxy(e.TRUST_PROXY),
    upstreamTimeoutMs: e.UPSTREAM_TIMEOUT * 1000,
    logLevel: e.LOG_LEVEL,
    accessLog: e.ACCESS_LOG ?? true,
    ...(e.OTEL_EXPORTER_OTLP_ENDPOINT ? { otlpEndpoint: e.OTEL_EXPORTER_OTLP_ENDPOINT } : {}),
    loginMaxFailures: e.LOGIN_MAX_FAILURES,
    ...(e.STATIC_DIR ? { staticDir: e.STATIC_DIR } : {}),
    ...(e.CONTENT_SECURITY_POLICY ? { contentSecurityPolicy: e.CONTENT_SECURITY_POLICY } : {}),
    jsonLoginPath: e.JSON_LOGIN_PATH,
    jsonRefreshPath: e.JSON_REFRESH_PATH,
    exchangeValidMinutes: e.EXCHANGE_VALID_MINUTES,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT * 1000,
    shutdownDelayMs: shutdownDelay * 1000,
    ...(e.METRICS_PORT !== undefined ? { metricsPort: e.METRICS_PORT } : {}),
    ...(oidc ? { oidc } : {}),
    websocket: { maxPerSession: e.WEBSOCKET_MAX_PER_SESSION, maxOpen: e.WEBSOCKET_MAX_OPEN, maxMessageBytes: e.WEBSOCKET_MAX_MESSAGE },
  };
  return Object.freeze(config);
}

/** What the operator command line (src/cli.ts) reads: the servers' Redis, keys, mode and timeouts. */
export const OPERATOR_VARIABLES = [
  'NODE_ENV',
  'AUTH_MODE',
  'REDIS_URL',
  'REDIS_SENTINELS',
  'REDIS_SENTINEL_NAME',
  'REDIS_SENTINEL_PASSWORD',
  'REDIS_CLUSTER_NODES',
  'REDIS_USERNAME',
  'REDIS_PASSWORD',
  'REDIS_TLS',
  'TOKEN_ENCRYPTION_KEY',
  'SESSION_IDLE_TIMEOUT',
  'SESSION_ABSOLUTE_TIMEOUT',
] as const;

export type OperatorConfig = Pick<Config, 'production' | 'authMode' | 'redis' | 'redisUsername' | 'redisPassword' | 'redisTls' | 'tokenKeys' | 'idleTimeoutSeconds' | 'absoluteTimeoutSeconds'>;

/**
 * The command line's subset, checked by the same rules and reported the same way (one line per
 * variable). Server-only variables get stand-ins; Redis and the token keys are required, as a
 * made-up key or an in-process store would make every command meaningless.
 */
export function loadOperatorConfig(env: Env): Readonly<OperatorConfig> {
  const picked: Env = {};
  for (const name of OPERATOR_VARIABLES) if (env[name] !== undefined && env[name] !== '') picked[name] = env[name];
  const problems: string[] = [];
  let config: Readonly<Config> | null = null;
  try {
    config = loadConfig({
      ...picked,
      UPSTREAM_URL: 'http://operator.invalid',
      SESSION_SECRET: randomBytes(32).toString('base64url'),
      OIDC_ISSUER: 'https://operator.invalid',
      OIDC_CLIENT_ID: 'operator',
      OIDC_REDIRECT_URI: 'https://operator.invalid/callback',
    });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems.push(...err.problems);
  }
  const named = (name: string) => problems.some((p) => p.startsWith(`${name}:`));
  if (!picked.REDIS_URL && !picked.REDIS_SENTINELS && !picked.REDIS_CLUSTER_NODES && !named('REDIS_URL')) {
    problems.push("REDIS_URL: is required (or REDIS_SENTINELS, or REDIS_CLUSTER_NODES): the command line works on the servers' Redis");
  }
  if (!picked.TOKEN_ENCRYPTION_KEY && !named('TOKEN_ENCRYPTION_KEY')) problems.push("TOKEN_ENCRYPTION_KEY: is required: the servers' key list, the first one sealing");
  if (problems.length > 0 || !config) throw new ConfigError(problems);
  return Object.freeze({
    production: config.production,
    authMode: config.authMode,
    redis: config.redis,
    redisTls: config.redisTls,
    ...(config.redisUsername ? { redisUsername: config.redisUsername } : {}),
    ...(config.redisPassword ? { redisPassword: config.redisPassword } : {}),
    tokenKeys: config.tokenKeys,
    idleTimeoutSeconds: config.idleTimeoutSeconds,
    absoluteTimeoutSeconds: config.absoluteTimeoutSeconds,
  });
}
