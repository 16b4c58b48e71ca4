// ARM's subscription throttling, reads and writes, through the local host: steps that meet a 429 (or a budget that
// says "not now") wait on the queue as long as ARM asked, without spending an attempt, and every hub still moves
// exactly once; and the budget that paces them is one per subscription, shared by every instance.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ThrottlingSettings } from '@cmk-rotator/emulators/arm';
import { SUB_A, SUB_B, startHarness } from '../support/harness';
import type { AppInstance, Harness, JobView } from '../support/harness';
import { acceptedPuts, expectAllOn, hub, keyIdOf, resultsOf, settleIfAny, spendReadBudget } from '../support/fleet';
import type { HubRef } from '../support/harness';

interface Run {
  refs: HubRef[];
  target: string;
  job: JobView;
  /** ARM's 429 answers during the run. */
  throttled: number;
  requests: number;
  /** The most hubs seen waiting on throttling at once, and whether each was due after it was seen. */
  mostWaiting: number;
  waitsInFuture: boolean;
}

describe('throttled ARM, one budget per subscription', () => {
  let h: Harness;
  const extra: AppInstance[] = [];
  beforeAll(async () => {
    h = await startHarness({
      stack: { armPageSize: 100 },
      settings: { ROTATOR_RECONCILE_SCHEDULE: '0 0 0 1 1 *' },
    });
  }, 60_000);
  afterAll(async () => {
    for (const instance of extra) await instance.host.stop();
    await h?.close();
  });

  /**
   * Seeds `count` hubs of one subscription on a new key, then rotates it under `throttling`, watching the job. With
   * `budgetSpent`, a neighbour spends the subscription's read budget as the fleet starts (see spendReadBudget).
   */
  async function rotateUnder(
    name: string,
    subscriptionId: string,
    count: number,
    throttling: ThrottlingSettings,
    budgetSpent = false,
  ) {
    const key = await h.createKey(name);
    const refs = Array.from({ length: count }, (_, i) => hub(subscriptionId, `${name}-${i + 1}`));
    for (const ref of refs) await h.seedHub(ref, key.id!);
    await settleIfAny(h, key.id!);
    h.stack.arm.clearRequests();
    h.stack.arm.faults.setThrottling(throttling);
    try {
      const planned = await h.api('POST', '/api/keys/rotate', { keyId: keyIdOf(name) });
      expect(planned.status).toBe(200);
      const jobId = planned.body.jobId as string;
      if (budgetSpent) await spendReadBudget(h, [subscriptionId]);
      let mostWaiting = 0;
      let waitsInFuture = true;
      await h.until(
        async () => {
          const seenAt = Date.now();
          const job = await h.job(jobId);
          const waiting = job?.hubs.filter((x) => x.result === 'throttled') ?? [];
          mostWaiting = Math.max(mostWaiting, waiting.length);
          // A hub waiting on throttling is due after ARM's Retry-After (at least a second), not at once.
          if (waiting.some((x) => !x.nextStepAt || Date.parse(x.nextStepAt) <= seenAt)) waitsInFuture = false;
          return job?.done === true;
        },
        'the throttled job done',
        120_000,
      );
      const counts = h.stack.arm.requestCounts();
      const job = await h.settle(jobId);
      const run: Run = {
        refs,
        target: planned.body.createdVersion as string,
        job,
        throttled: counts.throttled,
        requests: counts.total,
        mostWaiting,
        waitsInFuture,
      };
      console.log(
        `${name}: ${counts.total} ARM requests, ${counts.throttled} answered 429; up to ${mostWaiting} hubs waited`,
      );
      return run;
    } finally {
      h.stack.arm.faults.setThrottling({ enabled: false });
    }
  }

  /** Every hub moved with one accepted PUT, verified, and no attempt spent on throttling. */
  async function expectEveryHubMovedOnce(run: Run) {
    expect(resultsOf(run.job)).toEqual(Object.fromEntries(run.refs.map((r) => [r.name, 'moved'])));
    expect(run.job.hubs.filter((x) => x.attempts !== 0)).toEqual([]);
    for (const ref of run.refs) expect(acceptedPuts(h, ref), ref.name).toBe(1);
    await expectAllOn(h, run.refs, run.target);
  }

  it('small read and write buckets: hubs wait as ARM asks, spend no attempt, and all move once', async () => {
    // A subscription whose budget others mostly spend: 20 reads at most, 5 more a second; 10 writes, 2 a second.
    const run = await rotateUnder('small-bucket', SUB_A, 20, {
      enabled: true,
      reads: { burst: 20, refillPerSecond: 5 },
      writes: { burst: 10, refillPerSecond: 2 },
    });

    await expectEveryHubMovedOnce(run);
    // Throttling bit: hubs were held back (by ARM's 429s or by the budget before ARM had to), each due again later
    // rather than retried at once; and the budget kept the 429s a minority of ARM's answers.
    expect(run.mostWaiting).toBeGreaterThan(0);
    expect(run.waitsInFuture).toBe(true);
    expect(run.throttled).toBeLessThan(run.requests - run.throttled);
  }, 180_000);

  // ARM's own limits (reads 250 + 25/s, writes 200 + 10/s), which the app's budget models: the fleet's reads (a read,
  // a look at the update and a verifying read per hub, more than the read bucket holds) must be paced, and a budget
  // kept per instance would be spent twice over by two instances. A neighbour spends the read budget as each fleet
  // starts, so that both runs meet a spent budget on any machine, not only on one that outpaces ARM's refill.
  const ARM_LIMITS: ThrottlingSettings = { enabled: true, reads: true, writes: true };
  const FLEET = 150;
  let oneInstance: Run | undefined;

  it(`${FLEET} hubs, one instance, ARM's limits: paced by the budget, few 429s`, async () => {
    oneInstance = await rotateUnder('one-instance', SUB_A, FLEET, ARM_LIMITS, true);

    await expectEveryHubMovedOnce(oneInstance);
    expect(oneInstance.mostWaiting).toBeGreaterThan(0);
    expect(oneInstance.waitsInFuture).toBe(true);
    expect(oneInstance.throttled).toBeLessThanOrEqual(FLEET / 20);
  }, 180_000);

  it(`the same fleet on two instances sharing one budget: no more 429s than one instance`, async () => {
    expect(oneInstance, 'the one-instance run').toBeDefined();
    extra.push(await h.startInstance());
    const twoInstances = await rotateUnder('two-instances', SUB_B, FLEET, ARM_LIMITS, true);

    await expectEveryHubMovedOnce(twoInstances);
    expect(twoInstances.mostWaiting).toBeGreaterThan(0);
    // Both instances worked the fleet.
    const movedBySecond = extra[0]!.host.logs.filter((l) => l.event === 'hub.moved').length;
    expect(movedBySecond).toBeGreaterThan(0);
    expect(movedBySecond).toBeLessThan(FLEET);
    expect(twoInstances.throttled).toBeLessThanOrEqual(oneInstance!.throttled);
  }, 180_000);
});
