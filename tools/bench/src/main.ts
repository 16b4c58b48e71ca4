// `npm run bench`: the fan-out benchmark. The whole local Azure runs in this process (ARM with injected latency,
// long-running hub updates, subscription throttling), the app runs in one or two local hosts sharing one storage
// account (as scaled-out instances would), and the clock is the wall clock. Each row delivers one Key Vault event
// for a key used by N hubs (redelivered every few seconds, as Event Grid may) and times it until every hub
// references the new version and its update has ended; then a burst of unrelated events. It prints a table and
// writes bench-results.json. Start-up comes first (startup.ts); `npm run bench -- --startup` measures only that.
// Nothing here asserts a time: the numbers are for people to read.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpus } from 'node:os';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AccessToken, TokenCredential } from '@azure/core-auth';
import { KeyClient } from '@azure/keyvault-keys';
import { issueToken } from '@cmk-rotator/emulators/auth';
import { startFunctionHost } from '@cmk-rotator/local-host/functionHost';
import type { RunningFunctionHost } from '@cmk-rotator/local-host/functionHost';
import { freePort } from '@cmk-rotator/emulators/tcpPorts';
import { startStack } from '@cmk-rotator/emulators/stack';
import type { RunningStack } from '@cmk-rotator/emulators/stack';
import { ensureDevCertificate } from '@cmk-rotator/emulators/tls';
import { deliverBurst, unrelatedEvents } from './events';
import type { BurstResult, UnrelatedKey } from './events';
import { hubKeyIdentifier, hubsPerSubscription, seedFleet } from './fleet';
import type { HubRef } from './fleet';
import { FLOOR_FORMULA, floorMs } from './floor';
import type { ArmConditions } from './floor';
import { peakRssBytes, resetPeakRss } from './processStats';
import { measureStartup } from './startup';
import type { StartupFigure, StartupResult } from './startup';
import { ackLatencies, keyEvent, percentile } from './ack';

const LATENCY_MS = 50;
const WRITES = { burst: 200, refillPerSecond: 10 };
const READS = { burst: 250, refillPerSecond: 25 };
const PAGE_SIZE = 100;
const VAULT = 'fleet';
const VAULT_URL = `https://${VAULT}.vault.azure.net`;
const FOREIGN_VAULT = 'elsewhere';
const subscription = (n: number) => `b0000000-0000-4000-8000-${String(n).padStart(12, '0')}`;

interface Scenario {
  hubs: number;
  subscriptions: string[];
  instances: 1 | 2;
  operationMs: number;
  retryAfterSeconds: number;
  /** ARM's read throttling too (writes are always throttled). */
  throttleReads: boolean;
}

/**
 * The first three rows are the history (1 s updates, write throttling only, one instance); the last is a fleet as
 * Azure runs it: minute-long updates, reads and writes throttled, two instances. Each scenario has subscriptions of
 * its own, so each starts with full buckets, as a fresh fan-out would.
 */
const SCENARIOS: Scenario[] = [
  {
    hubs: 10,
    subscriptions: [subscription(10)],
    instances: 1,
    operationMs: 1000,
    retryAfterSeconds: 1,
    throttleReads: false,
  },
  {
    hubs: 100,
    subscriptions: [subscription(100)],
    instances: 1,
    operationMs: 1000,
    retryAfterSeconds: 1,
    throttleReads: false,
  },
  {
    hubs: 1000,
    subscriptions: [1, 2, 3, 4].map((i) => subscription(1000 + i)),
    instances: 1,
    operationMs: 1000,
    retryAfterSeconds: 1,
    throttleReads: false,
  },
  {
    hubs: 1000,
    subscriptions: [1, 2, 3, 4].map((i) => subscription(2000 + i)),
    instances: 2,
    operationMs: 60_000,
    retryAfterSeconds: 10,
    throttleReads: true,
  },
];
/** Event Grid delivers at least once: the same event comes again this often while the fleet moves. */
const REDELIVERY_EVERY_MS = 2000;
const UNUSED_KEYS = 20;
const BURST_EVENTS = 1000;
const BURST_IN_FLIGHT = 32;
const STARTUP_RUNS = 15;
/** Start-up's own subscription, with one hub, so that its keyStatus lists the same small fleet every time. */
const STARTUP_SUBSCRIPTION = subscription(0);
const RESULTS_FILE = path.resolve('bench-results.json');

export interface Row {
  hubs: number;
  subscriptions: number;
  instances: number;
  updateSeconds: number;
  wallSeconds: number;
  floorSeconds: number;
  ratio: number;
  /** Hubs not on the new version at the end, or that the job reports failed. */
  failed: number;
  /** 429 answers from ARM. */
  throttled: number;
  /** p99 of the time the app took to answer each delivery of the event (the first and every redelivery). */
  eventAckP99Ms: number;
  deliveries: number;
  /** Deliveries answered with something other than 2xx (Event Grid would retry them). */
  failedDeliveries: number;
  armCalls: number;
  acceptedPuts: number;
  hostPeakRssBytes: number | undefined;
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

function conditionsOf(scenario: Scenario): ArmConditions {
  return {
    latencyMs: LATENCY_MS,
    operationMs: scenario.operationMs,
    retryAfterSeconds: scenario.retryAfterSeconds,
    writes: WRITES,
    ...(scenario.throttleReads ? { reads: READS } : {}),
    pageSize: PAGE_SIZE,
  };
}

/** Whether the hub references `keyId` with its update ended. */
function settledOn(stack: RunningStack, ref: HubRef, keyId: string): boolean {
  const state = (stack.arm.getHub(ref) as { properties?: { provisioningState?: string } } | undefined)?.properties
    ?.provisioningState;
  return hubKeyIdentifier(stack.arm, ref) === keyId && state === 'Succeeded';
}

async function runScenario(
  stack: RunningStack,
  hosts: RunningFunctionHost[],
  functionKey: string,
  keys: KeyClient,
  scenario: Scenario,
  keyName: string,
  fleet: HubRef[],
): Promise<Row> {
  stack.arm.timing.setDefaults({ operationMs: scenario.operationMs, retryAfterSeconds: scenario.retryAfterSeconds });
  stack.arm.faults.setThrottling({ enabled: true, ...WRITES, reads: scenario.throttleReads ? READS : false });
  // The history rows propagate a version made outside (KeyNewVersionCreated); the fleet row lets the app rotate
  // a key nearing expiry (KeyNearExpiry), version creation included.
  const rotates = scenario.instances === 2;
  const current = await keys.getKey(keyName);
  const created = rotates
    ? undefined
    : await keys.createRsaKey(keyName, { keySize: 2048, keyOps: ['wrapKey', 'unwrapKey'] });
  const event = rotates
    ? keyEvent(VAULT, 'KeyNearExpiry', keyName, current.properties.version!)
    : keyEvent(VAULT, 'KeyNewVersionCreated', keyName, created!.properties.version!);
  stack.arm.clearRequests();
  const peakReset = resetPeakRss(hosts[0]!.pid);
  const floor = floorMs(hubsPerSubscription(fleet), conditionsOf(scenario));
  const started = performance.now();
  const webhooks = hosts.map((h) => `${h.url}/runtime/webhooks/eventgrid?functionName=keyVaultEvents`);
  const acks = ackLatencies(webhooks, event, REDELIVERY_EVERY_MS);
  let target = created?.id;
  const deadline = started + floor * 3 + 120_000;
  // Only hubs not yet seen settled are looked at again (rendering a thousand hubs every tick would load the
  // emulators' process, which the app's ARM calls share).
  let unsettled = [...fleet];
  for (;;) {
    if (!target && acks.answered() > 0) {
      const newest = (await keys.getKey(keyName)).id!;
      if (newest !== current.id) target = newest;
    }
    if (target) unsettled = unsettled.filter((ref) => !settledOn(stack, ref, target!));
    if (target && unsettled.length === 0) break;
    if (performance.now() > deadline) break;
    // About one look per hub per second at most: the check renders every unsettled hub.
    await new Promise((resolve) => setTimeout(resolve, Math.min(1000, 50 + unsettled.length)));
  }
  const wallMs = performance.now() - started;
  const { latencies, failures } = await acks.stop();
  for (const failure of failures) say(`  a delivery was not acknowledged: ${failure}`);
  const counts = stack.arm.requestCounts();
  const behind = target ? fleet.filter((ref) => !settledOn(stack, ref, target)).length : fleet.length;
  const job = target ? await jobFailures(hosts[0]!, functionKey, keyName, target) : 0;
  return {
    hubs: fleet.length,
    subscriptions: new Set(fleet.map((r) => r.subscriptionId)).size,
    instances: hosts.length,
    updateSeconds: scenario.operationMs / 1000,
    wallSeconds: wallMs / 1000,
    floorSeconds: floor / 1000,
    ratio: wallMs / floor,
    failed: Math.max(behind, job),
    throttled: counts.throttled,
    eventAckP99Ms: percentile(latencies, 0.99),
    deliveries: latencies.length,
    failedDeliveries: failures.length,
    armCalls: counts.total,
    acceptedPuts: counts.acceptedPuts,
    hostPeakRssBytes: peakReset ? peakRssBytes(hosts[0]!.pid) : undefined,
  };
}

/** Hubs the job reports failed. */
async function jobFailures(host: RunningFunctionHost, functionKey: string, keyName: string, target: string) {
  const version = target.split('/').pop()!;
  const response = await fetch(`${host.url}/api/jobs/${VAULT}.vault.azure.net~${keyName}~${version}`.toLowerCase(), {
    headers: { 'x-functions-key': functionKey },
  });
  if (response.status !== 200) return 0;
  const job = (await response.json()) as { progress: { failed: number } };
  return job.progress.failed;
}

function printTable(rows: Row[], burst: BurstResult) {
  const header = [
    'N',
    'subs',
    'inst',
    'update',
    'wall s',
    'floor s',
    'ratio',
    'failed',
    '429s',
    'ack p99',
    'PUTs',
    'ARM calls',
    'peak RSS',
  ];
  const lines = rows.map((r) => [
    String(r.hubs),
    String(r.subscriptions),
    String(r.instances),
    `${r.updateSeconds} s`,
    r.wallSeconds.toFixed(2),
    r.floorSeconds.toFixed(2),
    `${r.ratio.toFixed(2)}x`,
    String(r.failed),
    String(r.throttled),
    `${r.eventAckP99Ms.toFixed(0)} ms`,
    String(r.acceptedPuts),
    String(r.armCalls),
    mib(r.hostPeakRssBytes),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const format = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i]!)).join('  ');
  say('');
  say(
    `Propagation of one Key Vault event to N hubs (ARM: ${LATENCY_MS} ms per call; writes ${WRITES.burst} burst + ` +
      `${WRITES.refillPerSecond}/s per subscription; reads ${READS.burst} + ${READS.refillPerSecond}/s where the ` +
      `row's updates take a minute; the event redelivered every ${REDELIVERY_EVERY_MS / 1000} s until done)`,
  );
  say(format(header));
  for (const line of lines) say(format(line));
  say(FLOOR_FORMULA);
  say('');
  say(
    `Unrelated events: ${burst.events} in ${seconds(burst.wallMs)} s = ${burst.eventsPerSecond.toFixed(0)} events/s ` +
      `(${burst.inFlight} in flight), ${burst.failures} failed, latency p50 ${burst.latencyMs.p50.toFixed(0)} ms / ` +
      `p95 ${burst.latencyMs.p95.toFixed(0)} ms / max ${burst.latencyMs.max.toFixed(0)} ms`,
  );
}

function printStartup(startup: StartupResult) {
  const line = (name: string, f: StartupFigure) =>
    say(
      `  ${name.padEnd(18)} median ${f.medianMs.toFixed(0).padStart(4)} ms, ${f.overBaselineMs.toFixed(0).padStart(4)} ms ` +
        `over node -e 0  (${f.runs.map((t) => t.toFixed(0)).join(', ')})`,
    );
  say('');
  say(`Start-up, ${startup.runs} fresh processes each, paired with a bare node -e 0 (${startup.environment.machine}):`);
  line('module load', startup.moduleLoad);
  line('first health', startup.firstHealth);
  line('first keyStatus', startup.firstKeyStatus);
  say(
    `  node -e 0: ${startup.baselineMs.probe.toFixed(0)} ms in the probe's environment (${startup.environment.probe}), ` +
      `${startup.baselineMs.host.toFixed(0)} ms in the host's (${startup.environment.host})`,
  );
  say(
    `  load average ${startup.environment.loadAverageBefore.map((l) => l.toFixed(2)).join(' ')} before, ` +
      `${startup.environment.loadAverageAfter.map((l) => l.toFixed(2)).join(' ')} after`,
  );
}

function writeResults(results: Record<string, unknown>) {
  writeFileSync(
    RESULTS_FILE,
    `${JSON.stringify({ time: new Date().toISOString(), node: process.version, machine: { cpus: cpus().length }, ...results }, null, 2)}\n`,
  );
  say(`Results written to ${path.relative(process.cwd(), RESULTS_FILE)}`);
}

/** Start-up against its own key and one hub using it, with only start-up's subscription to list. */
async function startup(stack: RunningStack, keys: KeyClient): Promise<StartupResult> {
  const key = await keys.createRsaKey('startup', { keySize: 2048, keyOps: ['wrapKey', 'unwrapKey'] });
  await seedFleet(stack.arm, 'startup', 1, [STARTUP_SUBSCRIPTION], key.id!);
  const functionKey = randomBytes(16).toString('hex');
  say(`Start-up: ${STARTUP_RUNS} runs of module load, first health and first keyStatus, each a fresh process...`);
  return measureStartup({
    runs: STARTUP_RUNS,
    appDir: process.cwd(),
    hostEnv: stack.environment({
      ...process.env,
      ROTATOR_ALLOWED_VAULTS: VAULT_URL,
      ROTATOR_SUBSCRIPTION_IDS: STARTUP_SUBSCRIPTION,
      ROTATOR_LOCAL_FUNCTION_KEY: functionKey,
    }),
    functionKey,
    keyId: `${VAULT_URL}/keys/startup`,
  });
}

async function main(): Promise<number> {
  const tlsDir = path.resolve('.data/bench-tls');
  const { trustBundlePath } = ensureDevCertificate(tlsDir);
  if (process.env.NODE_EXTRA_CA_CERTS !== trustBundlePath) return relaunchTrusting(trustBundlePath);

  const dataDir = mkdtempSync(path.join(tmpdir(), 'cmk-rotator-bench-'));
  const stack = await startStack({ dataDir, tlsDir, armPageSize: PAGE_SIZE });
  const hosts: RunningFunctionHost[] = [];
  try {
    const keys = new KeyClient(VAULT_URL, credential, {
      proxyOptions: { host: 'http://127.0.0.1', port: stack.proxy.port },
    });
    const startupResult = await startup(stack, keys);
    printStartup(startupResult);
    if (process.argv.includes('--startup')) {
      writeResults({ startup: startupResult });
      return 0;
    }
    say('Seeding keys and hubs...');
    const fleets: { keyName: string; fleet: HubRef[] }[] = [];
    for (const [i, scenario] of SCENARIOS.entries()) {
      const keyName = `fleet-${i}-${scenario.hubs}`;
      // Inside its 30-day notify window, so a KeyNearExpiry for it is one Key Vault could really raise.
      const expiresOn = new Date(stack.clock.now().getTime() + 20 * 86_400_000);
      const key = await keys.createRsaKey(keyName, { keySize: 2048, keyOps: ['wrapKey', 'unwrapKey'], expiresOn });
      fleets.push({
        keyName,
        fleet: await seedFleet(stack.arm, `s${i}`, scenario.hubs, scenario.subscriptions, key.id!),
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
    const startHost = async () => {
      const host = await startFunctionHost({ env, port: await freePort() });
      hosts.push(host);
      return host;
    };
    await startHost();
    stack.arm.faults.setLatency(LATENCY_MS);

    const rows: Row[] = [];
    for (const [i, scenario] of SCENARIOS.entries()) {
      while (hosts.length < scenario.instances) await startHost();
      const { keyName, fleet } = fleets[i]!;
      say(`N = ${fleet.length}, ${scenario.operationMs / 1000} s updates, ${scenario.instances} instance(s)...`);
      rows.push(
        await runScenario(stack, hosts.slice(0, scenario.instances), functionKey, keys, scenario, keyName, fleet),
      );
    }

    say(`Burst of ${BURST_EVENTS} unrelated events...`);
    // As in the history rows: writes throttled, reads not.
    stack.arm.faults.setThrottling({ enabled: true, ...WRITES, reads: false });
    const { events, mix } = unrelatedEvents(VAULT, FOREIGN_VAULT, unusedKeys, BURST_EVENTS);
    const burst = await deliverBurst(
      `${hosts[0]!.url}/runtime/webhooks/eventgrid?functionName=keyVaultEvents`,
      events,
      mix,
      BURST_IN_FLIGHT,
    );

    printTable(rows, burst);
    printStartup(startupResult);
    writeResults({
      arm: { latencyMs: LATENCY_MS, writes: WRITES, reads: READS, pageSize: PAGE_SIZE },
      floorFormula: FLOOR_FORMULA,
      rows,
      unrelatedEvents: burst,
      startup: startupResult,
    });
    return 0;
  } catch (error) {
    for (const host of hosts) {
      console.error(`Last log lines of the host on ${host.url}:`);
      for (const line of host.logs.slice(-30)) console.error(`  ${line.raw}`);
    }
    throw error;
  } finally {
    await Promise.all(hosts.map((host) => host.stop()));
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
