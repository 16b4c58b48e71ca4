// The sandbox (`npm start`'s entry point) kept running for browser tests, and Debian's Chromium driven by
// playwright-core (there is no browser download on these machines: .ci/run installs the `chromium` package).
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import type { Browser } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `No Chromium at ${CHROMIUM}: install Debian's package (apt-get install chromium, as .ci/run does) or set CHROMIUM_PATH.`,
    );
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    // As root, and on a machine whose network is closed: no sandbox, no GPU, no calls home.
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
}

export interface RunningSandbox {
  /** The dashboard URL the sandbox printed (with the local function key). */
  dashboardUrl: string;
  /** The function app's base URL. */
  appUrl: string;
  functionKey: string;
  /** The ARM emulator's admin API (`https://127.0.0.1:<port>/_admin`), trusted by the test workers. */
  armAdmin: string;
  output: () => string;
  stop: () => Promise<void>;
}

/** Starts the sandbox on free ports and resolves once its story is told and it waits for Ctrl-C. */
export async function startSandbox(): Promise<RunningSandbox> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'cmk-dashboard-'));
  // The emulators' certificate the test workers already trust (tools/emulators/src/vitestSetup.ts).
  mkdirSync(path.join(dataDir, 'tls'));
  copyFileSync(path.resolve('.data/test-tls/emulator-tls.json'), path.join(dataDir, 'tls/emulator-tls.json'));
  const child = spawn(process.execPath, ['dist/sandbox.js'], {
    env: { ...process.env, SANDBOX_DATA_DIR: dataDir, SANDBOX_BASE_PORT: '0', NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  const ready = new Promise<void>((resolve, reject) => {
    const collect = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('Ctrl-C stops everything')) resolve();
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    void exited.then((code) => reject(new Error(`the sandbox exited (${code}) before it was ready:\n${output}`)));
  });
  const stop = async () => {
    if (child.exitCode === null) child.kill('SIGINT');
    await exited;
    rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    await ready;
  } catch (error) {
    await stop();
    throw error;
  }
  const dashboardUrl = /dashboard\s+(http:\/\/127\.0\.0\.1:\d+\/api\/dashboard\?code=\S+)/.exec(output)?.[1];
  const armPort = /ARM log\s+curl .* https:\/\/127\.0\.0\.1:(\d+)\/_admin\/requests/.exec(output)?.[1];
  if (!dashboardUrl || !armPort) {
    await stop();
    throw new Error(`the sandbox did not print the dashboard URL and the ARM port:\n${output}`);
  }
  const url = new URL(dashboardUrl);
  return {
    dashboardUrl,
    appUrl: url.origin,
    functionKey: url.searchParams.get('code') ?? '',
    armAdmin: `https://127.0.0.1:${armPort}/_admin`,
    output: () => output,
    stop,
  };
}
