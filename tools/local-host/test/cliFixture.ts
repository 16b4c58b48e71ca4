// `node dist/host.js` as `npm run serve` runs it: tools/local-host/src/main.ts bundled as scripts/build.mjs bundles it, started as a
// child process in the app's folder.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { build } from 'esbuild';

export interface RunningHost {
  output(): { stdout: string; stderr: string };
  exited: Promise<number | null>;
  /** Whether the process has exited yet. */
  hasExited(): boolean;
  signal(name: NodeJS.Signals): void;
}

export interface HostBundle {
  run(appDir: string, env: Record<string, string>): RunningHost;
  remove(): void;
}

export async function bundleHost(): Promise<HostBundle> {
  const bundleDir = mkdtempSync(path.join(os.tmpdir(), 'host-cli-'));
  const hostScript = path.join(bundleDir, 'host.js');
  await build({
    entryPoints: [path.resolve('tools/local-host/src/main.ts')],
    outfile: hostScript,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    external: ['@azure/functions-core'],
    logLevel: 'warning',
    // As scripts/build.mjs: some SDK packages are bundled from ES-module builds that call createRequire(import.meta.url).
    define: { 'import.meta.url': '__bundleUrl' },
    banner: { js: 'var __bundleUrl = require("node:url").pathToFileURL(__filename).href;' },
  });
  return {
    run: (appDir, env) => runHost(hostScript, appDir, env),
    remove: () => rmSync(bundleDir, { recursive: true, force: true }),
  };
}

function runHost(hostScript: string, appDir: string, env: Record<string, string>): RunningHost {
  const child = spawn(process.execPath, [hostScript], {
    cwd: appDir,
    env: { ...process.env, PORT: '0', TICK_SCHEDULE: '0 0 0 1 1 *', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let exited = false;
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return {
    output: () => ({ stdout, stderr }),
    exited: new Promise((resolve) =>
      child.once('exit', (code) => {
        exited = true;
        resolve(code);
      }),
    ),
    hasExited: () => exited,
    signal: (name) => child.kill(name),
  };
}

export async function waitForOutput(host: RunningHost, pattern: RegExp): Promise<RegExpExecArray> {
  for (;;) {
    const match = pattern.exec(host.output().stdout);
    if (match) return match;
    if (host.hasExited()) throw new Error(`The host exited without printing ${pattern}:\n${host.output().stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
