// The composition root: settings are validated here, once, when the app loads; a bad configuration stops the
// app with one message that lists every problem.
import type { TokenCredential } from '@azure/core-auth';
import { TableClient } from '@azure/data-tables';
import { DefaultAzureCredential } from '@azure/identity';
import { AuditTableAdapter, AUDIT_TABLE } from '../adapters/auditTable';
import { IotHubAdapter } from '../adapters/iotHubs';
import { KeyVaultAdapter } from '../adapters/keyVault';
import { EventGridOutcomePublisher, NoOutcomePublisher } from '../adapters/outcomes';
import { loadConfig } from '../config';
import type { Config } from '../config';
import { InProcessLock } from '../domain/concurrency';
import { keyLabel } from '../domain/keyId';
import { RotationService } from '../domain/rotation';

export function createRotationService(config: Config, credential: TokenCredential): RotationService {
  const lock = new InProcessLock();
  return new RotationService({
    keyVault: new KeyVaultAdapter(credential),
    hubs: new IotHubAdapter(credential, { armEndpoint: config.armEndpoint, subscriptionIds: config.subscriptionIds }),
    audit: new AuditTableAdapter(auditTable(config, credential)),
    outcomes: config.outcomeTopic
      ? new EventGridOutcomePublisher(
          config.outcomeTopic.endpoint,
          config.outcomeTopic.key ? { key: config.outcomeTopic.key } : credential,
        )
      : new NoOutcomePublisher(),
    lock: { runExclusive: (key, work) => lock.run(keyLabel(key), work) },
    clock: { now: () => new Date() },
    settings: {
      allowedVaults: config.allowedVaults,
      defaultKeyValidityDays: config.defaultKeyValidityDays,
      hubConcurrency: config.hubConcurrency,
      maxEtagAttempts: 5,
    },
  });
}

function auditTable(config: Config, credential: TokenCredential): TableClient {
  const { storage } = config;
  if (storage.kind === 'connectionString') {
    const insecure = /UseDevelopmentStorage=true|DefaultEndpointsProtocol=http;|Endpoint=http:\/\//i.test(
      storage.connectionString,
    );
    return TableClient.fromConnectionString(storage.connectionString, AUDIT_TABLE, {
      allowInsecureConnection: insecure,
    });
  }
  const storageCredential = storage.clientId
    ? new DefaultAzureCredential({ managedIdentityClientId: storage.clientId })
    : credential;
  return new TableClient(storage.tableUrl, AUDIT_TABLE, storageCredential);
}

export const config = loadConfig(process.env);
export const rotator = createRotationService(
  config,
  new DefaultAzureCredential(
    config.managedIdentityClientId ? { managedIdentityClientId: config.managedIdentityClientId } : {},
  ),
);
