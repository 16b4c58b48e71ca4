// `node dist/host.js` as `npm run serve` runs it: bundled from host/main.ts and started in the app's folder.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FixtureApp } from './fixture';
import { createFixtureApp } from './fixture';

interface RunningHost {
  output(): { stdout: string; stderr: string };
  exited: Promise<number | null>;
  signal(name: NodeJS.Signals): void;
}

let bundleDir: string;
let hostScript: string;

function runHost(appDir: string, env: Record<string, string>): RunningHost {
  const child = spawn(process.execPath, [hostScript], {
    cwd: appDir,
    env: { ...process.env, PORT: '0', TICK_SCHEDULE: '0 0 0 1 1 *', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return {
    output: () => ({ stdout, stderr }),
    exited: new Promise((resolve) => child.once('exit', (code) => resolve(code))),
    signal: (name) => child.kill(name),
  };
}

async function waitForOutput(host: RunningHost, pattern: RegExp): Promise<RegExpExecArray> {
  for (;;) {
    const match = pattern.exec(host.output().stdout);
    if (match) return match;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

describe('npm run serve (host/main.ts)', () => {
  let fixture: FixtureApp;

  beforeAll(async () => {
    bundleDir = mkdtempSync(path.join(os.tmpdir(), 'host-cli-'));
    hostScript = path.join(bundleDir, 'host.js');
    await build({
      entryPoints: [path.resolve('host/main.ts')],
      outfile: hostScript,
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'cjs',
      external: ['@azure/functions-core'],
      logLevel: 'warning',
    });
    fixture = createFixtureApp();
  });
  afterAll(() => {
    fixture.remove();
    rmSync(bundleDir, { recursive: true, force: true });
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

  it('prints why and exits non-zero when the app fails to load', async () => {
    const broken = createFixtureApp(
      `require('@azure/functions');\nthrow new Error('ROTATOR_CONFIG is invalid: tenantId is missing');`,
    );
    try {
      const host = runHost(broken.dir, {});
      expect(await host.exited).toBe(1);
      expect(host.output().stderr).toMatch(
        /failed to load \(index\.js\): ROTATOR_CONFIG is invalid: tenantId is missing/,
      );
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
