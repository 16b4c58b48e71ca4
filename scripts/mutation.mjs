// npm run test:mutation: Stryker (stryker.config.mjs), then the score of the domain and use cases in one line.
// Stryker's own threshold fails the run below 90%; this adds the figure and the per-file table's worst files.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import { calculateMutationTestMetrics } from 'mutation-testing-metrics';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const run = spawnSync(
  process.execPath,
  [path.join(root, 'node_modules/@stryker-mutator/core/bin/stryker.js'), 'run', ...process.argv.slice(2)],
  {
    cwd: root,
    stdio: 'inherit',
  },
);
let report;
try {
  report = JSON.parse(readFileSync(path.join(root, 'reports/mutation/mutation.json'), 'utf8'));
} catch {
  console.error('test:mutation: no report was written (reports/mutation/mutation.json)');
  process.exit(run.status || 1);
}
const { systemUnderTestMetrics } = calculateMutationTestMetrics(report);
console.log(`mutation score: ${systemUnderTestMetrics.metrics.mutationScore.toFixed(1)}%`);
process.exit(run.status ?? 1);
