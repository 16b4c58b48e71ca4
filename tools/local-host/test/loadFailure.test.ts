// An app whose entry point throws while loading (e.g. configuration validated at module load). The Node.js worker
// logs it and carries on with what was registered before the throw, and the host serves that (usually nothing);
// the local host must do the same, so that local runs and tests see what Azure does.
import { describe, expect, it } from 'vitest';
import type { HostLogEntry } from '../src/log';
import { loadFunctionApp } from '../src/registry';
import { startLocalHost } from '../src/server';
import { createFixtureApp, parseLogLine } from './fixture';

describe('an app whose entry point throws while loading', () => {
  it('keeps an app whose entry point throws, with what it registered before, and logs why at error level', async () => {
    const broken = createFixtureApp(`
      const { app } = require('@azure/functions');
      app.http('registeredFirst', { authLevel: 'anonymous', handler: () => ({ body: 'still here' }) });
      throw new Error('ROTATOR_CONFIG is invalid: keyVaultUrl must be an https URL');
      app.http('neverRegistered', { authLevel: 'anonymous', handler: () => ({}) });
    `);
    const entries: HostLogEntry[] = [];
    try {
      const app = await loadFunctionApp(broken.dir, { log: (entry) => entries.push(entry) });
      expect(app.functions.map((f) => f.name)).toEqual(['registeredFirst']);
      expect(app.loadError?.message).toBe('ROTATOR_CONFIG is invalid: keyVaultUrl must be an https URL');
      expect(entries.map((e) => [e.level, e.message.split(' | ')[0]])).toEqual([
        [
          'error',
          'Worker was unable to load entry point "index.js": Error: ROTATOR_CONFIG is invalid: keyVaultUrl must be an https URL',
        ],
        ['warning', 'Only 1 function(s) registered before the entry point failed; the others do not exist.'],
      ]);
    } finally {
      broken.remove();
    }
  });

  it('serves an app whose entry point threw before registering anything: every route answers 404', async () => {
    const broken = createFixtureApp(
      `require('@azure/functions');\nthrow new Error('ROTATOR_CONFIG is invalid: tenantId is missing');`,
    );
    const lines: string[] = [];
    const host = await startLocalHost({ appDir: broken.dir, port: 0, log: (line) => lines.push(line) });
    try {
      expect(host.functions).toEqual([]);
      expect((await fetch(`${host.url}/api/health`)).status).toBe(404);
      const logged = lines.map(parseLogLine);
      expect(logged.find((l) => l.level === 'error')?.message).toMatch(
        /^Worker was unable to load entry point "index\.js": Error: ROTATOR_CONFIG is invalid: tenantId is missing/,
      );
      expect(logged.find((l) => l.level === 'warning')?.message).toMatch(/^No job functions found/);
    } finally {
      await host.close();
      broken.remove();
    }
  });
});
