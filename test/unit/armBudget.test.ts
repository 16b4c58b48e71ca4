// The ARM request budget shared by every instance through one store of token buckets (conditional writes), on a
// fake clock: blocks, the bound on what sharers are granted, 429s, ARM's remaining counts, long waits, contention.
import { createHttpHeaders, createPipelineRequest } from '@azure/core-rest-pipeline';
import type { PipelineResponse } from '@azure/core-rest-pipeline';
import { describe, expect, it, vi } from 'vitest';
import { SharedArmBudget } from '../../src/adapters/armBudget';
import type { BudgetKind, SharedBudgetOptions } from '../../src/adapters/armBudget';
import { armBudgetPolicy, retryAfterMs } from '../../src/adapters/armBudgetTable';
import { ThrottledError } from '../../src/domain/errors';
import { MemoryBucketStore } from '../fakes';

const SUB = '00000000-0000-0000-0000-00000000000a';
const NO_RESERVE = { reads: 0, writes: 0 };
const LIMITS = { reads: { burst: 20, refillPerSecond: 5 }, writes: { burst: 10, refillPerSecond: 2 } };
const BLOCKS = { reads: 4, writes: 2 };

/** Sharers of one store on one fake clock; sleeping moves the clock. */
function setup(options: Partial<SharedBudgetOptions> = {}) {
  const store = new MemoryBucketStore();
  let now = 1_000_000;
  const clock = {
    now: () => now,
    sleep: vi.fn((ms: number) => {
      now += ms;
      return Promise.resolve();
    }),
    advance: (ms: number) => void (now += ms),
  };
  const budget = () =>
    new SharedArmBudget(store, {
      limits: LIMITS,
      blockSize: BLOCKS,
      // The arithmetic below is the bucket's own; the margin for network skew has a test of its own (armBudget.arm).
      reserve: NO_RESERVE,
      maxInlineWaitMs: 2_000,
      now: clock.now,
      sleep: clock.sleep,
      ...options,
    });
  const row = (kind: BudgetKind) => store.rows.get(`${SUB}|${kind}`)?.state;
  return { store, clock, budget, row };
}

/** The error an acquire fails with (it must fail). */
async function refusal(acquire: Promise<void>): Promise<ThrottledError> {
  const error = await acquire.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ThrottledError);
  return error as ThrottledError;
}

describe('SharedArmBudget', () => {
  it('takes tokens from the shared bucket in blocks, per subscription and kind', async () => {
    const { store, budget, row, clock } = setup();
    const a = budget();
    await a.acquire(SUB, 'reads');
    expect(row('reads')).toMatchObject({ tokens: 16 });
    const traffic = store.reads + store.writes;
    for (let i = 0; i < 3; i++) await a.acquire(SUB.toUpperCase(), 'reads');
    expect(store.reads + store.writes).toBe(traffic);
    await a.acquire(SUB, 'reads');
    expect(row('reads')).toMatchObject({ tokens: 12 });
    await a.acquire(SUB, 'writes');
    expect(row('writes')).toMatchObject({ tokens: 8 });
    expect(store.rows.size).toBe(2);
    // A bucket refills at its rate, up to its burst.
    clock.advance(3_600_000);
    await budget().acquire(SUB, 'reads');
    expect(row('reads')).toMatchObject({ tokens: 16 });
    expect(clock.sleep).not.toHaveBeenCalled();
  });

  it('never grants sharers working at once more than the burst plus the refill over any window', async () => {
    // A fake timer: sleepers wake in time order, the clock jumping to each wake-up.
    let now = 1_000_000;
    const sleepers: { at: number; wake: () => void }[] = [];
    const sleep = (ms: number) => new Promise<void>((wake) => sleepers.push({ at: now + ms, wake }));
    const store = new MemoryBucketStore();
    const budget = () =>
      new SharedArmBudget(store, {
        limits: LIMITS,
        blockSize: BLOCKS,
        reserve: NO_RESERVE,
        maxInlineWaitMs: 2_000,
        now: () => now,
        sleep,
      });
    const sharers = [budget(), budget()];
    const start = now;
    const granted: number[] = [];
    let throttled = 0;
    const worker = async (sharer: SharedArmBudget) => {
      while (granted.length < 150) {
        try {
          await sharer.acquire(SUB, 'reads');
          granted.push(now);
        } catch (error) {
          if (!(error instanceof ThrottledError)) throw error;
          throttled++;
          await sleep(error.retryAfterMs ?? 1_000); // the step goes back on the queue for that long
        }
      }
    };
    let finished = false;
    const work = Promise.all(Array.from({ length: 16 }, (_, i) => worker(sharers[i % 2]!))).finally(
      () => (finished = true),
    );
    while (!finished) {
      await new Promise((resolve) => setImmediate(resolve));
      if (finished) break;
      sleepers.sort((a, b) => a.at - b.at);
      const next = sleepers.shift();
      if (!next) throw new Error('nothing to wake, yet the workers are not done');
      now = Math.max(now, next.at);
      next.wake();
    }
    await work;

    const { burst, refillPerSecond } = LIMITS.reads;
    // From the start (nothing held yet): within the bucket's bound exactly.
    granted.forEach((at, i) => expect(i + 1).toBeLessThanOrEqual(burst + ((at - start) / 1000) * refillPerSecond));
    // Any window: the bound, plus what each sharer may hold from before it (one block).
    for (let i = 0; i < granted.length; i++) {
      for (let j = i; j < granted.length; j++) {
        const allowed = burst + ((granted[j]! - granted[i]!) / 1000) * refillPerSecond + 2 * BLOCKS.reads;
        expect(j - i + 1).toBeLessThanOrEqual(allowed);
      }
    }
    expect(throttled).toBeGreaterThan(0); // the sharers did run dry and were told to come back
    // And the budget is used, not wasted: the tokens beyond the burst take at most 20 % longer than the refill.
    expect(now - start).toBeLessThanOrEqual(((granted.length - burst) / refillPerSecond) * 1000 * 1.2);
  });

  it('a 429 seen by one sharer pauses every sharer until its Retry-After', async () => {
    const { budget, clock, row } = setup();
    const [a, b] = [budget(), budget()];
    await a.acquire(SUB, 'writes'); // a holds one more token of its block
    await a.observe(SUB, 'writes', { status: 429, retryAfterMs: 5_000 });
    expect(row('writes')).toMatchObject({ pausedUntil: clock.now() + 5_000 });

    expect((await refusal(b.acquire(SUB, 'writes'))).retryAfterMs).toBe(5_000);
    expect((await refusal(a.acquire(SUB, 'writes'))).retryAfterMs).toBe(5_000);
    // Reads are a separate bucket: not paused.
    await b.acquire(SUB, 'reads');

    clock.advance(5_000);
    await b.acquire(SUB, 'writes');
    await a.acquire(SUB, 'writes');
  });

  it('a short Retry-After is waited out inline', async () => {
    const { budget, clock } = setup();
    await budget().observe(SUB, 'writes', { status: 429, retryAfterMs: 1_500 });
    const started = clock.now();
    await budget().acquire(SUB, 'writes');
    expect(clock.sleep).toHaveBeenCalledWith(1_500);
    expect(clock.now() - started).toBeGreaterThanOrEqual(1_500);
  });

  it('a lower remaining count from ARM lowers the shared level (not a higher one, not a small difference)', async () => {
    const { store, budget, row, clock } = setup();
    const [a, b] = [budget(), budget()];
    await a.acquire(SUB, 'reads'); // the model: 16 left
    const writes = store.writes;
    await a.observe(SUB, 'reads', { status: 200, remaining: 14 }); // within a block of the model
    await a.observe(SUB, 'reads', { status: 200, remaining: 19 });
    expect(store.writes).toBe(writes);
    expect(row('reads')).toMatchObject({ tokens: 16 });

    // ARM's count leaves out what other instances hold unspent in their blocks: the level keeps room for two.
    await a.observe(SUB, 'reads', { status: 200, remaining: 11 });
    expect(row('reads')).toMatchObject({ tokens: 11 - 2 * BLOCKS.reads });
    await b.acquire(SUB, 'reads'); // takes what is left: 3
    expect(row('reads')).toMatchObject({ tokens: 0 });
    // Corrections are at most one a second.
    clock.advance(500);
    await a.observe(SUB, 'reads', { status: 200, remaining: 0 });
    expect(row('reads')?.tokens).toBe(0);
    expect(store.writes).toBe(writes + 2);
  });

  it('a wait beyond maxInlineWaitMs fails with ThrottledError carrying the wait, without asking the store again', async () => {
    const { store, budget, clock, row } = setup();
    store.put(`${SUB}|reads`, { tokens: -10, at: clock.now(), pausedUntil: 0 }); // others promised tokens ahead
    const a = budget();
    const error = await refusal(a.acquire(SUB, 'reads'));
    expect(error).toMatchObject({ code: 'THROTTLED', transient: true, retryAfterMs: 2_200 });
    const reads = store.reads;
    expect((await refusal(a.acquire(SUB, 'reads'))).retryAfterMs).toBe(2_200);
    expect(store.reads).toBe(reads);
    expect(row('reads')?.tokens).toBe(-10);

    // Within the inline bound, the caller waits for its token instead.
    clock.advance(1_000);
    await a.acquire(SUB, 'reads');
    expect(clock.sleep).toHaveBeenCalledWith(1_200);
  });

  it('a short shortfall is waited for inline, the token promised in the shared bucket', async () => {
    const { store, budget, clock, row } = setup();
    store.put(`${SUB}|writes`, { tokens: -1, at: clock.now(), pausedUntil: 0 });
    await budget().acquire(SUB, 'writes');
    expect(clock.sleep).toHaveBeenCalledWith(1_000); // two tokens short at 2 per second
    expect(row('writes')?.tokens).toBe(-2);
  });

  it('retries when another sharer wrote the bucket in between, and gives up (throttled) if that never stops', async () => {
    const { store, budget, row } = setup();
    let interleaved = 0;
    store.beforeWrite = (id) => {
      if (interleaved++ < 3) store.put(id, { tokens: 10, at: 1_000_000, pausedUntil: 0 });
    };
    await budget().acquire(SUB, 'reads');
    expect(store.refused).toBe(3);
    expect(row('reads')).toMatchObject({ tokens: 6 }); // taken from what the other sharer left

    store.beforeWrite = (id) => store.put(id, { tokens: 10, at: 1_000_000, pausedUntil: 0 });
    const error = await refusal(budget().acquire(SUB, 'writes'));
    expect(error.message).toMatch(/contended/);
  });
});

describe('armBudgetPolicy', () => {
  const response = (status: number, headers: Record<string, string> = {}): PipelineResponse => ({
    status,
    headers: createHttpHeaders(headers),
    request: createPipelineRequest({ url: 'https://example' }),
  });

  it('takes a token of the request’s kind and subscription, and reports ARM’s answer', async () => {
    const budget = { acquire: vi.fn(() => Promise.resolve()), observe: vi.fn(() => Promise.resolve()) };
    const policy = armBudgetPolicy(budget as unknown as SharedArmBudget);
    const send = (method: 'GET' | 'PUT', url: string, answer: PipelineResponse) =>
      policy.sendRequest(createPipelineRequest({ url, method }), () => Promise.resolve(answer));

    await send(
      'GET',
      `https://management.azure.com/subscriptions/${SUB}/providers/Microsoft.Devices/IotHubs?api-version=x`,
      response(200, { 'x-ms-ratelimit-remaining-subscription-reads': '11999' }),
    );
    await send(
      'PUT',
      `https://management.azure.com/subscriptions/${SUB}/resourceGroups/rg/providers/Microsoft.Devices/IotHubs/h`,
      response(429, { 'retry-after': '7' }),
    );
    await send('GET', 'https://management.azure.com/providers/Microsoft.Devices/operations/x', response(200));

    expect(budget.acquire.mock.calls).toEqual([
      [SUB, 'reads'],
      [SUB, 'writes'],
    ]);
    await Promise.resolve();
    expect(budget.observe.mock.calls).toEqual([
      [SUB, 'reads', { status: 200, remaining: 11999 }],
      [SUB, 'writes', { status: 429, retryAfterMs: 7_000 }],
    ]);
  });

  it('reads Retry-After in milliseconds, seconds or as a date', () => {
    expect(retryAfterMs(response(429, { 'retry-after-ms': '1500' }))).toBe(1_500);
    expect(retryAfterMs(response(429, { 'x-ms-retry-after-ms': '250' }))).toBe(250);
    expect(retryAfterMs(response(429, { 'retry-after': '12' }))).toBe(12_000);
    const date = new Date(Date.now() + 60_000).toUTCString();
    expect(retryAfterMs(response(429, { 'retry-after': date }))).toBeGreaterThan(50_000);
    expect(retryAfterMs(response(429))).toBeUndefined();
  });
});
