import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from '@jest/globals';
import { CONFIG_VARIABLES } from '../src/config.js';

const README = readFileSync(fileURLToPath(new URL('../README.md', import.meta.url)), 'utf8');

/** The variables named in the first column of the README's "## Configuration" table. */
export function tableVariables(markdown: string): string[] {
  const start = markdown.indexOf('\n## Configuration\n');
  if (start === -1) return [];
  const rest = markdown.slice(start + 1);
  const next = rest.indexOf('\n## ', 3);
  const section = next === -1 ? rest : rest.slice(0, next);
  const names: string[] = [];
  for (const line of section.split('\n')) {
    if (!line.startsWith('|')) continue;
    const first = line.split('|')[1] ?? '';
    for (const m of first.matchAll(/`([A-Z][A-Z0-9_]*)`/g)) if (m[1]) names.push(m[1]);
  }
  return names;
}

describe('README configuration table', () => {
  it('names_every_variable_the_configuration_reads', () => {
    const documented = new Set(tableVariables(README));
    expect(CONFIG_VARIABLES.filter((v) => !documented.has(v))).toEqual([]);
  });

  it('names_no_variable_the_configuration_does_not_read', () => {
    expect(tableVariables(README).filter((v) => !CONFIG_VARIABLES.includes(v))).toEqual([]);
  });

  it('names_each_variable_once', () => {
    const names = tableVariables(README);
    expect(names.filter((v, i) => names.indexOf(v) !== i)).toEqual([]);
  });

  it('reader_sees_the_table_rows_and_nothing_past_the_section', () => {
    const md = '# x\n\n## Configuration\n\n| variable | default |\n| --- | --- |\n| `A_B` / `C` | `1` |\n| `D`, `E_F` | x `NOT_ME` |\n\n## Next\n\n| `G` | y |\n';
    expect(tableVariables(md)).toEqual(['A_B', 'C', 'D', 'E_F']);
  });
});
