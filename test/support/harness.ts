// The integration bed: the emulator stack in this process, the function app in its own process (the local host,
// as `npm run serve` runs it), real SDK clients for the test's own look-ups, Event Grid subscribed to the host.
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AccessToken, TokenCredential } from '@azure/core-auth';
import { TableClient } from '@azure/data-tables';
import { QueueClient } from '@azure/storage-queue';
import { KeyClient } from '@azure/keyvault-keys';
import type { KeyVaultKey } from '@azure/keyvault-keys';
import { issueToken } from '@cmk-rotator/emulators/auth';
import { startFunctionHost } from '@cmk-rotator/local-host/functionHost';
import type { RunningFunctionHost } from '@cmk-rotator/local-host/functionHost';
import { freePort } from '@cmk-rotator/emulators/tcpPorts';
import { cmkHub } from '@cmk-rotator/emulators/arm';
import { OUTCOME_TOPIC, startStack } from '@cmk-rotator/emulators/stack';
import type { RunningStack, StackOptions } from '@cmk-rotator/emulators/stack';

export const VAULT_URL = 'https://demo.vault.azure.net';
export const SUB_A = '11111111-1111-1111-1111-111111111111';
export const SUB_B = '22222222-2222-2222-2222-222222222222';
export const HUB_IDENTITY = `/subscriptions/${SUB_A}/resourceGroups/rg-identity/providers/Microsoft.ManagedIdentity/userAssignedIdentities/hub-cmk-reader`;
/** Key Vault's Event Grid subscription to the harness's host. */
export const KEY_VAULT_SUBSCRIPTION = 'keyvault-to-rotator';
export const KEY_EVENT_TYPES = [
  'Microsoft.KeyVault.KeyNearExpiry',
  'Microsoft.KeyVault.KeyExpired',
  'Microsoft.KeyVault.KeyNewVersionCreated',
];

export const testCredential: TokenCredential = {
  getToken: (scopes: string | string[]): Promise<AccessToken> => {
    const scope = Array.isArray(scopes) ? (scopes[0] ?? '') : scopes;
    return Promise.resolve({
      token: issueToken(scope.replace(/\/\.default$/, '')),
      expiresOnTimestamp: Date.now() + 3_600_000,
    });
  },
};

export interface HubRef {
  subscriptionId: string;
  resourceGroupName: string;
  name: string;
}

/** One running instance of the app and the two ways in: its HTTP API and its Event Grid webhook. */
export interface AppInstance {
  host: RunningFunctionHost;
  /** Calls the app like an operator: JSON in and out, the function key in `x-functions-key`. */
  api(
    method: string,
    route: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<{ status: number; body: any }>;
  /** Posts to the Event Grid webhook as Event Grid does (validation aside). */
  deliver(events: unknown, headers?: Record<string, string>): Promise<number>;
}

/** The bed; its own instance (`host`, `api`, `deliver`) is the one Event Grid delivers to. */
export interface Harness extends AppInstance {
  stack: RunningStack;
  functionKey: string;
  keys: KeyClient;
  createKey(name: string, options?: { expiresInDays?: number; keySize?: number }): Promise<KeyVaultKey>;
  seedHub(ref: HubRef, keyIdentifier: string, extra?: Record<string, unknown>): Promise<void>;
  hubKey(ref: HubRef): string | undefined;
  /** Resolves once `check` holds (polled), or fails with `what`. */
  until(check: () => boolean | Promise<boolean>, what: string | (() => string), timeoutMs?: number): Promise<void>;
  /**
   * Waits until the job's every hub is final (its steps run on the queue after rotate/sync answered) and returns
   * GET /api/jobs/{jobId}: `{ done, progress, hubs: [{ hubName, result, errorCode?, ... }] }`. Asks `via` (another
   * instance) when the harness's own host is down.
   */
  settle(jobId: string, options?: { timeoutMs?: number; via?: Pick<AppInstance, 'api'> }): Promise<JobView>;
  /** GET /api/jobs/{jobId} now, from the harness's host or `via` (undefined while the job does not exist). */
  job(jobId: string, via?: Pick<AppInstance, 'api'>): Promise<JobView | undefined>;
  /** A queue of the app's storage (Azurite), e.g. `hub-steps` or `hub-steps-poison`. */
  queue(name: string): QueueClient;
  /** A table of the app's storage (Azurite), e.g. `RotationJobs`. */
  table(name: string): TableClient;
  outcomes(): { type: string; subject: string; data: unknown }[];
  restartHost(how: 'kill' | 'stop'): Promise<void>;
  /**
   * Another instance of the app (a scaled-out worker) on its own port, sharing the stack and storage; `settings`
   * override app settings for it alone. Event Grid does not deliver to it. `close()` stops it if still running.
   */
  startInstance(settings?: Record<string, string>): Promise<AppInstance>;
  close(): Promise<void>;
}

const FINAL = new Set(['moved', 'already-current', 'skipped', 'failed']);

/** A job as GET /api/jobs/{jobId} shows it. */
export interface JobView {
  jobId: string;
  keyId: string;
  targetVersion: string;
  trigger: string;
  createdVersion?: string;
  done: boolean;
  progress: Record<string, number>;
  hubs: {
    hubId: string;
    hubName: string;
    result: string;
    errorCode?: string;
    reason?: string;
    attempts?: number;
    nextStepAt?: string;
  }[];
}

/**
 * An app folder that runs this repo's build with host.json `extensions.queues` changed by `queues` (e.g. a shorter
 * visibilityTimeout, so a message that keeps failing reaches the poison queue in seconds rather than minutes).
 */
function appDirWith(queues: Record<string, unknown>): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'cmk-rotator-app-'));
  const hostJson = JSON.parse(readFileSync(path.resolve('host.json'), 'utf8')) as {
    extensions?: { queues?: Record<string, unknown> };
  };
  hostJson.extensions = { ...hostJson.extensions, queues: { ...hostJson.extensions?.queues, ...queues } };
  writeFileSync(path.join(dir, 'host.json'), JSON.stringify(hostJson, null, 2));
  copyFileSync(path.resolve('package.json'), path.join(dir, 'package.json'));
  symlinkSync(path.resolve('dist'), path.join(dir, 'dist'), 'dir');
  return dir;
}

function instanceClient(host: () => RunningFunctionHost, functionKey: string): Omit<AppInstance, 'host'> {
  return {
    async api(method, route, body, headers = { 'x-functions-key': functionKey }) {
      const response = await fetch(`${host().url}${route}`, {
        method,
        headers: { 'content-type': 'application/json', ...headers },
        ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
      });
      const text = await response.text();
      let parsed: unknown = text;
      try {
        parsed = text ? JSON.parse(text) : undefined;
      } catch {
        // not JSON: keep the text
      }
      return { status: response.status, body: parsed as any };
    },
    async deliver(events, headers = {}) {
      const response = await fetch(`${host().url}/runtime/webhooks/eventgrid?functionName=keyVaultEvents`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'aeg-event-type': 'Notification', ...headers },
        body: typeof events === 'string' ? events : JSON.stringify(events),
      });
      await response.text();
      return response.status;
    },
  };
}

export async function startHarness(
  options: {
    stack?: Partial<StackOptions>;
    settings?: Record<string, string>;
    /** host.json `extensions.queues` settings to change (the app runs from a copy of its folder). */
    queues?: Record<string, unknown>;
  } = {},
): Promise<Harness> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'cmk-rotator-it-'));
  const appDir = options.queues ? appDirWith(options.queues) : undefined;
  const stack = await startStack({
    dataDir,
    tlsDir: path.resolve('.data/test-tls'),
    retrySchedule: [200, 400, 800, 1600, 3200],
    maxDeliveryAttempts: 6,
    asyncOperationDelayMs: 150,
    retryAfterSeconds: 0,
    armPageSize: 2,
    ...options.stack,
  });
  const functionKey = randomBytes(16).toString('hex');
  const port = await freePort();
  const env = stack.environment({
    ...process.env,
    ROTATOR_ALLOWED_VAULTS: VAULT_URL,
    ROTATOR_SUBSCRIPTION_IDS: `${SUB_A},${SUB_B}`,
    ROTATOR_LOCAL_FUNCTION_KEY: functionKey,
    ...options.settings,
  });
  const start = () => startFunctionHost({ env, port, ...(appDir ? { appDir } : {}) });
  const instances: RunningFunctionHost[] = [];
  let host = await start();
  await stack.eventGrid.subscribe({
    name: KEY_VAULT_SUBSCRIPTION,
    endpointUrl: `${host.url}/runtime/webhooks/eventgrid?functionName=keyVaultEvents`,
    eventTypes: KEY_EVENT_TYPES,
    schema: 'EventGridSchema',
  });
  const keys = new KeyClient(VAULT_URL, testCredential, {
    proxyOptions: { host: 'http://127.0.0.1', port: stack.proxy.port },
  });

  const harness: Harness = {
    stack,
    get host() {
      return host;
    },
    functionKey,
    keys,
    ...instanceClient(() => host, functionKey),
    createKey: (name, o = {}) =>
      keys.createRsaKey(name, {
        keySize: o.keySize ?? 2048,
        keyOps: ['wrapKey', 'unwrapKey', 'encrypt', 'decrypt'],
        expiresOn: new Date(stack.clock.now().getTime() + (o.expiresInDays ?? 365) * 86_400_000),
      }),
    async seedHub(ref, keyIdentifier, extra = {}) {
      await stack.arm.seedHub({
        ...ref,
        hub: {
          ...cmkHub({
            keyIdentifier,
            identity: HUB_IDENTITY,
            tags: { owner: 'platform', env: 'test' },
            properties: {
              ipFilterRules: [{ filterName: 'office', action: 'Accept', ipMask: '10.0.0.0/8' }],
              futureFeature: { enabled: true, nested: { list: [1, 2, 3] } },
            },
          }),
          ...extra,
        },
      });
    },
    hubKey(ref) {
      const hub = stack.arm.getHub(ref) as
        { properties?: { encryption?: { keyVaultProperties?: { keyIdentifier?: string }[] } } } | undefined;
      return hub?.properties?.encryption?.keyVaultProperties?.[0]?.keyIdentifier;
    },
    async until(check, what, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      while (!(await check())) {
        if (Date.now() > deadline) {
          const tail = host.logs
            .slice(-40)
            .map((l) => l.raw)
            .join('\n');
          const described = typeof what === 'string' ? what : what();
          throw new Error(`Timed out waiting for: ${described}\nLast host log lines:\n${tail}`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async settle(jobId, { timeoutMs = 60_000, via = harness } = {}) {
      let job: JobView | undefined;
      await harness.until(
        async () => {
          job = await harness.job(jobId, via);
          return job?.done === true;
        },
        () => `job ${jobId} done (last seen: ${JSON.stringify(job?.hubs.filter((x) => !FINAL.has(x.result)))})`,
        timeoutMs,
      );
      // A hub's final state is saved before its audit record and outcome go out: wait for those too.
      const done = job!;
      const version = done.targetVersion.split('/').pop();
      let missing: string[] = [];
      await harness.until(
        async () => {
          const history = await via.api('GET', `/api/rotations?keyId=${encodeURIComponent(done.keyId)}&limit=500`);
          const records = (history.body?.records ?? []) as { hubId?: string; toVersion?: string; result: string }[];
          const outcomes = harness.outcomes().map((o) => o.data as { jobId?: string; hubId?: string; result?: string });
          missing = done.hubs
            .filter(
              (x) =>
                !records.some((r) => r.hubId === x.hubId && r.toVersion === version && r.result === x.result) ||
                ((x.result === 'moved' || x.result === 'failed') &&
                  !outcomes.some((o) => o.jobId === jobId && o.hubId === x.hubId && o.result === x.result)),
            )
            .map((x) => x.hubName);
          return missing.length === 0;
        },
        () => `the audit records and outcomes of job ${jobId} (missing for ${missing.join(', ')})`,
        timeoutMs,
      );
      return done;
    },
    async job(jobId, via = harness) {
      const response = await via.api('GET', `/api/jobs/${encodeURIComponent(jobId)}`);
      if (response.status === 404) return undefined;
      if (response.status !== 200) throw new Error(`GET /api/jobs answered ${response.status}`);
      return response.body as JobView;
    },
    queue: (name) => new QueueClient(stack.azurite.connectionString, name),
    table: (name) =>
      TableClient.fromConnectionString(stack.azurite.connectionString, name, { allowInsecureConnection: true }),
    outcomes: () =>
      stack.eventGrid.received(OUTCOME_TOPIC).map((e) => ({ type: e.type, subject: e.subject ?? '', data: e.data })),
    async restartHost(how) {
      await (how === 'kill' ? host.kill() : host.stop());
      host = await start();
    },
    async startInstance(settings = {}) {
      const instance = await startFunctionHost({
        env: { ...env, ...settings },
        port: await freePort(),
        ...(appDir ? { appDir } : {}),
      });
      instances.push(instance);
      return { host: instance, ...instanceClient(() => instance, functionKey) };
    },
    async close() {
      await Promise.all(instances.map((instance) => instance.stop()));
      await host.stop();
      await stack.close();
      rmSync(dataDir, { recursive: true, force: true });
      if (appDir) rmSync(appDir, { recursive: true, force: true });
    },
  };
  return harness;
}
