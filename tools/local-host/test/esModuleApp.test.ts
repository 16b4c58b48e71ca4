// An app whose entry point is an ES module (as the built app, dist/main.mjs, is) loads the way the worker loads it:
// its functions register, and the modules it imports later load on first use.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadFunctionApp } from '../src/registry';
import type { FixtureApp } from './fixture';
import { createFixtureApp } from './fixture';

const entry = `
import functions from '@azure/functions';

functions.app.http('lazy', {
  authLevel: 'anonymous',
  handler: async () => {
    const { answer } = await import('./chunks/answer.mjs');
    return { body: answer };
  },
});
`;

let fixture: FixtureApp;
beforeAll(() => {
  fixture = createFixtureApp('');
  writeFileSync(path.join(fixture.dir, 'package.json'), JSON.stringify({ name: 'esm-fixture', main: 'main.mjs' }));
  writeFileSync(path.join(fixture.dir, 'main.mjs'), entry);
  mkdirSync(path.join(fixture.dir, 'chunks'));
  writeFileSync(path.join(fixture.dir, 'chunks/answer.mjs'), "export const answer = 'from a chunk';\n");
});
afterAll(() => fixture.remove());

describe('an ES-module app', () => {
  it('registers its functions, and a function imports a module of the app on first use', async () => {
    const app = await loadFunctionApp(fixture.dir, { log: () => {} });
    expect(app.loadError).toBeUndefined();
    expect(app.functions.map((f) => f.name)).toEqual(['lazy']);
    const response = await app.invoke('lazy', {
      trigger: {
        http: {
          method: 'GET',
          url: 'http://localhost/api/lazy',
          nullableHeaders: {},
          nullableQuery: {},
          nullableParams: {},
        },
      },
      reason: 'test',
    });
    const body = response.returnValue?.http?.body as { bytes: Uint8Array };
    expect(Buffer.from(body.bytes).toString('utf8')).toBe('from a chunk');
  });

  it('is refused a second load in the same process, with the reason, since ES modules cannot be unloaded', async () => {
    const lines: string[] = [];
    const again = await loadFunctionApp(fixture.dir, { log: (entry) => lines.push(entry.message) });
    expect(again.functions).toEqual([]);
    expect(again.loadError?.message).toMatch(/main\.mjs is an ES module and was loaded in this process already/);
    expect(lines.join('\n')).toContain('Worker was unable to load entry point "main.mjs"');
  });
});
