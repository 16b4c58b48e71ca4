// The composition root. Settings are validated on first use, not at load: every function stays registered with a
// bad configuration, so each invocation fails loudly with CONFIG_INVALID (and health answers 503) instead of the
// worker indexing no functions at all, which Azure reports as a healthy, empty app.
import type { TokenCredential } from '@azure/core-auth';
import { TableClient } from '@azure/data-tables';
import { DefaultAzureCredential } from '@azure/identity';
import { SharedArmBudget } from '../adapters/armBudget';
import { BUDGET_TABLE, TableBucketStore } from '../adapters/armBudgetTable';
import { AUDIT_TABLE, AuditTableAdapter } from '../adapters/auditTable';
import { IotHubAdapter } from '../adapters/iotHubs';
import { JOBS_TABLE, JobsTableAdapter } from '../adapters/jobsTable';
import { KeyVaultAdapter } from '../adapters/keyVault';
import { LOCKS_TABLE, TableLeaseLock } from '../adapters/leaseLock';
import { EventGridOutcomePublisher, NoOutcomePublisher } from '../adapters/outcomes';
import { REVOCATIONS_TABLE, RevocationsTableAdapter } from '../adapters/revocationsTable';
import { StorageStepQueue } from '../adapters/stepQueue';
import { createRotator } from '../application';
import type { Rotator } from '../application';
import { ConfigError, loadConfig } from '../config';
import type { Config, StorageSettings } from '../config';
import { InProcessLock } from '../domain/concurrency';
import { RotatorError } from '../domain/errors';
import { keyLabel } from '../domain/keyId';

/** ARM's Retry-After for hub operations and throttling is honoured within these bounds. */
const MIN_WAIT_MS = 1_000;
const MAX_WAIT_MS = 5 * 60_000;

export function createServices(config: Config, credential: TokenCredential): Rotator {
  const table = tableClients(config.storage, credential);
  // The storage lease guards across instances; the in-process lock keeps one instance's own invocations from
  // queueing on the lease.
  const local = new InProcessLock();
  const lease = new TableLeaseLock(table(LOCKS_TABLE));
  const storageCredential = storageCredentialOf(config.storage, credential);
  return createRotator({
    keyVault: new KeyVaultAdapter(credential),
    hubs: new IotHubAdapter(credential, {
      armEndpoint: config.armEndpoint,
      subscriptionIds: config.subscriptionIds,
      apiVersion: config.iotHubApiVersion,
      budget: new SharedArmBudget(new TableBucketStore(table(BUDGET_TABLE))),
    }),
    audit: new AuditTableAdapter(table(AUDIT_TABLE)),
    jobs: new JobsTableAdapter(table(JOBS_TABLE)),
    revocations: new RevocationsTableAdapter(table(REVOCATIONS_TABLE)),
    steps: new StorageStepQueue(
      config.storage.kind === 'connectionString'
        ? config.storage
        : { kind: 'identity', queueServiceUrl: config.storage.queueUrl, credential: storageCredential },
    ),
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
      maxEtagAttempts: 3,
      maxHubAttempts: 5,
      stepLeaseMs: config.hubClaimSeconds * 1000,
      firstRetryDelayMs: config.hubRetrySeconds * 1000,
      minWaitMs: MIN_WAIT_MS,
      maxWaitMs: MAX_WAIT_MS,
      nearExpiryDays: config.nearExpiryDays,
      retireGraceDays: config.retireGraceDays,
      ...(config.retireAfterDays !== undefined ? { retireAfterDays: config.retireAfterDays } : {}),
    },
  });
}

function storageCredentialOf(storage: StorageSettings, credential: TokenCredential): TokenCredential {
  return storage.kind === 'identity' && storage.clientId
    ? new DefaultAzureCredential({ managedIdentityClientId: storage.clientId })
    : credential;
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
  const storageCredential = storageCredentialOf(storage, credential);
  return (name) => new TableClient(storage.tableUrl, name, storageCredential);
}

/** The configuration could not be used: every invocation says so (the problems, never the values). */
export class ConfigInvalidError extends RotatorError {
  constructor(readonly problems: string[]) {
    super('CONFIG_INVALID', `The app's settings are invalid: ${problems.join('; ')}`, false);
  }
}

let services: { rotator: Rotator; config: Config } | undefined;

/** The services, built from the environment on first use; throws ConfigInvalidError while the settings are bad. */
export function appServices(): { rotator: Rotator; config: Config } {
  if (services) return services;
  let config: Config;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) throw new ConfigInvalidError(error.problems);
    throw error;
  }
  const credential = new DefaultAzureCredential(
    config.managedIdentityClientId ? { managedIdentityClientId: config.managedIdentityClientId } : {},
  );
  services = { rotator: createServices(config, credential), config };
  return services;
}
