// The whole local Azure: Storage (Azurite), a managed-identity endpoint, Key Vault, ARM (IoT hubs) and Event Grid
// behind a proxy that answers for Azure's real host names. The sandbox and the integration tests both run this.
import path from 'node:path';
import { startAzurite } from './azurite';
import type { RunningAzurite } from './azurite';
import { startArmEmulator } from './arm';
import type { RunningArmEmulator } from './arm';
import { EmulatorClock } from './clock';
import { startEventGridEmulator } from './eventgrid';
import type { EventGridEmulator, EventGridEmulatorOptions } from './eventgrid';
import { startIdentityEndpoint } from './identity';
import type { RunningIdentityEndpoint } from './identity';
import { KEY_VAULT_HOST_PATTERN, startKeyVaultEmulator } from './keyvault';
import type { RunningKeyVaultEmulator } from './keyvault';
import { assertPortFree } from './tcpPorts';
import { startAzureProxy } from './proxy';
import type { RunningProxy } from './proxy';
import { ensureDevCertificate } from './tls';
import type { DevCertificate } from './tls';

export interface StackPorts {
  proxy: number;
  identity: number;
  keyVault: number;
  arm: number;
  eventGrid: number;
  blob: number;
  queue: number;
  table: number;
}

export interface StackOptions {
  /** Certificates, Key Vault state, dead letters and (when persistent) Azurite's data live here. */
  dataDir: string;
  /** Where the emulators' certificate lives (default: <dataDir>/tls); processes must trust its CA at start-up. */
  tlsDir?: string;
  /** Keep keys and storage across restarts (the sandbox); tests run in memory. */
  persistent?: boolean;
  /** 0 or omitted: any free port. */
  ports?: Partial<StackPorts>;
  /** Milliseconds between Event Grid delivery attempts (Event Grid's schedule, compressed). */
  retrySchedule?: number[];
  maxDeliveryAttempts?: number;
  /** Event Grid's time scale, response deadline and delayed delivery (see EventGridEmulatorOptions). */
  eventGrid?: Pick<EventGridEmulatorOptions, 'timeScale' | 'responseTimeoutMs' | 'delayedDelivery'>;
  /** How long an IoT hub update stays InProgress (per hub: `arm.timing.setHub`). */
  asyncOperationDelayMs?: number;
  retryAfterSeconds?: number;
  armPageSize?: number;
}

export const OUTCOME_TOPIC = 'cmk-rotator-outcomes';
export const OUTCOME_TOPIC_ENDPOINT = `https://${OUTCOME_TOPIC}.westeurope-1.eventgrid.azure.net/api/events`;

export interface RunningStack {
  tls: DevCertificate;
  clock: EmulatorClock;
  proxy: RunningProxy;
  identity: RunningIdentityEndpoint;
  keyVault: RunningKeyVaultEmulator;
  arm: RunningArmEmulator;
  eventGrid: EventGridEmulator;
  azurite: RunningAzurite;
  /** Environment for a process (the function host) that should reach these emulators as if they were Azure. */
  environment(base?: NodeJS.ProcessEnv): NodeJS.ProcessEnv;
  close(): Promise<void>;
}

/** Credentials a developer's shell may carry that would take precedence over the emulated managed identity. */
const FOREIGN_CREDENTIAL_SETTINGS = [
  'AZURE_CLIENT_SECRET',
  'AZURE_CLIENT_CERTIFICATE_PATH',
  'AZURE_USERNAME',
  'AZURE_PASSWORD',
  'AZURE_FEDERATED_TOKEN_FILE',
  'MSI_ENDPOINT',
  'MSI_SECRET',
  'IDENTITY_SERVER_THUMBPRINT',
  'IMDS_ENDPOINT',
];

export async function startStack(options: StackOptions): Promise<RunningStack> {
  const ports = options.ports ?? {};
  const names: Record<keyof StackPorts, string> = {
    proxy: 'Azure proxy',
    identity: 'managed identity endpoint',
    keyVault: 'Key Vault emulator',
    arm: 'ARM emulator',
    eventGrid: 'Event Grid emulator',
    blob: 'Azurite blob',
    queue: 'Azurite queue',
    table: 'Azurite table',
  };
  for (const [name, port] of Object.entries(ports)) {
    if (port) await assertPortFree(port, names[name as keyof StackPorts]);
  }
  const started: { close(): Promise<void> }[] = [];
  const track = <T extends { close(): Promise<void> }>(service: T): T => {
    started.push(service);
    return service;
  };
  const close = async () => {
    for (const service of started.reverse()) await service.close().catch(() => undefined);
  };
  try {
    const tls = ensureDevCertificate(options.tlsDir ?? path.join(options.dataDir, 'tls'));
    const clock = new EmulatorClock();
    const azurite = track(
      await startAzurite({
        ...(options.persistent ? { location: path.join(options.dataDir, 'azurite') } : {}),
        ...(ports.blob ? { blobPort: ports.blob } : {}),
        ...(ports.queue ? { queuePort: ports.queue } : {}),
        ...(ports.table ? { tablePort: ports.table } : {}),
      }),
    );
    const identity = track(await startIdentityEndpoint({ ...(ports.identity ? { port: ports.identity } : {}) }));
    const eventGrid = track(
      await startEventGridEmulator({
        tls,
        deadLetterDir: path.join(options.dataDir, 'dead-letters'),
        ...(ports.eventGrid ? { port: ports.eventGrid } : {}),
        ...(options.retrySchedule ? { retrySchedule: options.retrySchedule } : {}),
        ...(options.maxDeliveryAttempts ? { maxDeliveryAttempts: options.maxDeliveryAttempts } : {}),
        ...options.eventGrid,
      }),
    );
    const keyVault = track(
      await startKeyVaultEmulator({
        tls,
        clock,
        events: eventGrid.systemTopicSink,
        ...(options.persistent ? { stateFile: path.join(options.dataDir, 'keyvault.json') } : {}),
        ...(ports.keyVault ? { port: ports.keyVault } : {}),
      }),
    );
    const arm = track(
      await startArmEmulator({
        tls,
        crypto: keyVault.crypto,
        clock,
        ...(ports.arm ? { port: ports.arm } : {}),
        ...(options.asyncOperationDelayMs !== undefined
          ? { asyncOperationDelayMs: options.asyncOperationDelayMs }
          : {}),
        ...(options.retryAfterSeconds !== undefined ? { retryAfterSeconds: options.retryAfterSeconds } : {}),
        ...(options.armPageSize ? { pageSize: options.armPageSize } : {}),
      }),
    );
    const proxy = track(
      await startAzureProxy({
        ...(ports.proxy ? { port: ports.proxy } : {}),
        routes: [
          { host: KEY_VAULT_HOST_PATTERN, port: keyVault.port },
          { host: 'management.azure.com', port: arm.port },
          { host: '*.eventgrid.azure.net', port: eventGrid.port },
        ],
      }),
    );
    return {
      tls,
      clock,
      proxy,
      identity,
      keyVault,
      arm,
      eventGrid,
      azurite,
      environment: (base = process.env) => {
        const env: NodeJS.ProcessEnv = { ...base };
        for (const name of [
          ...FOREIGN_CREDENTIAL_SETTINGS,
          'https_proxy',
          'http_proxy',
          'all_proxy',
          'no_proxy',
          'ALL_PROXY',
        ]) {
          delete env[name];
        }
        return {
          ...env,
          HTTPS_PROXY: proxy.url,
          NO_PROXY: '127.0.0.1,localhost',
          NODE_EXTRA_CA_CERTS: tls.trustBundlePath,
          IDENTITY_ENDPOINT: identity.endpoint,
          IDENTITY_HEADER: identity.header,
          AzureWebJobsStorage: azurite.connectionString,
          ROTATOR_OUTCOME_TOPIC_ENDPOINT: OUTCOME_TOPIC_ENDPOINT,
        };
      },
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}
