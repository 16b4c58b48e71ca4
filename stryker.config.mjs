// Mutation testing of the decisions that keep hubs safe (src/domain) and of the use cases (src/application).
// Incremental: a run re-tests only the mutants whose code or covering tests changed since the committed result
// (reports/stryker-incremental.json), so CI stays within minutes. Below 90% the run fails.
/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'vitest',
  vitest: { configFile: 'vitest.mutation.config.mts' },
  mutate: ['src/domain/**/*.ts', 'src/application/**/*.ts', '!src/domain/ports.ts'],
  coverageAnalysis: 'perTest',
  incremental: true,
  incrementalFile: 'reports/stryker-incremental.json',
  reporters: ['clear-text', 'progress', 'json'],
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  clearTextReporter: { allowColor: false, reportTests: false, reportMutants: false },
  thresholds: { high: 95, low: 90, break: 90 },
  concurrency: 2,
  timeoutMS: 10_000,
  tempDirName: '.stryker-tmp',
  cleanTempDir: 'always',
};
