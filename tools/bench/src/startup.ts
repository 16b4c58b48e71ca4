// Start-up, as a cold instance pays it. Every run is a fresh process, and each run is paired with a bare
// `node -e 0` in the same environment just before it, so that what the machine's load adds shows in both:
//  - module load: import() of dist/main.mjs (as the worker loads an ES module), timed inside the process, in the probe's environment (PATH and the
//    three settings the app needs; the worker's @azure/functions-core stood in for);
//  - first health and first keyStatus answers: a fresh local host (`node dist/host.js`, as `npm run serve`) in the
//    machine's environment plus the emulators' settings, timed from spawn to the answer. keyStatus pays for what
//    health does not: a managed-identity token, Key Vault, ARM (the hub listing) and the jobs table.
import { execFile, spawn } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { freePort } from '@cmk-rotator/emulators/tcpPorts';

// Stands in for the Functions worker's `@azure/functions-core` (as the local host does), then times the worker's
// import() of the bundle, which registers every function.
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
import(require('node:url').pathToFileURL(process.argv[1]).href).then(() => {
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  process.stdout.write(JSON.stringify({ ms }));
});
`;

const PROBE_ENVIRONMENT = {
  PATH: process.env.PATH ?? '',
  ROTATOR_ALLOWED_VAULTS: 'https://contoso.vault.azure.net',
  ROTATOR_SUBSCRIPTION_IDS: '00000000-0000-0000-0000-000000000001',
  AzureWebJobsStorage: 'UseDevelopmentStorage=true',
};

export interface StartupFigure {
  /** Median of the runs. */
  medianMs: number;
  /** Median, over the runs, of the process's wall time less that of the bare `node -e 0` run paired with it. */
  overBaselineMs: number;
  runs: number[];
}

export interface StartupResult {
  runs: number;
  environment: {
    probe: string;
    host: string;
    machine: string;
    loadAverageBefore: number[];
    loadAverageAfter: number[];
  };
  /** `node -e 0`, spawn to exit, in each environment. */
  baselineMs: { probe: number; host: number };
  /** import() of dist/main.mjs inside the process. */
  moduleLoad: StartupFigure;
  /** Spawn of a fresh host to the first answer of GET /api/health. */
  firstHealth: StartupFigure;
  /** Spawn of a fresh host to the first answer of GET /api/keys/status for a key of the emulated vault. */
  firstKeyStatus: StartupFigure;
}

export interface StartupOptions {
  runs: number;
  appDir: string;
  /** The host's environment: the machine's plus the emulators' and the app's settings. */
  hostEnv: NodeJS.ProcessEnv;
  functionKey: string;
  /** A key of an allowed vault, as keyStatus takes it. */
  keyId: string;
}

const median = (values: readonly number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN;

function figure(runs: number[], walls: number[], baselines: number[]): StartupFigure {
  return {
    medianMs: median(runs),
    overBaselineMs: median(walls.map((ms, i) => ms - (baselines[i] ?? NaN))),
    runs,
  };
}

/** Wall time of `node <args>` from spawn to exit; its stdout. */
function timedNode(args: string[], env: NodeJS.ProcessEnv): Promise<{ ms: number; stdout: string }> {
  const started = performance.now();
  return new Promise((resolve, reject) =>
    execFile(process.execPath, args, { env }, (error, stdout, stderr) =>
      error
        ? reject(new Error(`node ${args[0]} failed: ${stderr || error.message}`))
        : resolve({ ms: performance.now() - started, stdout }),
    ),
  );
}

/** A fresh host, timed from spawn until `route` answers 200 (asked as soon as the host prints its functions). */
async function firstAnswer(options: StartupOptions, route: string): Promise<number> {
  const port = await freePort();
  const started = performance.now();
  const child = spawn(process.execPath, [path.join(options.appDir, 'dist/host.js')], {
    cwd: options.appDir,
    env: { ...options.hostEnv, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await new Promise<void>((resolve, reject) => {
      createInterface({ input: child.stdout }).on('line', (line) => {
        output.push(line);
        if (line.startsWith('Functions:')) resolve();
      });
      createInterface({ input: child.stderr }).on('line', (line) => output.push(line));
      void exited.then(() => reject(new Error('The host exited before it served.')));
    });
    const response = await fetch(`http://127.0.0.1:${port}/api/${route}`, {
      headers: { 'x-functions-key': options.functionKey },
    });
    const body = await response.text();
    const ms = performance.now() - started;
    if (response.status !== 200) throw new Error(`GET /api/${route} answered ${response.status}: ${body}`);
    return ms;
  } catch (error) {
    throw new Error(`${(error as Error).message}\nHost output:\n${output.join('\n')}`);
  } finally {
    child.kill('SIGKILL');
    await exited;
  }
}

export async function measureStartup(options: StartupOptions): Promise<StartupResult> {
  const bundle = path.join(options.appDir, 'dist/main.mjs');
  const loadAverageBefore = loadavg();
  const series = {
    probeBaseline: [] as number[],
    hostBaseline: [] as number[],
    moduleLoad: [] as number[],
    probeWall: [] as number[],
    health: [] as number[],
    keyStatus: [] as number[],
  };
  for (let i = 0; i < options.runs; i++) {
    series.probeBaseline.push((await timedNode(['-e', '0'], PROBE_ENVIRONMENT)).ms);
    const probe = await timedNode(['-e', LOAD_PROBE, bundle], PROBE_ENVIRONMENT);
    series.moduleLoad.push((JSON.parse(probe.stdout) as { ms: number }).ms);
    series.probeWall.push(probe.ms);
    series.hostBaseline.push((await timedNode(['-e', '0'], options.hostEnv)).ms);
    series.health.push(await firstAnswer(options, 'health'));
    series.keyStatus.push(await firstAnswer(options, `keys/status?keyId=${encodeURIComponent(options.keyId)}`));
  }
  const cpu = cpus();
  return {
    runs: options.runs,
    environment: {
      probe: `PATH and ${Object.keys(PROBE_ENVIRONMENT).length - 1} app settings; @azure/functions-core stood in for`,
      host: "the machine's environment plus the emulators' (proxy, CA bundle, managed identity, Azurite) and app settings",
      machine: `${cpu.length} x ${cpu[0]?.model ?? 'unknown CPU'}, node ${process.version}`,
      loadAverageBefore,
      loadAverageAfter: loadavg(),
    },
    baselineMs: { probe: median(series.probeBaseline), host: median(series.hostBaseline) },
    moduleLoad: figure(series.moduleLoad, series.probeWall, series.probeBaseline),
    firstHealth: figure(series.health, series.health, series.hostBaseline),
    firstKeyStatus: figure(series.keyStatus, series.keyStatus, series.hostBaseline),
  };
}
