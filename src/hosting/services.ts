// The composition root: settings are validated here, once, when the app loads; a bad configuration stops the
// app with one message that lists every problem.
import type { TokenCredential } from '@azure/core-auth';
import { TableClient } from '@azure/data-tables';
import { DefaultAzureCredential } from '@azure/identity';
import { AUDIT_TABLE, AuditTableAdapter } from '../adapters/auditTable';
import { IotHubAdapter } from '../adapters/iotHubs';
import { JOBS_TABLE, JobsTableAdapter } from '../adapters/jobsTable';
import { KeyVaultAdapter } from '../adapters/keyVault';
import { LOCKS_TABLE, TableLeaseLock } from '../adapters/leaseLock';
import { EventGridOutcomePublisher, NoOutcomePublisher } from '../adapters/outcomes';
import { loadConfig } from '../config';
import type { Config, StorageSettings } from '../config';
import { InProcessLock } from '../domain/concurrency';
import { keyLabel } from '../domain/keyId';
import { RotationService } from '../domain/rotation';

export function createRotationService(config: Config, credential: TokenCredential): RotationService {
  const table = tableClients(config.storage, credential);
  // The storage lease guards across instances; the in-process lock keeps one instance's own invocations from
  // queueing on the lease.
  const local = new InProcessLock();
  const lease = new TableLeaseLock(table(LOCKS_TABLE));
  return new RotationService({
    keyVault: new KeyVaultAdapter(credential),
    hubs: new IotHubAdapter(credential, { armEndpoint: config.armEndpoint, subscriptionIds: config.subscriptionIds }),
    audit: new AuditTableAdapter(table(AUDIT_TABLE)),
    jobs: new JobsTableAdapter(table(JOBS_TABLE)),
    outcomes: config.outcomeTopic
      ? new EventGridOutcomePublisher(
          config.outcomeTopic.endpoint,
          config.outcomeTopic.key ? { key: config.outcomeTopic.key } : credential,
        )
      : new NoOutcomePublisher(),
    lock: { runExclusive: (key, work) => local.run(keyLabel(key), () => lease.runExclusive(key, work)) },
    clock: { now: () => new Date() },
    settings: {
      allowedVaults: config.allowedVaults,
      defaultKeyValidityDays: config.defaultKeyValidityDays,
      hubConcurrency: config.hubConcurrency,
      maxEtagAttempts: 5,
      maxHubAttempts: 5,
      claimTtlMs: config.hubClaimSeconds * 1000,
      firstRetryDelayMs: config.hubRetrySeconds * 1000,
      nearExpiryDays: config.nearExpiryDays,
    },
  });
}

function tableClients(storage: StorageSettings, credential: TokenCredential): (name: string) => TableClient {
  if (storage.kind === 'connectionString') {
    const { connectionString } = storage;
    // Azurite speaks plain HTTP; the connection string says so, and the SDK must be told it may.
    const insecure = /UseDevelopmentStorage=true|DefaultEndpointsProtocol=http;|Endpoint=http:\/\//i.test(
      connectionString,
    );
    return (name) => TableClient.fromConnectionString(connectionString, name, { allowInsecureConnection: insecure });
  }
  const storageCredential = storage.clientId
    ? new DefaultAzureCredential({ managedIdentityClientId: storage.clientId })
    : credential;
  return (name) => new TableClient(storage.tableUrl, name, storageCredential);
}

export const config = loadConfig(process.env);
export const rotator = createRotationService(
  config,
  new DefaultAzureCredential(
    config.managedIdentityClientId ? { managedIdentityClientId: config.managedIdentityClientId } : {},
  ),
);
