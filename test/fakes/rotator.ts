// The use cases wired to in-memory fakes, for unit tests of decisions and of the hub step pipeline.
import { createRotator } from '../../src/application';
import type { Invocation, RotationSettings } from '../../src/application';
import { InProcessLock } from '../../src/domain/concurrency';
import { keyLabel } from '../../src/domain/keyId';
import { FakeAudit, FakeClock, FakeHubs, FakeJobs, FakeKeyVault, FakeOutcomes, FakeStepQueue, MemoryLogger } from '.';

export const VAULT = 'https://contoso.vault.azure.net';

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
  const rotator = createRotator({
    keyVault,
    hubs,
    audit,
    outcomes,
    jobs,
    steps,
    clock,
    lock: { runExclusive: (key, work) => lock.run(keyLabel(key), work) },
    settings: { ...TEST_SETTINGS, ...settings },
  });
  const invocation: Invocation = { correlationId: 'inv-1', log };
  /** Works the step queue until it is empty, as the queue trigger would. */
  const drain = (options: { until?: () => boolean; maxMessages?: number } = {}) =>
    steps.drain((message) => rotator.advanceHub(message, invocation), options);
  return { clock, keyVault, hubs, audit, outcomes, jobs, steps, log, rotator, invocation, drain };
}
