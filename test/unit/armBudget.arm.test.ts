// The shared budget against ARM's own token bucket (the emulator's model of it): requests reach ARM a little after
// their token was granted, as they do over a network, and two instances share the budget. No request may be
// throttled.
import { describe, expect, it } from 'vitest';
import { SharedArmBudget } from '../../src/adapters/armBudget';
import { SubscriptionThrottle } from '@cmk-rotator/emulators/arm/throttling';
import { MemoryBucketStore } from '../fakes';

describe('SharedArmBudget against ARM', () => {
  it('two instances writing past the burst, each request arriving 100 ms after its grant, meet no 429', async () => {
    const limits = { burst: 20, refillPerSecond: 10 };
    const arm = new SubscriptionThrottle();
    arm.set({ enabled: true, ...limits });
    const store = new MemoryBucketStore();
    const instances = [0, 1].map(
      () => new SharedArmBudget(store, { limits: { reads: limits, writes: limits }, maxInlineWaitMs: 5_000 }),
    );
    const answers: number[] = [];
    await Promise.all(
      Array.from({ length: 40 }, async (_, i) => {
        const budget = instances[i % 2]!;
        await budget.acquire('sub', 'writes');
        await new Promise((resolve) => setTimeout(resolve, 100));
        try {
          const headers = arm.take('write', 'sub', 'app', Date.now());
          answers.push(201);
          await budget.observe('sub', 'writes', { status: 201, remaining: Number(Object.values(headers)[0]) });
        } catch {
          answers.push(429);
          await budget.observe('sub', 'writes', { status: 429, retryAfterMs: 1000 });
        }
      }),
    );
    expect(answers.filter((status) => status === 429)).toEqual([]);
    expect(answers).toHaveLength(40);
  }, 20_000);
});
