/**
 * The servers under test, parent side: the Redis topology (bench/lib/topology.ts), the upstream, and the targets
 * (bare proxy, cloakroom and its variants, the reference BFF), each its own child process,
 * each checked with one request before any load.
 */
import { request } from 'undici';
import { oneKilobyteJson } from './body.js';
import type { Target } from './loadgen.js';
import { startServer, type ServerChild } from './processes.js';
import { startTopology, type Topology, type TopologyKind } from './topology.js';

export const SESSION_SECRET = 'bench-session-secret-0123456789-abcdefghijklmnop';
// Not one repeated byte: production config refuses such a key (NODE_ENV=production below).
export const TOKEN_KEY = Buffer.from(Array.from({ length: 32 }, (_, i) => (i * 37 + 11) & 0xff)).toString('base64');
export const DEMO = { email: 'demo@example.com', password: 'demo-password' };
export const BODY = oneKilobyteJson();

export interface Bed {
  topology: Topology;
  /** Redis command counts over the topology's masters. */
  probe: Pick<Topology, 'counts'>;
  upstream: ServerChild;
  children: ServerChild[];
}

export function cloakroomEnv(bed: { topology: Pick<Topology, 'env'>; upstream: Pick<ServerChild, 'url'> }, extra: Record<string, string> = {}): Record<string, string> {
  return {
    BENCH_CLOAKROOM_ENV: JSON.stringify({
      UPSTREAM_URL: bed.upstream.url,
      ...bed.topology.env,
      SESSION_SECRET,
      TOKEN_ENCRYPTION_KEY: TOKEN_KEY,
      AUTH_MODE: 'nexudus',
      LOG_LEVEL: 'warn',
      NODE_ENV: 'production',
      COOKIE_SECURE: 'false',
      UPSTREAM_TIMEOUT: '10',
      ...extra,
    }),
  };
}

/** Signs in like a browser (X-CSRF: 1) and returns the `name=value` cookie pair. */
export async function signIn(child: ServerChild, csrf = true): Promise<string> {
  const res = await request(`${child.url}/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(csrf ? { 'x-csrf': '1' } : {}) },
    body: JSON.stringify(DEMO),
  });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`${child.name}: sign-in answered ${res.statusCode}: ${text}\n${child.output().join('\n')}`);
  const setCookie = res.headers['set-cookie'];
  const first = (Array.isArray(setCookie) ? setCookie[0] : setCookie)?.split(';')[0];
  if (!first) throw new Error(`${child.name}: sign-in set no cookie`);
  return first;
}

/** One request through the target must come back 200 with the upstream's exact 1 KB body. */
export async function checkTarget(t: Target): Promise<void> {
  const res = await request(t.url, { headers: t.headers });
  const body = Buffer.from(await res.body.arrayBuffer());
  if (res.statusCode !== 200 || !body.equals(BODY)) {
    throw new Error(`${t.name}: GET ${t.url} answered ${res.statusCode} with ${body.length} bytes: ${body.toString('utf8').slice(0, 200)}`);
  }
}

export interface BenchTarget extends Target {
  child: ServerChild;
}

export async function startBed(kind: TopologyKind = 'standalone'): Promise<Bed> {
  const topology = await startTopology(kind);
  const upstream = await startServer('upstream', 'upstream', {});
  return { topology, probe: topology, upstream, children: [upstream] };
}

export async function stopBed(bed: Bed): Promise<void> {
  await Promise.all(bed.children.map((c) => c.stop().catch(() => undefined)));
  await bed.topology.stop();
}

export async function startTargets(bed: Bed, which: readonly string[], execArgv: Record<string, string[]> = {}): Promise<BenchTarget[]> {
  const bearer = await bed.upstream.control<string>('bearer');
  const known = ['upstream', 'bare-proxy', 'cloakroom', 'cloakroom-memory', 'cloakroom-autopipeline', 'cloakroom-access-log', 'cloakroom-traced', 'reference-bff'];
  const unknown = which.filter((n) => !known.includes(n));
  if (unknown.length > 0) throw new Error(`unknown target(s) ${unknown.join(', ')}; known: ${known.join(', ')}`);
  const targets: BenchTarget[] = [];
  for (const name of which) {
    const argv = execArgv[name] ?? [];
    if (name === 'upstream') {
      targets.push({ name, child: bed.upstream, url: `${bed.upstream.url}/api/data`, headers: { authorization: `Bearer ${bearer}` } });
    } else if (name === 'bare-proxy') {
      const child = await startServer(name, 'bare-proxy', { BENCH_UPSTREAM_URL: bed.upstream.url, BENCH_REDIS_URL: bed.topology.pingUrl }, argv);
      bed.children.push(child);
      targets.push({ name, child, url: `${child.url}/api/data`, headers: { authorization: `Bearer ${bearer}` } });
    } else if (name === 'cloakroom') {
      const child = await startServer(name, 'cloakroom', cloakroomEnv(bed), argv);
      bed.children.push(child);
      targets.push({ name, child, url: `${child.url}/api/data`, headers: { cookie: await signIn(child), 'x-csrf': '1' } });
    } else if (name === 'cloakroom-memory') {
      const child = await startServer(name, 'cloakroom', cloakroomEnv({ upstream: bed.upstream, topology: { ...bed.topology, env: {} } }, { NODE_ENV: 'development' }), argv);
      bed.children.push(child);
      targets.push({ name, child, url: `${child.url}/api/data`, headers: { cookie: await signIn(child), 'x-csrf': '1' } });
    } else if (name === 'cloakroom-autopipeline') {
      const child = await startServer(name, 'cloakroom', { ...cloakroomEnv(bed), BENCH_AUTOPIPELINE: '1' }, argv);
      bed.children.push(child);
      targets.push({ name, child, url: `${child.url}/api/data`, headers: { cookie: await signIn(child), 'x-csrf': '1' } });
    } else if (name === 'cloakroom-access-log' || name === 'cloakroom-traced') {
      // A/B runs of the observability costs (docs/performance.md): `cloakroom` runs at LOG_LEVEL=warn
      // without tracing; these log an access line per request at info, and in addition trace
      // every request, exporting to the upstream process (which answers the posts 404: the spans are
      // still made, serialized and sent).
      const extra: Record<string, string> = name === 'cloakroom-access-log' ? { LOG_LEVEL: 'info' } : { OTEL_EXPORTER_OTLP_ENDPOINT: bed.upstream.url };
      const child = await startServer(name, 'cloakroom', cloakroomEnv(bed, extra), argv);
      bed.children.push(child);
      targets.push({ name, child, url: `${child.url}/api/data`, headers: { cookie: await signIn(child), 'x-csrf': '1' } });
    } else if (name === 'reference-bff') {
      const child = await startServer(name, 'reference-bff', { BENCH_UPSTREAM_URL: bed.upstream.url, BENCH_REDIS_URL: bed.topology.pingUrl, BENCH_SESSION_SECRET: SESSION_SECRET }, argv);
      bed.children.push(child);
      targets.push({ name, child, url: `${child.url}/api/data`, headers: { cookie: await signIn(child, false) } });
    }
  }
  for (const t of targets) await checkTarget(t);
  return targets;
}
