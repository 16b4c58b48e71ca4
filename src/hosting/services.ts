// The composition root. Settings are validated on first use, not at load: every function stays registered with a
// bad configuration, so each invocation fails loudly with CONFIG_INVALID (and health answers 503) instead of the
// worker indexing no functions at all, which Azure reports as a healthy, empty app.
import type { TokenCredential } from '@azure/core-auth';
import { createRotator } from '../application';
import type { Rotator } from '../application';
import { ConfigError, loadConfig } from '../config';
import type { Config, StorageSettings } from '../config';
import { InProcessLock } from '../domain/concurrency';
import { RotatorError } from '../domain/errors';
import { keyLabel } from '../domain/keyId';
import { onFirstCall } from './onFirstCall';

/** ARM's Retry-After for hub operations and throttling is honoured within these bounds. */
const MIN_WAIT_MS = 1_000;
const MAX_WAIT_MS = 5 * 60_000;

/** Every adapter is loaded, with its SDK, on the first call of its port (onFirstCall): none at module load. */
export function createServices(config: Config, credential: TokenCredential): Rotator {
  const storageCredential = storageCredentialOf(config.storage, credential);
  const table = async (name: string) =>
    (await import('../adapters/tableClients')).tableClient(config.storage, storageCredential, name);
  // The storage lease guards across instances; the in-process lock keeps one instance's own invocations from
  // queueing on the lease.
  const local = new InProcessLock();
  const lease = onFirstCall(['runExclusive'], async () => {
    const { LOCKS_TABLE, TableLeaseLock } = await import('../adapters/leaseLock');
    return new TableLeaseLock(await table(LOCKS_TABLE));
  });
  return createRotator({
    keyVault: onFirstCall(
      ['listVersions', 'getVersion', 'getRotationPolicy', 'createVersion', 'listKeys', 'setEnabled'],
      async () => new (await import('../adapters/keyVault')).KeyVaultAdapter(credential),
    ),
    hubs: onFirstCall(['listAll', 'get', 'beginReplace', 'operationState'], async () => {
      const [{ IotHubAdapter }, { SharedArmBudget }, { BUDGET_TABLE, TableBucketStore }] = await Promise.all([
        import('../adapters/iotHubs'),
        import('../adapters/armBudget'),
        import('../adapters/armBudgetTable'),
      ]);
      return new IotHubAdapter(credential, {
        armEndpoint: config.armEndpoint,
        subscriptionIds: config.subscriptionIds,
        apiVersion: config.iotHubApiVersion,
        budget: new SharedArmBudget(new TableBucketStore(await table(BUDGET_TABLE))),
      });
    }),
    audit: onFirstCall(['append', 'list'], async () => {
      const { AUDIT_TABLE, AuditTableAdapter } = await import('../adapters/auditTable');
      return new AuditTableAdapter(await table(AUDIT_TABLE));
    }),
    jobs: onFirstCall(
      ['markPlanned', 'open', 'find', 'tasks', 'tasksOf', 'update', 'unfinished', 'jobsOf'],
      async () => {
        const { JOBS_TABLE, JobsTableAdapter } = await import('../adapters/jobsTable');
        return new JobsTableAdapter(await table(JOBS_TABLE));
      },
    ),
    revocations: onFirstCall(['record', 'last'], async () => {
      const { REVOCATIONS_TABLE, RevocationsTableAdapter } = await import('../adapters/revocationsTable');
      return new RevocationsTableAdapter(await table(REVOCATIONS_TABLE));
    }),
    steps: onFirstCall(['send', 'reschedule', 'cancel'], async () => {
      const { StorageStepQueue } = await import('../adapters/stepQueue');
      return new StorageStepQueue(
        config.storage.kind === 'connectionString'
          ? config.storage
          : { kind: 'identity', queueServiceUrl: config.storage.queueUrl, credential: storageCredential },
      );
    }),
    outcomes: config.outcomeTopic ? outcomePublisher(config.outcomeTopic, credential) : noOutcomes,
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

function outcomePublisher(topic: NonNullable<Config['outcomeTopic']>, credential: TokenCredential) {
  return onFirstCall(['publish'], async () => {
    const { EventGridOutcomePublisher } = await import('../adapters/outcomes');
    return new EventGridOutcomePublisher(topic.endpoint, topic.key ? { key: topic.key } : credential);
  });
}

/** Used when no topic is configured: the logs and the audit table still carry every outcome. */
const noOutcomes = { publish: () => Promise.resolve() };

/** DefaultAzureCredential, with @azure/identity (and MSAL) loaded when the first token is asked for. */
function defaultCredential(managedIdentityClientId: string | undefined): TokenCredential {
  return onFirstCall(['getToken'], async () => {
    const { DefaultAzureCredential } = await import('@azure/identity');
    return new DefaultAzureCredential(managedIdentityClientId ? { managedIdentityClientId } : {});
  });
}

function storageCredentialOf(storage: StorageSettings, credential: TokenCredential): TokenCredential {
  return storage.kind === 'identity' && storage.clientId ? defaultCredential(storage.clientId) : credential;
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
  const credential = defaultCredential(config.managedIdentityClientId);
  services = { rotator: createServices(config, credential), config };
  return services;
}
