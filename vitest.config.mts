import { defineConfig } from 'vitest/config';

// One project per package: `vitest run --project app` (npm run test:app) runs the function app's own suite alone,
// `vitest run` runs it and every tool's (tools/*/vitest.config.mts).
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'app',
          include: ['test/**/*.test.ts'],
          globalSetup: ['tools/emulators/src/vitestSetup.ts'],
          testTimeout: 30_000,
          hookTimeout: 60_000,
          pool: 'forks',
        },
      },
      'tools/*/vitest.config.mts',
    ],
  },
});
