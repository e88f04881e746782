/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time by function, self time by
 * origin (cloakroom source, each dependency, Node core, GC), and inclusive time of
 * cloakroom's own functions.
 */
import { readFileSync } from 'node:fs';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  totalMs: number;
  /** Time not idle: what the process spent working. */
  busyMs: number;
  self: { name: string; ms: number; pct: number }[];
  byOrigin: { origin: string; ms: number; pct: number }[];
  inclusive: { name: string; ms: number; pct: number }[];
}

export function originOf(url: string, functionName: string): string {
  if (url === '') {
    if (functionName.startsWith('(')) return functionName; // (garbage collector), (program), (idle), (root)
    return 'native (V8 builtins, C++)';
  }
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1] ?? url;
  if (url.includes('/dist/src/')) return 'cloakroom (src)';
  if (url.includes('/dist/bench/')) return 'bench harness';
  if (url.startsWith('node:')) return `node core: ${url.slice(5).split('/')[0]}`;
  return url;
}

function label(f: CallFrame): string {
  const file = f.url.replace(/^.*\/(dist|node_modules)\//, '$1/').replace(/^file:\/\//, '');
  return `${f.functionName || '(anonymous)'} ${file}:${f.lineNumber + 1}`;
}

export function summariseProfile(path: string, top = 25): ProfileSummary {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n] as const));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

  const self = new Map<string, number>();
  const origin = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let total = 0;
  let idle = 0;
  profile.samples.forEach((id, i) => {
    const dt = (profile.timeDeltas[i] ?? 0) / 1000;
    const node = byId.get(id);
    if (!node) return;
    total += dt;
    const f = node.callFrame;
    if (f.functionName === '(idle)') {
      idle += dt;
      return;
    }
    const key = label(f);
    self.set(key, (self.get(key) ?? 0) + dt);
    const o = originOf(f.url, f.functionName);
    origin.set(o, (origin.get(o) ?? 0) + dt);
    // Inclusive time of cloakroom's functions: each counted once per sample, however deep the recursion.
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const cf = byId.get(cur)?.callFrame;
      if (!cf || !cf.url.includes('/dist/src/')) continue;
      const k = label(cf);
      if (seen.has(k)) continue;
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + dt);
    }
  });
  const busy = total - idle;
  const rank = <K extends string>(m: Map<string, number>, field: K, n: number) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, ms]) => ({ [field]: k, ms, pct: (100 * ms) / busy }) as { [P in K]: string } & { ms: number; pct: number });
  return {
    totalMs: total,
    busyMs: busy,
    self: rank(self, 'name', top),
    byOrigin: rank(origin, 'origin', 20),
    inclusive: rank(inclusive, 'name', top),
  };
}

export function formatProfile(s: ProfileSummary, requests?: number): string {
  const perReq = (ms: number) => (requests ? `${((ms * 1000) / requests).toFixed(1).padStart(7)} us/req` : '');
  const lines: string[] = [];
  lines.push(`profile: ${s.totalMs.toFixed(0)} ms sampled, ${s.busyMs.toFixed(0)} ms busy${requests ? `, ${requests} requests` : ''}`);
  lines.push('', 'self time by origin (% of busy):');
  for (const r of s.byOrigin) lines.push(`  ${r.pct.toFixed(1).padStart(5)}%  ${perReq(r.ms)}  ${r.origin}`);
  lines.push('', 'top functions by self time:');
  for (const r of s.self) lines.push(`  ${r.pct.toFixed(1).padStart(5)}%  ${perReq(r.ms)}  ${r.name}`);
  lines.push('', 'cloakroom functions by inclusive time:');
  for (const r of s.inclusive) lines.push(`  ${r.pct.toFixed(1).padStart(5)}%  ${perReq(r.ms)}  ${r.name}`);
  return lines.join('\n');
}
