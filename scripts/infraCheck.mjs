// `npm run infra:check`: compiles the entry templates with the real Bicep CLI and lints every .bicep file with
// infra/bicepconfig.json. Passes only with 0 errors, 0 warnings, every suppression explained in the file, and the
// committed infra/*.json equal to what the CLI compiles (`--write` refreshes them).
//
// Without a CLI (none on PATH, no `az bicep`, no `dotnet` to restore the NuGet package) it says so and runs the
// structural tree-sitter checks instead, unless --require-cli or CI=true, where a missing compiler is a failure.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { isDeepStrictEqual } from 'node:util';
import {
  BICEP_VERSION,
  ENTRY_TEMPLATES,
  compileTemplates,
  findBicep,
  lintTemplates,
  nugetPackageId,
  withoutGenerator,
} from './bicepCli.mjs';

const args = new Set(process.argv.slice(2));
const requireCli = args.has('--require-cli') || process.env.CI === 'true';
const write = args.has('--write');
const started = performance.now();
const seconds = () => `${((performance.now() - started) / 1000).toFixed(1)} s`;

/** `#disable-next-line code // reason` is the only accepted suppression; file-wide ones hide too much. */
function suppressionProblems() {
  const problems = [];
  const files = readdirSync('infra', { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.bicep'));
  for (const relative of files.sort()) {
    const file = path.posix.join('infra', relative.split(path.sep).join('/'));
    readFileSync(file, 'utf8')
      .split('\n')
      .forEach((line, index) => {
        const where = `${file}:${index + 1}`;
        if (/#disable-diagnostics\b/.test(line))
          problems.push(`${where}: #disable-diagnostics silences a whole file; use #disable-next-line with a reason`);
        const next = /#disable-next-line\s+([^/]*?)\s*(?:\/\/\s*(.*))?$/.exec(line);
        if (next && !next[2]?.trim())
          problems.push(`${where}: #disable-next-line ${next[1]} needs a reason: "#disable-next-line rule // why"`);
      });
  }
  return problems;
}

function structuralFallback(tried) {
  console.log(`infra:check: no Bicep CLI could be had, so nothing was compiled or linted.`);
  for (const reason of tried) console.log(`  - ${reason}`);
  const packageId = nugetPackageId() ?? 'Azure.Bicep.CommandLine.<rid>';
  console.log(
    `  Install the .NET SDK (the NuGet package ${packageId} ${BICEP_VERSION} is then restored into .cache/bicep/), ` +
      `or put bicep ${BICEP_VERSION} on PATH.`,
  );
  if (requireCli) {
    console.error('infra:check: FAILED: the Bicep CLI is required here (--require-cli or CI=true).');
    process.exit(1);
  }
  console.log('infra:check: running the structural tree-sitter checks (test/infra/bicep.test.ts) instead.');
  const vitest = spawnSync(process.execPath, ['node_modules/vitest/vitest.mjs', 'run', 'test/infra/bicep.test.ts'], {
    stdio: 'inherit',
  });
  console.log(`infra:check: structural checks ${vitest.status === 0 ? 'passed' : 'FAILED'}; templates NOT compiled.`);
  process.exit(vitest.status ?? 1);
}

const cli = findBicep({ log: (line) => console.log(`infra:check: ${line}`) });
if (!cli.found) structuralFallback(cli.tried);
console.log(`infra:check: Bicep CLI ${cli.version} (${cli.source})`);
if (cli.note) console.log(`infra:check: note: ${cli.note}`);

const outDir = mkdtempSync(path.join(os.tmpdir(), 'cmk-rotator-bicep-'));
let build;
let lint;
try {
  build = compileTemplates(cli, outDir);
  lint = lintTemplates(cli);
} finally {
  rmSync(outDir, { recursive: true, force: true });
}

// Build and lint both report the linter's findings; count each place once.
const seen = new Set();
const diagnostics = [...build.diagnostics, ...lint.diagnostics].filter((d) => {
  const key = `${d.file}:${d.line}:${d.column}:${d.code}`;
  if (seen.has(key)) return false;
  seen.add(key);
  return true;
});
for (const d of diagnostics) console.log(`${d.file}:${d.line}:${d.column}: ${d.level} ${d.code}: ${d.message}`);
const errors = diagnostics.filter((d) => d.level === 'error');
const warnings = diagnostics.filter((d) => d.level === 'warning');

const problems = suppressionProblems();
if (build.status !== 0 && errors.length === 0) problems.push(`bicep build exited ${build.status}:\n${build.output}`);
if (lint.status !== 0 && errors.length === 0) problems.push(`bicep lint exited ${lint.status}`);
if (build.unexpected.length > 0)
  problems.push(`infra/ has entry templates not listed in ENTRY_TEMPLATES: ${build.unexpected.join(', ')}`);

const stale = [];
for (const entry of ENTRY_TEMPLATES) {
  const compiled = build.compiled[entry];
  const target = entry.replace(/\.bicep$/, '.json');
  if (compiled === undefined) {
    if (errors.length === 0) problems.push(`${entry} produced no JSON`);
    continue;
  }
  let committed;
  try {
    committed = readFileSync(target, 'utf8');
  } catch {
    committed = undefined;
  }
  const current = committed !== undefined && isDeepStrictEqual(withoutGenerator(committed), withoutGenerator(compiled));
  if (current) continue;
  if (write) {
    writeFileSync(target, compiled);
    console.log(`infra:check: wrote ${target}`);
  } else {
    stale.push(target);
  }
}
for (const target of stale)
  problems.push(`${target} is not what the CLI compiles now; run \`npm run infra:check -- --write\` and commit it`);
for (const problem of problems) console.log(`infra:check: ${problem}`);

const summary = `${ENTRY_TEMPLATES.length} templates, ${errors.length} errors, ${warnings.length} warnings`;
if (errors.length + warnings.length + problems.length > 0) {
  console.error(`infra:check: FAILED: ${summary}, ${problems.length} other problems (${seconds()})`);
  process.exit(1);
}
console.log(`infra:check: OK: ${summary}, compiled JSON current (Bicep ${cli.version}, ${seconds()})`);
