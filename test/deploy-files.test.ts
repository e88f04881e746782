import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseEnv } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { createMetrics } from '../src/metrics.js';
import { freePort, startRedisServer, type RedisServer } from '../scripts/redis-server.js';
import { DEMO } from './support/harness.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const text = (p: string): string => readFileSync(join(ROOT, p), 'utf8');

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Obj = { [k: string]: Json };
const obj = (v: Json | undefined): Obj => (v !== null && typeof v === 'object' && !Array.isArray(v) ? v : {});
const arr = (v: Json | undefined): Json[] => (Array.isArray(v) ? v : []);
const str = (v: Json | undefined): string => (typeof v === 'string' ? v : '');

// ---- docker-compose.yml ---------------------------------------------------------------------

/** Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?message}` against an (empty) shell. */
function interpolate(value: string, shell: Record<string, string> = {}): string {
  return value.replace(/\$\{([A-Z0-9_]+)(?::?([-?])([^}]*))?\}/g, (_m, name: string, op?: string, arg?: string) => {
    const v = shell[name];
    if (v !== undefined && v !== '') return v;
    if (op === '?') throw new Error(`${name}: ${arg ?? 'required'}`);
    return op === '-' ? (arg ?? '') : '';
  });
}

const compose = obj(parseYaml(text('docker-compose.yml')) as Json);
const services = obj(compose.services);
const service = (name: string): Obj => obj(services[name]);

/** The environment compose gives a service: its env files in order, then `environment`. */
function composeEnvironment(name: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const f of arr(service(name).env_file)) {
    const path = interpolate(typeof f === 'string' ? f : str(obj(f).path));
    for (const [k, v] of Object.entries(parseEnv(text(path)))) if (v !== undefined) env[k] = v;
  }
  const environment = service(name).environment;
  if (Array.isArray(environment)) {
    for (const e of environment) {
      const [k, ...v] = str(e).split('=');
      if (k && v.length > 0) env[k] = interpolate(v.join('='));
    }
  } else {
    for (const [k, v] of Object.entries(obj(environment))) env[k] = interpolate(String(v));
  }
  return env;
}

const SECRET_NAME = /SECRET|PASSWORD|TOKEN|KEY/;

// ---- Dockerfile -------------------------------------------------------------------------------

interface Instruction { op: string; args: string }
function dockerInstructions(source: string): Instruction[] {
  const out: Instruction[] = [];
  let pending = '';
  for (const raw of source.split('\n')) {
    const line = raw.trim();
    if (pending === '' && (line === '' || line.startsWith('#'))) continue;
    if (line.startsWith('#')) continue;
    pending += (pending ? ' ' : '') + line.replace(/\\$/, '').trim();
    if (line.endsWith('\\')) continue;
    const m = /^(\S+)\s+([\s\S]*)$/.exec(pending);
    if (m?.[1] && m[2] !== undefined) out.push({ op: m[1].toUpperCase(), args: m[2] });
    pending = '';
  }
  return out;
}
const dockerfile = dockerInstructions(text('Dockerfile'));
const finalStage = dockerfile.slice(dockerfile.map((i) => i.op).lastIndexOf('FROM'));
const cmdOf = (stage: Instruction[]): string[] => {
  const cmd = stage.filter((i) => i.op === 'CMD').at(-1)?.args ?? '';
  return JSON.parse(cmd) as string[];
};
/** The HEALTHCHECK's command as an argv (exec form). */
const healthcheckArgv = (): string[] => {
  const hc = finalStage.find((i) => i.op === 'HEALTHCHECK')?.args ?? '';
  const cmd = hc.slice(hc.indexOf('CMD ') + 4).trim();
  return JSON.parse(cmd) as string[];
};

// ---- PromQL metric names ----------------------------------------------------------------------

const KEYWORDS = new Set(['and', 'or', 'unless', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'offset', 'inf', 'nan']);
/** The metric names an expression selects (functions, keywords, labels, strings and ranges left out). */
export function metricNamesIn(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '')
    .replace(/\$\w+/g, '')
    .replace(/\b\d[\d.]*(e[+-]?\d+)?\b/gi, '');
  const names: string[] = [];
  for (const m of bare.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const after = bare.slice((m.index ?? 0) + m[0].length).trimStart();
    if (after.startsWith('(') || KEYWORDS.has(m[0].toLowerCase())) continue;
    names.push(m[0]);
  }
  return names;
}

/** The contract's metric names (CONTRACT "Operations"), with the series a histogram has. */
const CONTRACT_METRICS: Record<string, 'counter' | 'gauge' | 'histogram'> = {
  cloakroom_http_requests_total: 'counter',
  cloakroom_http_request_duration_seconds: 'histogram',
  cloakroom_upstream_duration_seconds: 'histogram',
  cloakroom_token_refreshes_total: 'counter',
  cloakroom_refresh_lock_wait_seconds: 'histogram',
  cloakroom_redis_errors_total: 'counter',
  cloakroom_websockets_open: 'gauge',
};
const seriesOf = (name: string, type: string): string[] =>
  type === 'histogram' ? [`${name}_bucket`, `${name}_sum`, `${name}_count`] : [name];

let allowedMetrics: Set<string>;
beforeAll(async () => {
  const defined = await createMetrics({ defaultMetrics: true }).registry.getMetricsAsJSON();
  allowedMetrics = new Set([
    ...defined.flatMap((m) => seriesOf(m.name, String(m.type))),
    ...Object.entries(CONTRACT_METRICS).flatMap(([n, t]) => seriesOf(n, t)),
  ]);
});

describe('metric name extraction', () => {
  it('finds_selected_metrics_and_skips_functions_labels_and_ranges', () => {
    expect(metricNamesIn('histogram_quantile(0.99, sum by (le, route) (rate(foo_seconds_bucket{job=~"$job",status=~"5.."}[$__rate_interval]))) / clamp_min(sum(rate(bar_total[5m])), 1e-9) > 0.05 and baz > 1'))
      .toEqual(['foo_seconds_bucket', 'bar_total', 'baz']);
  });
});

describe('docker-compose.yml', () => {
  it('has_cloakroom_built_from_the_dockerfile_redis_and_a_demo_upstream', () => {
    expect(Object.keys(services).sort()).toEqual(['cloakroom', 'fake-upstream', 'redis']);
    expect(service('cloakroom').build).toBe('.');
    expect(service('cloakroom').profiles).toBeUndefined();
    expect(service('redis').profiles).toBeUndefined();
    expect(service('fake-upstream').profiles).toEqual(['demo']);
  });

  it('runs_the_official_redis_image_with_append_only_persistence_on_a_volume', () => {
    const redis = service('redis');
    expect(str(redis.image)).toMatch(/^redis:\d/);
    expect(arr(redis.command).join(' ')).toMatch(/--appendonly yes/);
    expect(arr(redis.volumes).map(String).some((v) => v.endsWith(':/data') && !v.startsWith('.') && !v.startsWith('/'))).toBe(true);
    expect(Object.keys(obj(compose.volumes))).toContain(String(arr(redis.volumes)[0]).split(':')[0]);
  });

  it('starts_cloakroom_after_healthy_redis_and_healthy_demo_upstream_when_that_profile_runs', () => {
    const deps = obj(service('cloakroom').depends_on);
    expect(obj(deps.redis)).toEqual({ condition: 'service_healthy' });
    expect(obj(deps['fake-upstream'])).toEqual({ condition: 'service_healthy', required: false });
  });

  it('gives_every_service_a_healthcheck_and_cloakroom_a_liveness_one_on_healthz', () => {
    for (const name of Object.keys(services)) expect([name, arr(obj(service(name).healthcheck).test).length > 1]).toEqual([name, true]);
    const test = arr(obj(service('cloakroom').healthcheck).test).join(' ');
    expect(test).toMatch(/\/healthz/);
    expect(test).not.toMatch(/readyz|curl|wget/);
  });

  it('runs_the_images_own_node_command_so_sigterm_reaches_the_server', () => {
    expect(service('cloakroom').command).toBeUndefined();
    expect(service('cloakroom').entrypoint).toBeUndefined();
    expect(arr(service('fake-upstream').command)).toEqual(['node', 'dist/scripts/fake-upstream/index.js']);
    const grace = str(service('cloakroom').stop_grace_period);
    expect(Number.parseInt(grace, 10)).toBeGreaterThan(Number(composeEnvironment('cloakroom').SHUTDOWN_TIMEOUT ?? 10));
  });

  it('reads_configuration_from_config_env_files_and_holds_no_literal_secret', () => {
    const files = arr(service('cloakroom').env_file).map((f) => interpolate(str(obj(f).path)));
    expect(files).toEqual(['config/development.env']);
    expect(existsSync(join(ROOT, files[0] ?? ''))).toBe(true);
    // A production env file replaces it: the path is a variable.
    expect(str(obj(arr(service('cloakroom').env_file)[0]).path)).toMatch(/^\$\{[A-Z_]+:-config\/development\.env\}$/);
    for (const name of Object.keys(services)) {
      for (const [k, v] of Object.entries(obj(service(name).environment))) {
        if (SECRET_NAME.test(k)) expect([name, k, String(v)]).toEqual([name, k, expect.stringMatching(/^\$\{[A-Z_]+(:?\?[^}]*)?\}$/)]);
      }
    }
    const source = text('docker-compose.yml').split('\n').filter((l) => !l.trim().startsWith('#')).join('\n');
    expect(source).not.toMatch(/change-me|rediss?:\/\/[^\s:@/]*:[^\s@]+@/);
    expect(source).not.toMatch(/(SESSION_SECRET|TOKEN_ENCRYPTION_KEY|PASSWORD)\s*[:=]\s*[^$\s]/);
  });
});

describe('Dockerfile', () => {
  it('builds_and_runs_on_node_22', () => {
    const froms = dockerfile.filter((i) => i.op === 'FROM').map((i) => i.args);
    expect(froms.length).toBeGreaterThanOrEqual(2);
    for (const f of froms) expect(f).toMatch(/^node:22[-.\w]*(\s|$)/);
  });

  it('runs_as_a_non_root_user', () => {
    const users = finalStage.filter((i) => i.op === 'USER').map((i) => i.args.split(':')[0]);
    expect(users.length).toBeGreaterThan(0);
    expect(users.at(-1)).not.toMatch(/^(root|0)$/);
    expect(finalStage.findIndex((i) => i.op === 'USER')).toBeLessThan(finalStage.findIndex((i) => i.op === 'CMD'));
  });

  it('runs_node_directly_and_has_no_npm_entrypoint', () => {
    expect(cmdOf(finalStage)).toEqual(['node', 'dist/src/main.js']);
    expect(finalStage.some((i) => i.op === 'ENTRYPOINT')).toBe(false);
  });

  it('checks_liveness_on_healthz_with_node_not_curl', () => {
    const argv = healthcheckArgv();
    expect(argv[0]).toBe('node');
    expect(argv.join(' ')).toMatch(/\/healthz/);
    expect(argv.join(' ')).not.toMatch(/readyz|curl|wget/);
  });

  it('copies_dist_whole_and_the_package_manifest_for_the_command_line', () => {
    const copies = finalStage.filter((i) => i.op === 'COPY').map((i) => i.args);
    expect(copies).toContain('--from=build /app/dist ./dist');
    expect(copies.some((c) => /--from=build \/app\/package\.json/.test(c))).toBe(true);
    expect(finalStage.some((i) => i.op === 'RUN' && i.args.includes('/app/dist/src/cli.js'))).toBe(true);
  });

  it('keeps_env_files_and_local_state_out_of_the_build_context', () => {
    const ignored = text('.dockerignore').split('\n').map((l) => l.trim());
    for (const p of ['.env', '*.env', 'node_modules', 'dist', '.git']) expect(ignored).toContain(p);
  });
});

describe('deploy/kubernetes', () => {
  const dir = join(ROOT, 'deploy', 'kubernetes');
  const manifests = readdirSync(dir).filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml');
  const docs = manifests.flatMap((f) => parseAllDocuments(readFileSync(join(dir, f), 'utf8')).map((d) => {
    expect(d.errors).toEqual([]);
    return obj(d.toJSON() as Json);
  }));
  const ofKind = (kind: string): Obj => {
    const found = docs.filter((d) => d.kind === kind);
    expect([kind, found.length]).toEqual([kind, 1]);
    return found[0] ?? {};
  };
  const deployment = ofKind('Deployment');
  const pod = obj(obj(deployment.spec).template);
  const podLabels = obj(obj(pod.metadata).labels);
  const containers = arr(obj(pod.spec).containers).map(obj);
  const container = containers[0] ?? {};
  const portNames = arr(container.ports).map((p) => str(obj(p).name));

  it('kustomization_lists_every_manifest', () => {
    const k = obj(parseYaml(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as Json);
    expect(arr(k.resources).map(String).sort()).toEqual([...manifests].sort());
  });

  it('probes_liveness_on_healthz_and_readiness_on_readyz', () => {
    const probe = (name: string) => obj(obj(container[name]).httpGet);
    expect(probe('livenessProbe').path).toBe('/healthz');
    expect(probe('readinessProbe').path).toBe('/readyz');
    for (const p of ['livenessProbe', 'readinessProbe', 'startupProbe']) expect(portNames).toContain(str(probe(p).port));
  });

  it('gives_the_drain_time_to_finish_before_the_kill', () => {
    const grace = Number(obj(pod.spec).terminationGracePeriodSeconds);
    const preStop = arr(obj(obj(obj(container.lifecycle).preStop).exec).command).join(' ');
    const pauseMs = Number(/setTimeout\([^,]+,\s*(\d+)\)/.exec(preStop)?.[1] ?? NaN);
    const shutdown = Number(obj(ofKind('ConfigMap').data).SHUTDOWN_TIMEOUT ?? 10);
    expect(pauseMs).toBeGreaterThan(0);
    expect(grace).toBeGreaterThan(pauseMs / 1000 + shutdown + 5);
    expect(arr(container.command)).toEqual(cmdOf(finalStage));
  });

  it('runs_as_the_images_non_root_user', () => {
    expect(obj(obj(pod.spec).securityContext).runAsNonRoot).toBe(true);
    expect(obj(container.securityContext).allowPrivilegeEscalation).toBe(false);
  });

  it('service_and_disruption_budget_select_the_deployments_pods', () => {
    const service = ofKind('Service');
    const pdb = ofKind('PodDisruptionBudget');
    const matches = (sel: Obj) => Object.entries(sel).every(([k, v]) => podLabels[k] === v) && Object.keys(sel).length > 0;
    expect(matches(obj(obj(service.spec).selector))).toBe(true);
    expect(matches(obj(obj(obj(pdb.spec).selector).matchLabels))).toBe(true);
    for (const p of arr(obj(service.spec).ports)) expect(portNames).toContain(str(obj(p).targetPort));
    expect(obj(deployment.spec).replicas).toBeGreaterThan(1);
  });

  it('keeps_secrets_out_of_the_manifests', () => {
    expect(docs.filter((d) => d.kind === 'Secret')).toEqual([]);
    expect(Object.keys(obj(ofKind('ConfigMap').data)).filter((k) => SECRET_NAME.test(k) || k === 'REDIS_URL')).toEqual([]);
    expect(arr(container.envFrom).map((e) => str(obj(obj(e).secretRef).name)).filter(Boolean)).toEqual(['cloakroom-secrets']);
  });
});

describe('deploy/grafana dashboard', () => {
  const dashboard = obj(JSON.parse(text('deploy/grafana/cloakroom-dashboard.json')) as Json);
  const panels = arr(dashboard.panels).map(obj).flatMap((p) => [p, ...arr(p.panels).map(obj)]);
  const exprs = panels.flatMap((p) => arr(p.targets).map((t) => str(obj(t).expr)));
  const variableQueries = arr(obj(dashboard.templating).list).map((v) => str(obj(obj(v).query).query)).filter(Boolean);

  it('uses_only_metrics_cloakroom_defines_or_the_contract_names', () => {
    expect(exprs.length).toBeGreaterThan(10);
    for (const e of exprs) {
      const names = metricNamesIn(e);
      expect([e, names.length > 0]).toEqual([e, true]);
      for (const n of names) expect([e, n, allowedMetrics.has(n)]).toEqual([e, n, true]);
    }
    for (const q of variableQueries) {
      const n = /label_values\(([A-Za-z_:][\w:]*)/.exec(q)?.[1] ?? '';
      expect([q, allowedMetrics.has(n)]).toEqual([q, true]);
    }
  });

  it('shows_every_contract_metric_and_node_process_metrics', () => {
    const used = new Set(exprs.flatMap(metricNamesIn));
    for (const [name, type] of Object.entries(CONTRACT_METRICS)) {
      expect([name, seriesOf(name, type).some((s) => used.has(s))]).toEqual([name, true]);
    }
    expect([...used].some((n) => n.startsWith('nodejs_eventloop_lag'))).toBe(true);
    expect([...used].some((n) => n.startsWith('process_'))).toBe(true);
  });

  it('has_unique_panel_ids', () => {
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
  });
});

describe('deploy/prometheus alert rules', () => {
  const rules = arr(obj(parseYaml(text('deploy/prometheus/cloakroom-alerts.yml')) as Json).groups)
    .flatMap((g) => arr(obj(g).rules).map(obj));

  it('every_rule_is_complete_and_uses_known_metrics', () => {
    expect(rules.length).toBeGreaterThan(3);
    for (const r of rules) {
      expect(str(r.alert)).toMatch(/^Cloakroom[A-Za-z0-9]+$/);
      expect(str(r.for)).toMatch(/^\d+[smh]$/);
      expect(['critical', 'warning']).toContain(str(obj(r.labels).severity));
      expect(str(obj(r.annotations).summary).length).toBeGreaterThan(0);
      const e = str(r.expr);
      expect(e.split('(').length).toBe(e.split(')').length);
      for (const n of metricNamesIn(e)) expect([r.alert, n, allowedMetrics.has(n)]).toEqual([r.alert, n, true]);
    }
  });

  it('alerts_on_redis_failures_refresh_failures_5xx_and_event_loop_lag', () => {
    const exprs = rules.map((r) => str(r.expr));
    expect(exprs.some((e) => e.includes('cloakroom_redis_errors_total'))).toBe(true);
    expect(exprs.some((e) => /cloakroom_token_refreshes_total\{outcome="failed"\}/.test(e))).toBe(true);
    expect(exprs.some((e) => /cloakroom_http_requests_total\{status=~"5\.\."\}/.test(e))).toBe(true);
    expect(exprs.some((e) => e.includes('nodejs_eventloop_lag'))).toBe(true);
  });
});

// ---- the image's commands, run outside a container -----------------------------------------

/**
 * No container engine in CI: the image's CMD and HEALTHCHECK, and the compose demo upstream's
 * command, run here as they would in the container (a fresh build, the compose environment,
 * a working directory without .env). Only the compose network's host names and the ports differ.
 */
describe('image commands outside a container', () => {
  let work = '';
  let redis: RedisServer | undefined;
  let upstream: ChildProcess | undefined;
  let server: ChildProcess | undefined;
  let serverExit: Promise<number | null> | undefined;
  let serverOut = '';
  let base = '';
  let env: Record<string, string> = {};

  const run = (argv: string[], runEnv: Record<string, string>): Promise<number> =>
    new Promise((resolve) => {
      const [cmd, ...args] = argv;
      execFile(cmd ?? 'false', args, { cwd: work, env: runEnv, timeout: 10_000 }, (err) => {
        resolve(err ? (typeof err.code === 'number' ? err.code : 1) : 0);
      });
    });

  beforeAll(async () => {
    mkdirSync(join(ROOT, '.scratch'), { recursive: true });
    work = mkdtempSync(join(ROOT, '.scratch', 'image-'));
    // The image's build step (tsconfig.build.json) into this folder's dist/, without bench/ and
    // without type checking (`npm run lint` does that): node_modules resolve from the project.
    writeFileSync(join(work, 'tsconfig.json'), JSON.stringify({
      extends: join(ROOT, 'tsconfig.build.json'),
      compilerOptions: { rootDir: ROOT, outDir: join(work, 'dist'), noCheck: true },
      include: [join(ROOT, 'src'), join(ROOT, 'scripts')],
    }));
    const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    const built = await new Promise<string>((resolve) => {
      execFile(process.execPath, [tsc, '-p', join(work, 'tsconfig.json')], { timeout: 110_000 }, (err, stdout, stderr) => resolve(err ? `${stdout}${stderr}` : ''));
    });
    expect(built).toBe('');

    redis = await startRedisServer({ persist: true, args: arr(service('redis').command).map(String).slice(1) });

    const upstreamPort = await freePort();
    const upstreamEnv = { PATH: process.env.PATH ?? '', ...composeEnvironment('fake-upstream'), PORT: String(upstreamPort) };
    const [ucmd, ...uargs] = arr(service('fake-upstream').command).map(String);
    upstream = spawn(ucmd ?? 'node', uargs, { cwd: work, env: upstreamEnv, stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      upstream?.stdout?.on('data', (d: Buffer) => { if (d.toString().includes('listening')) resolve(); });
      upstream?.once('exit', (code) => reject(new Error(`fake upstream exited ${code}`)));
    });
    const healthArgv = arr(obj(service('fake-upstream').healthcheck).test).map(String).slice(1).map((a) => a.replace(':4000', `:${upstreamPort}`));
    expect(await run(healthArgv, upstreamEnv)).toBe(0);

    const imageEnv: Record<string, string> = {};
    for (const i of finalStage.filter((x) => x.op === 'ENV')) {
      const [k, ...v] = i.args.split('=');
      if (k) imageEnv[k] = v.join('=');
    }
    const port = await freePort();
    env = {
      PATH: process.env.PATH ?? '',
      ...imageEnv,
      ...composeEnvironment('cloakroom'),
      REDIS_URL: redis.url,
      UPSTREAM_URL: `http://127.0.0.1:${upstreamPort}`,
      PORT: String(port),
    };
    base = `http://127.0.0.1:${port}`;
    const [cmd, ...args] = cmdOf(finalStage);
    const child = spawn(cmd ?? 'node', args, { cwd: work, env, stdio: ['ignore', 'pipe', 'pipe'] });
    server = child;
    child.stdout?.on('data', (d: Buffer) => { serverOut += d.toString(); });
    child.stderr?.on('data', (d: Buffer) => { serverOut += d.toString(); });
    serverExit = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    // Generous: on a loaded machine node and the Redis check take seconds before it listens.
    for (const deadline = Date.now() + 45_000; Date.now() < deadline && child.exitCode === null;) {
      const ok = await fetch(`${base}/healthz`).then((r) => r.status === 200, () => false);
      if (ok) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`cloakroom did not answer /healthz:\n${serverOut}`);
  }, 120_000);

  afterAll(async () => {
    if (server && server.exitCode === null) server.kill('SIGKILL');
    if (upstream && upstream.exitCode === null) upstream.kill('SIGKILL');
    await redis?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('the_compose_development_environment_is_what_runs', () => {
    expect(env.NODE_ENV).toBe('development');
    expect(serverOut).toMatch(/cloakroom listening/);
  });

  it('healthz_and_readyz_answer_200_and_the_healthchecks_pass', async () => {
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    expect(await run(healthcheckArgv(), env)).toBe(0);
    expect(await run(arr(obj(service('cloakroom').healthcheck).test).map(String).slice(1), env)).toBe(0);
  }, 40_000);

  it('a_demo_user_signs_in_through_the_demo_upstream', async () => {
    const res = await fetch(`${base}/auth/login`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-CSRF': '1' },
      body: JSON.stringify(DEMO),
    });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { authenticated?: boolean }).authenticated).toBe(true);
  });

  it('sigterm_drains_and_exits_0_after_which_the_healthcheck_fails', async () => {
    server?.kill('SIGTERM');
    expect(await serverExit).toBe(0);
    expect(serverOut).toMatch(/"stopped"|stopped/);
    expect(await run(healthcheckArgv(), env)).toBe(1);
  }, 40_000);
});
