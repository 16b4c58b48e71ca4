// The use cases wired to in-memory fakes, for unit tests of decisions and of the hub step pipeline.
import { createRotator } from '../../src/application';
import type { Dependencies, Invocation, RotationSettings } from '../../src/application';
import { InProcessLock } from '../../src/domain/concurrency';
import { keyLabel } from '../../src/domain/keyId';
import type { KeyName } from '../../src/domain/keyId';
import type { HubStepMessage } from '../../src/domain/ports';
import {
  FakeAudit,
  FakeClock,
  FakeHubs,
  FakeJobs,
  FakeKeyVault,
  FakeOutcomes,
  FakeRevocations,
  FakeStepQueue,
  MemoryLogger,
} from '.';

export const VAULT = 'https://contoso.vault.azure.net';
export const KEY: KeyName = { vaultUrl: VAULT, name: 'hub-cmk' };
export const SUB =
  '/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Devices/IotHubs';
/** A hub's ARM resource id in the test subscription. */
export const hubId = (name: string) => `${SUB}/${name}`;

export const TEST_SETTINGS: RotationSettings = {
  allowedVaults: [VAULT],
  defaultKeyValidityDays: 90,
  maxEtagAttempts: 3,
  maxHubAttempts: 3,
  stepLeaseMs: 60_000,
  firstRetryDelayMs: 30_000,
  minWaitMs: 1_000,
  maxWaitMs: 300_000,
  nearExpiryDays: 30,
  retireGraceDays: 7,
};

export function fakeRotator(settings: Partial<RotationSettings> = {}) {
  const clock = new FakeClock();
  const keyVault = new FakeKeyVault(clock);
  const hubs = new FakeHubs(clock);
  const audit = new FakeAudit();
  const outcomes = new FakeOutcomes();
  const log = new MemoryLogger();
  const lock = new InProcessLock();
  const jobs = new FakeJobs(clock);
  const steps = new FakeStepQueue(clock);
  const revocations = new FakeRevocations();
  const deps: Dependencies = {
    keyVault,
    hubs,
    audit,
    outcomes,
    jobs,
    revocations,
    steps,
    clock,
    lock: { runExclusive: (key, work) => lock.run(keyLabel(key), () => work({ assertHeld: () => undefined })) },
    settings: { ...TEST_SETTINGS, ...settings },
  };
  const rotator = createRotator(deps);
  const invocation: Invocation = { correlationId: 'inv-1', log };
  /** Another instance of the app over the same storage, ARM and vault (its own in-memory state). */
  const instance = () => createRotator(deps);
  /** Works the step queue until it is empty, as the queue trigger would. */
  const drain = (options: { until?: () => boolean; maxMessages?: number } = {}) =>
    steps.drain((message) => rotator.advanceHub(message, invocation), options);
  /** A handler of step messages for a given instance, as its queue trigger would call it. */
  const worker =
    (app: ReturnType<typeof createRotator> = rotator) =>
    (message: HubStepMessage) =>
      app.advanceHub(message, invocation);
  return {
    clock,
    keyVault,
    hubs,
    audit,
    outcomes,
    jobs,
    revocations,
    steps,
    log,
    rotator,
    invocation,
    drain,
    deps,
    instance,
    worker,
  };
}

export type FakeRotator = ReturnType<typeof fakeRotator>;

/** A Key Vault event as Event Grid delivers it (EventGridEvent schema) for a versioned key identifier. */
export function keyVaultEvent(type: string, keyId: string, extra: Record<string, unknown> = {}) {
  const [, , , , name, version] = keyId.split('/');
  return {
    id: `evt-${Math.random().toString(16).slice(2)}`,
    topic: '/subscriptions/x/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/contoso',
    subject: name,
    eventType: `Microsoft.KeyVault.${type}`,
    eventTime: '2026-06-01T00:00:00Z',
    data: {
      Id: keyId,
      VaultName: 'contoso',
      ObjectType: 'Key',
      ObjectName: name,
      Version: version,
      NBF: null,
      EXP: '1780000000 ',
      ...extra,
    },
    dataVersion: '1',
    metadataVersion: '1',
  };
}

/** Lets promises that are already resolvable settle (fakes answer at once, so this runs a step to its next wait). */
export const settle = () => new Promise<void>((resolve) => setImmediate(resolve));
