// `node dist/host.js` as `npm run serve` runs it (see cli-fixture.ts).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HostBundle } from './cliFixture';
import { bundleHost, waitForOutput } from './cliFixture';
import type { FixtureApp } from './fixture';
import { createFixtureApp } from './fixture';

describe('npm run serve (tools/local-host/src/main.ts)', () => {
  let fixture: FixtureApp;

  let bundle: HostBundle;
  const runHost = (appDir: string, env: Record<string, string>) => bundle.run(appDir, env);

  beforeAll(async () => {
    bundle = await bundleHost();
    fixture = createFixtureApp();
  });
  afterAll(() => {
    fixture.remove();
    bundle.remove();
  });

  it('serves the app in the current folder, prints its routes and stops cleanly on SIGTERM', async () => {
    const host = runHost(fixture.dir, { ROTATOR_LOCAL_FUNCTION_KEY: 'cli-key' });
    const [, url] = await waitForOutput(host, /getItem: \[GET,POST\] (http:\/\/127\.0\.0\.1:\d+)\/api\/items\/\{id\}/);
    const { stdout } = host.output();
    expect(stdout).toContain(`secret: [GET] ${url}/api/secret`);
    expect(stdout).toContain(`onKeyEvent: eventGridTrigger ${url}/runtime/webhooks/eventgrid?functionName=onKeyEvent`);
    expect(stdout).toContain('tick: timerTrigger (%TICK_SCHEDULE%)');

    const response = await fetch(`${url}/api/items/5`);
    expect(await response.json()).toMatchObject({ id: '5' });
    expect((await fetch(`${url}/api/secret`, { headers: { 'x-functions-key': 'cli-key' } })).status).toBe(200);
    expect(host.output().stdout).toMatch(/ information getItem [0-9a-f-]{36}: \{"event":"getItem","id":"5"\}\n/);

    host.signal('SIGTERM');
    expect(await host.exited).toBe(0);
    expect(host.output().stdout).toContain('Host stopped.');
    expect(host.output().stdout).not.toContain('cli-key');
  });

  it('keeps serving, with no functions, when the app throws while loading, as the Functions host does', async () => {
    const broken = createFixtureApp(
      `require('@azure/functions');\nthrow new Error('ROTATOR_CONFIG is invalid: tenantId is missing');`,
    );
    try {
      const host = runHost(broken.dir, {});
      const [, url] = await waitForOutput(host, /Host started on (http:\/\/127\.0\.0\.1:\d+) with 0 function\(s\)/);
      const { stdout } = host.output();
      expect(stdout).toMatch(
        / error host: Worker was unable to load entry point "index\.js": Error: ROTATOR_CONFIG is invalid: tenantId is missing/,
      );
      expect(stdout).toMatch(/ warning host: No job functions found/);
      expect((await fetch(`${url}/api/health`)).status).toBe(404);

      host.signal('SIGTERM');
      expect(await host.exited).toBe(0);
    } finally {
      broken.remove();
    }
  });

  it('refuses to start without ROTATOR_LOCAL_FUNCTION_KEY when a function needs a key', async () => {
    const host = runHost(fixture.dir, { ROTATOR_LOCAL_FUNCTION_KEY: '' });
    expect(await host.exited).toBe(1);
    expect(host.output().stderr).toContain('set ROTATOR_LOCAL_FUNCTION_KEY');
  });

  it('rejects a PORT that is not a port number', async () => {
    const host = runHost(fixture.dir, { PORT: 'eighty' });
    expect(await host.exited).toBe(1);
    expect(host.output().stderr).toContain('PORT must be a port number (0-65535), got "eighty".');
  });
});
