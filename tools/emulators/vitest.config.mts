import { defineProject } from 'vitest/config';

export default defineProject({
  test: {
    name: 'emulators',
    include: ['test/**/*.test.ts'],
    globalSetup: ['src/vitestSetup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
