import { defineProject } from 'vitest/config';

export default defineProject({
  test: {
    name: 'local-host',
    include: ['test/**/*.test.ts'],
    globalSetup: ['../emulators/src/vitestSetup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
