// Cold start and memory: how long the bundled app takes to load in a fresh process, and how much memory the host
// process held at its peak.
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

// Runs in a fresh `node`: stands in for the Functions worker's `@azure/functions-core` (as the local host does),
// then times require() of the bundle, which registers every function and builds the services from settings.
const LOAD_PROBE = `
const Module = require('node:module');
class Disposable { constructor(dispose) { this.dispose = dispose ?? (() => {}); } }
const core = {
  version: '4.0.0-bench', hostVersion: '4.0.0-bench', Disposable,
  registerFunction: () => new Disposable(), registerHook: () => new Disposable(),
  setProgrammingModel() {}, getProgrammingModel() { return undefined; }, log() {},
};
const load = Module._load;
Module._load = function (request, parent, isMain) {
  return request === '@azure/functions-core' ? core : load.call(this, request, parent, isMain);
};
const started = process.hrtime.bigint();
require(process.argv[1]);
const ms = Number(process.hrtime.bigint() - started) / 1e6;
process.stdout.write(JSON.stringify({ ms }));
`;

export interface ModuleLoadResult {
  runs: number[];
  medianMs: number;
}

/** Median of `runs` cold loads of `bundlePath` (dist/main.js), each in its own process with valid settings. */
export async function measureModuleLoad(bundlePath: string, runs: number): Promise<ModuleLoadResult> {
  const env = {
    PATH: process.env.PATH ?? '',
    ROTATOR_ALLOWED_VAULTS: 'https://contoso.vault.azure.net',
    ROTATOR_SUBSCRIPTION_IDS: '00000000-0000-0000-0000-000000000001',
    AzureWebJobsStorage: 'UseDevelopmentStorage=true',
  };
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const output = await new Promise<string>((resolve, reject) =>
      execFile(process.execPath, ['-e', LOAD_PROBE, bundlePath], { env }, (error, stdout, stderr) =>
        error ? reject(new Error(`Loading ${bundlePath} failed: ${stderr || error.message}`)) : resolve(stdout),
      ),
    );
    times.push((JSON.parse(output) as { ms: number }).ms);
  }
  const sorted = [...times].sort((a, b) => a - b);
  return { runs: times, medianMs: sorted[Math.floor(sorted.length / 2)]! };
}

/** The process's peak resident memory (VmHWM) in bytes; undefined where /proc is not available. */
export function peakRssBytes(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const match = /^VmHWM:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Starts a new peak-memory window (Linux: writing 5 to clear_refs resets VmHWM); false where that is not possible. */
export function resetPeakRss(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}
