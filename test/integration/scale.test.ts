// A Key Vault event for a key that 1,000 hubs use is answered as soon as the move is planned: the delivery gets its
// 2xx with the job opened and a task per hub, while the hubs' steps only start on the queue. How fast is the bench's
// business (`npm run bench`); the latency is logged here, not asserted.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cmkHub } from '@cmk-rotator/emulators/arm';
import { HUB_IDENTITY, SUB_A, SUB_B, startHarness } from '../support/harness';
import type { Harness } from '../support/harness';
import {
  hub,
  jobIdFor,
  keyVaultEvent,
  newVersionOf,
  spendReadBudget,
  versions,
  withEventsLimitedTo,
  withoutNearExpiryEvents,
} from '../support/fleet';

const HUBS = 1_000;

describe('a 1,000-hub rotation', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({
      stack: { armPageSize: 100 },
      settings: { ROTATOR_RECONCILE_SCHEDULE: '0 0 0 1 1 *' },
    });
  }, 60_000);
  afterAll(async () => {
    // Stops the host with the fleet's steps still running, and everything else with it.
    await h?.close();
  }, 60_000);

  let fleetJob: string | undefined;
  const refs = Array.from({ length: HUBS }, (_, i) => hub(i % 2 ? SUB_B : SUB_A, `fleet-${i + 1}`));
  async function seedFleet(keyId: string) {
    for (let i = 0; i < refs.length; i += 50) {
      await Promise.all(
        refs
          .slice(i, i + 50)
          .map((ref) => h.stack.arm.seedHub({ ...ref, hub: cmkHub({ keyIdentifier: keyId, identity: HUB_IDENTITY }) })),
      );
    }
  }

  it('the KeyNearExpiry delivery is answered 202 once the job holds a task per hub', async () => {
    // Key Vault's events about the new key go nowhere while the fleet is seeded: only the delivery below plans.
    const key = await withEventsLimitedTo(h, ['Microsoft.KeyVault.KeyExpired'], async () => {
      const made = await h.createKey('fleet-cmk', { expiresInDays: 20 });
      await seedFleet(made.id!);
      return made;
    });
    await h.stack.eventGrid.idle();

    const started = performance.now();
    const status = await h.deliver([keyVaultEvent('KeyNearExpiry', key.id!)]);
    const ackMs = performance.now() - started;
    console.log(`KeyNearExpiry for a key used by ${HUBS} hubs answered ${status} after ${Math.round(ackMs)} ms`);

    const trouble = h.host.logs.filter((l) => l.level !== 'information').map((l) => l.raw);
    expect(status, trouble.join('\n')).toBe(202);
    expect(await versions(h, 'fleet-cmk')).toHaveLength(2);
    const created = await newVersionOf(h, 'fleet-cmk', key.properties.version!);
    const job = await h.job(jobIdFor(created));
    expect(job).toMatchObject({ targetVersion: created, done: false });
    expect(job!.hubs).toHaveLength(HUBS);
    expect(new Set(job!.hubs.map((x) => x.hubName))).toEqual(new Set(refs.map((r) => r.name)));
    expect(Object.values(job!.progress).reduce((a, b) => a + b, 0)).toBe(HUBS);
    expect(job!.progress.failed).toBe(0);
    // The answer came before the moves: ARM had accepted few of the 1,000 PUTs, if any.
    expect(h.stack.arm.requestCounts().acceptedPuts).toBeLessThan(HUBS);

    fleetJob = jobIdFor(created);
  }, 120_000);

  /** The neighbour's debt, in seconds of refill, and how long a read waits for its token before its step is delayed. */
  const NEIGHBOUR_SECONDS = 3;
  const READ_INLINE_WAIT_SECONDS = 2;

  it('an event planned while that fleet spends the read budget is still answered 202', async () => {
    expect(fleetJob, 'the fleet job of the test before').toBeDefined();
    const key = await withoutNearExpiryEvents(h, () => h.createKey('other-cmk', { expiresInDays: 20 }));
    await h.seedHub(hub(SUB_A, 'other-hub'), key.id!);
    // The fleet spends the read budget by itself only where this machine steps it faster than ARM refills; a
    // neighbour spending it too makes sure it is spent here, until the fleet's steps wait on it.
    await h.until(async () => {
      await spendReadBudget(h, [SUB_A, SUB_B], NEIGHBOUR_SECONDS);
      return ((await h.job(fleetJob!))?.progress.throttled ?? 0) > 0;
    }, "the fleet's steps waiting on the read budget");
    // Then the neighbour stops. The event must meet the budget as the fleet alone holds it (no deeper than a read may
    // wait inline, since longer waits put steps back on the queue instead), not the neighbour's extra debt: that
    // refills in NEIGHBOUR_SECONDS - READ_INLINE_WAIT_SECONDS, whatever the machine's speed.
    await new Promise((resolve) => setTimeout(resolve, (NEIGHBOUR_SECONDS - READ_INLINE_WAIT_SECONDS + 0.5) * 1000));
    const status = await h.deliver([keyVaultEvent('KeyNearExpiry', key.id!)]);
    const trouble = h.host.logs.filter((l) => l.event === 'rotation.failed').map((l) => l.raw);
    expect(status, trouble.join('\n')).toBe(202);
  }, 60_000);
});
