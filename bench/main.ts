// `npm run bench`: the fan-out benchmark. The whole local Azure runs in this process (ARM with injected latency,
// slow long-running PUTs and subscription write throttling), the app runs in its local host as in production-like
// tests, and the clock is the wall clock. For N hubs on one key it times "new key version exists" → "every hub
// references it", then a burst of unrelated Key Vault events; it prints a table and writes bench-results.json.
// Nothing here asserts a time: the numbers are for people to read.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AccessToken, TokenCredential } from '@azure/core-auth';
import { KeyClient } from '@azure/keyvault-keys';
import { issueToken } from '../emulators/auth';
import { startFunctionHost } from '../emulators/functionHost';
import type { RunningFunctionHost } from '../emulators/functionHost';
import { freePort } from '../emulators/ports';
import { startStack } from '../emulators/stack';
import type { RunningStack } from '../emulators/stack';
import { ensureDevCertificate } from '../emulators/tls';
import { loadConfig } from '../src/config';
import { deliverBurst, unrelatedEvents } from './events';
import type { BurstResult, UnrelatedKey } from './events';
import { hubKeyIdentifier, hubsPerSubscription, seedFleet } from './fleet';
import type { HubRef } from './fleet';
import { FLOOR_FORMULA, floorMs } from './floor';
import type { ArmConditions } from './floor';
import { measureModuleLoad, peakRssBytes, resetPeakRss } from './processStats';
import type { ModuleLoadResult } from './processStats';

const ARM: ArmConditions = { latencyMs: 50, operationMs: 1000, burst: 200, refillPerSecond: 10 };
const VAULT = 'fleet';
const VAULT_URL = `https://${VAULT}.vault.azure.net`;
const FOREIGN_VAULT = 'elsewhere';
const subscription = (n: number) => `b0000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
/** Each scenario has subscriptions of its own, so each starts with full write buckets (as a fresh fan-out would). */
const SCENARIOS = [
  { hubs: 10, subscriptions: [subscription(10)] },
  { hubs: 100, subscriptions: [subscription(100)] },
  { hubs: 1000, subscriptions: [1, 2, 3, 4].map((i) => subscription(1000 + i)) },
];
const UNUSED_KEYS = 20;
const BURST_EVENTS = 1000;
const BURST_IN_FLIGHT = 32;
const MODULE_LOAD_RUNS = 7;
const RESULTS_FILE = path.resolve('bench-results.json');

interface ScenarioResult {
  hubs: number;
  subscriptions: number;
  wallMs: number;
  hubsPerSecond: number;
  floorMs: number;
  ratioToFloor: number;
  /** Hubs that do not reference the new version afterwards, or that the app reported as not done. */
  failedHubs: number;
  status: string;
  arm: ArmCalls;
  hostPeakRssBytes: number | undefined;
}

interface ArmCalls {
  total: number;
  writes: number;
  throttled: number;
  /** The emulator's request log is bounded; when full, the counts are lower bounds. */
  capped: boolean;
}

const credential: TokenCredential = {
  getToken: (scopes: string | string[]): Promise<AccessToken> => {
    const scope = Array.isArray(scopes) ? (scopes[0] ?? '') : scopes;
    return Promise.resolve({
      token: issueToken(scope.replace(/\/\.default$/, '')),
      expiresOnTimestamp: Date.now() + 3_600_000,
    });
  },
};

const say = (line: string) => console.log(line);
const seconds = (ms: number) => (ms / 1000).toFixed(2);
const mib = (bytes: number | undefined) => (bytes === undefined ? 'n/a' : `${(bytes / 2 ** 20).toFixed(0)} MiB`);

/** Node reads NODE_EXTRA_CA_CERTS only at start-up: run again trusting the emulators' CA. */
function relaunchTrusting(trustBundlePath: string): Promise<number> {
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, NODE_EXTRA_CA_CERTS: trustBundlePath },
  });
  return new Promise((resolve) => child.once('exit', (code) => resolve(code ?? 1)));
}

function armCalls(stack: RunningStack): ArmCalls {
  const requests = stack.arm.requests();
  return {
    total: requests.length,
    writes: requests.filter((r) => r.method !== 'GET').length,
    throttled: requests.filter((r) => r.status === 429).length,
    capped: requests.length >= 5000,
  };
}

async function call(host: RunningFunctionHost, functionKey: string, route: string, body: unknown) {
  const response = await fetch(`${host.url}${route}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-functions-key': functionKey },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`POST ${route} answered ${response.status}: ${text.slice(0, 500)}`);
  return JSON.parse(text) as { status: string; hubs: { result: string }[] };
}

/** A new version of the fleet's key exists; the clock runs until the app says every hub is on it. */
async function runScenario(
  stack: RunningStack,
  host: RunningFunctionHost,
  functionKey: string,
  keys: KeyClient,
  keyName: string,
  fleet: HubRef[],
): Promise<ScenarioResult> {
  const created = await keys.createRsaKey(keyName, { keySize: 2048, keyOps: ['wrapKey', 'unwrapKey'] });
  stack.arm.clearRequests();
  const peakReset = resetPeakRss(host.pid);
  const started = performance.now();
  const report = await call(host, functionKey, '/api/keys/sync', { keyId: `${VAULT_URL}/keys/${keyName}` });
  const wallMs = performance.now() - started;
  const notDone = report.hubs.filter((h) => h.result !== 'moved' && h.result !== 'already-current').length;
  const behind = fleet.filter((ref) => hubKeyIdentifier(stack.arm, ref) !== created.id).length;
  const floor = floorMs(hubsPerSubscription(fleet), ARM);
  return {
    hubs: fleet.length,
    subscriptions: new Set(fleet.map((r) => r.subscriptionId)).size,
    wallMs,
    hubsPerSecond: fleet.length / (wallMs / 1000),
    floorMs: floor,
    ratioToFloor: wallMs / floor,
    failedHubs: Math.max(notDone, behind),
    status: report.status,
    arm: armCalls(stack),
    hostPeakRssBytes: peakReset ? peakRssBytes(host.pid) : undefined,
  };
}

function printTable(
  rows: ScenarioResult[],
  burst: BurstResult & { arm: ArmCalls; hostPeakRssBytes: number | undefined },
  load: ModuleLoadResult,
  concurrency: number,
) {
  const header = [
    'N',
    'subs',
    'wall s',
    'hubs/s',
    'floor s',
    'ratio',
    'failed',
    'ARM calls',
    'PUTs',
    '429s',
    'peak RSS',
  ];
  const lines = rows.map((r) => [
    String(r.hubs),
    String(r.subscriptions),
    seconds(r.wallMs),
    r.hubsPerSecond.toFixed(1),
    seconds(r.floorMs),
    `${r.ratioToFloor.toFixed(2)}x`,
    String(r.failedHubs),
    `${r.arm.capped ? '≥' : ''}${r.arm.total}`,
    String(r.arm.writes),
    String(r.arm.throttled),
    mib(r.hostPeakRssBytes),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const format = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i]!)).join('  ');
  say('');
  say(
    `Propagation of one new key version (ARM: ${ARM.latencyMs} ms per call, ${ARM.operationMs} ms PUT, ` +
      `writes ${ARM.burst} burst + ${ARM.refillPerSecond}/s per subscription; app hub concurrency ${concurrency})`,
  );
  say(format(header));
  for (const line of lines) say(format(line));
  say(FLOOR_FORMULA);
  say('');
  say(
    `Unrelated events: ${burst.events} in ${seconds(burst.wallMs)} s = ${burst.eventsPerSecond.toFixed(0)} events/s ` +
      `(${burst.inFlight} in flight), ${burst.failures} failed, latency p50 ${burst.latencyMs.p50.toFixed(0)} ms / ` +
      `p95 ${burst.latencyMs.p95.toFixed(0)} ms / max ${burst.latencyMs.max.toFixed(0)} ms, ARM calls ` +
      `${burst.arm.capped ? '≥' : ''}${burst.arm.total} (${burst.arm.writes} writes), host peak RSS ${mib(burst.hostPeakRssBytes)}`,
  );
  say(
    `  mix: ${Object.entries(burst.mix)
      .map(([k, v]) => `${v} ${k}`)
      .join(', ')}`,
  );
  say(
    `Module load (require dist/main.js, fresh process): median ${load.medianMs.toFixed(0)} ms of ${load.runs.length} ` +
      `runs (${load.runs.map((t) => t.toFixed(0)).join(', ')})`,
  );
  say(`Results written to ${path.relative(process.cwd(), RESULTS_FILE)}`);
}

async function main(): Promise<number> {
  const tlsDir = path.resolve('.data/bench-tls');
  const { trustBundlePath } = ensureDevCertificate(tlsDir);
  if (process.env.NODE_EXTRA_CA_CERTS !== trustBundlePath) return relaunchTrusting(trustBundlePath);

  say(`Module load: ${MODULE_LOAD_RUNS} cold loads of dist/main.js...`);
  const moduleLoad = await measureModuleLoad(path.resolve('dist/main.js'), MODULE_LOAD_RUNS);

  const dataDir = mkdtempSync(path.join(tmpdir(), 'cmk-rotator-bench-'));
  const stack = await startStack({
    dataDir,
    tlsDir,
    asyncOperationDelayMs: ARM.operationMs,
    retryAfterSeconds: Math.ceil(ARM.operationMs / 1000),
  });
  let host: RunningFunctionHost | undefined;
  try {
    const keys = new KeyClient(VAULT_URL, credential, {
      proxyOptions: { host: 'http://127.0.0.1', port: stack.proxy.port },
    });
    say('Seeding keys and hubs...');
    const fleets: { keyName: string; fleet: HubRef[] }[] = [];
    for (const scenario of SCENARIOS) {
      const keyName = `fleet-${scenario.hubs}`;
      const key = await keys.createRsaKey(keyName, { keySize: 2048, keyOps: ['wrapKey', 'unwrapKey'] });
      fleets.push({
        keyName,
        fleet: await seedFleet(stack.arm, `n${scenario.hubs}`, scenario.hubs, scenario.subscriptions, key.id!),
      });
    }
    const unusedKeys: UnrelatedKey[] = [];
    for (let i = 0; i < UNUSED_KEYS; i++) {
      const key = await keys.createRsaKey(`unused-${i}`, { keySize: 2048, keyOps: ['wrapKey', 'unwrapKey'] });
      unusedKeys.push({ name: key.name, version: key.properties.version! });
    }

    const functionKey = randomBytes(16).toString('hex');
    const env = stack.environment({
      ...process.env,
      ROTATOR_ALLOWED_VAULTS: VAULT_URL,
      ROTATOR_SUBSCRIPTION_IDS: SCENARIOS.flatMap((s) => s.subscriptions).join(','),
      ROTATOR_LOCAL_FUNCTION_KEY: functionKey,
    });
    const concurrency = loadConfig(env).hubConcurrency;
    host = await startFunctionHost({ env, port: await freePort() });

    stack.arm.faults.setLatency(ARM.latencyMs);
    stack.arm.faults.setThrottling({ enabled: true, burst: ARM.burst, refillPerSecond: ARM.refillPerSecond });
    // Warm-up, untimed: tokens, connections and tables; the hubs are current, so nothing is written.
    await call(host, functionKey, '/api/keys/sync', { keyId: `${VAULT_URL}/keys/${fleets[0]!.keyName}` });

    const rows: ScenarioResult[] = [];
    for (const { keyName, fleet } of fleets) {
      say(`N = ${fleet.length}...`);
      rows.push(await runScenario(stack, host, functionKey, keys, keyName, fleet));
    }

    say(`Burst of ${BURST_EVENTS} unrelated events...`);
    const { events, mix } = unrelatedEvents(VAULT, FOREIGN_VAULT, unusedKeys, BURST_EVENTS);
    stack.arm.clearRequests();
    const peakReset = resetPeakRss(host.pid);
    const burst = {
      ...(await deliverBurst(
        `${host.url}/runtime/webhooks/eventgrid?functionName=keyVaultEvents`,
        events,
        mix,
        BURST_IN_FLIGHT,
      )),
      arm: armCalls(stack),
      hostPeakRssBytes: peakReset ? peakRssBytes(host.pid) : undefined,
    };

    writeFileSync(
      RESULTS_FILE,
      `${JSON.stringify(
        {
          time: new Date().toISOString(),
          node: process.version,
          arm: ARM,
          hubConcurrency: concurrency,
          floorFormula: FLOOR_FORMULA,
          propagation: rows,
          unrelatedEvents: burst,
          moduleLoad,
        },
        null,
        2,
      )}\n`,
    );
    printTable(rows, burst, moduleLoad, concurrency);
    return 0;
  } catch (error) {
    if (host) {
      console.error('Last host log lines:');
      for (const line of host.logs.slice(-30)) console.error(`  ${line.raw}`);
    }
    throw error;
  } finally {
    await host?.stop();
    await stack.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
    process.exitCode = 1;
  },
);
