// The committed infra/*.json must be what the Bicep CLI compiles from infra/*.bicep now: the portal link and
// `az deployment sub create --template-file infra/main.json` deploy those files, not the Bicep. Needs the CLI; on a
// machine with the .NET SDK (every project machine) it is restored from NuGet into .cache/bicep/ on first use.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { BicepCli } from '../../scripts/bicepCli.mjs';
import {
  BICEP_VERSION,
  ENTRY_TEMPLATES,
  compileTemplates,
  findBicep,
  withoutGenerator,
} from '../../scripts/bicepCli.mjs';

let cli: BicepCli;
let compiled: Record<string, string> = {};
let output = '';

beforeAll(() => {
  cli = findBicep();
  if (!cli.found) return;
  const outDir = mkdtempSync(path.join(os.tmpdir(), 'cmk-rotator-bicep-test-'));
  try {
    ({ compiled, output } = compileTemplates(cli, outDir));
  } finally {
    rmSync(outDir, { recursive: true, force: true });
  }
}, 300_000);

describe('compiled templates', () => {
  it('has a Bicep CLI to compile with', () => {
    const why = cli.found ? '' : cli.tried.join('; ');
    expect(cli.found, `no Bicep CLI ${BICEP_VERSION}: ${why}. Install the .NET SDK or put bicep on PATH.`).toBe(true);
  });

  it.each(ENTRY_TEMPLATES)('%s compiles to the committed JSON', (entry) => {
    expect(cli.found, 'no Bicep CLI (see the test above)').toBe(true);
    const target = entry.replace(/\.bicep$/, '.json');
    expect(compiled[entry], `${entry} did not compile:\n${output}`).toBeDefined();
    const hint = `${target} is stale: run \`npm run infra:check -- --write\` and commit it${cli.found && cli.note ? ` (${cli.note})` : ''}`;
    expect(withoutGenerator(readFileSync(target, 'utf8')), hint).toEqual(withoutGenerator(compiled[entry]!));
  });

  it('ignores only the generator stamp when comparing', () => {
    const template = JSON.stringify({ metadata: { _generator: { version: '1' } }, resources: [{ name: 'a' }] });
    const restamped = template.replace('"version":"1"', '"version":"2"');
    expect(withoutGenerator(restamped)).toEqual(withoutGenerator(template));
    expect(withoutGenerator(template.replace('"a"', '"b"'))).not.toEqual(withoutGenerator(template));
  });
});
