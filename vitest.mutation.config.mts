// The suite Stryker runs for each mutant (npm run test:mutation): the domain's and use cases' own tests, which need
// no emulator, so thousands of runs stay within minutes.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/unit/**/*.test.ts'],
    testTimeout: 10_000,
    pool: 'forks',
  },
});
