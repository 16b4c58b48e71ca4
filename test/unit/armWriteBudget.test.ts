// The ARM write budget on a clock the test moves by hand: when writes may go, what ARM's answers change, and how the
// pipeline policy around it handles a throttled write. Times are the model's decisions, not measurements.
import { createHttpHeaders, createPipelineRequest, isRestError } from '@azure/core-rest-pipeline';
import type { PipelineRequest, PipelineResponse, SendRequest } from '@azure/core-rest-pipeline';
import { describe, expect, it } from 'vitest';
import { ArmWriteBudget, armWriteBudgetPolicy } from '../../src/adapters/armWriteBudget';
import type { WriteTicket } from '../../src/adapters/armWriteBudget';

const SUB = '11111111-1111-1111-1111-111111111111';
const OTHER = '22222222-2222-2222-2222-222222222222';
const LIMITS = { burst: 10, refillPerSecond: 10 }; // one token per 100 ms

/** Reserves `count` writes at `now`; returns their send times. */
function reserveMany(budget: ArmWriteBudget, count: number, now: number, sub = SUB): WriteTicket[] {
  return Array.from({ length: count }, () => budget.reserve(sub, now));
}

describe('ArmWriteBudget', () => {
  it('grants the burst at once; more waits until ARM has answered, then one write per token refilled', () => {
    const budget = new ArmWriteBudget(LIMITS);
    const burst = reserveMany(budget, 10, 0);
    expect(burst.map((t) => t.sendAt)).toEqual(Array(10).fill(0));
    expect(burst.every((t) => budget.isCurrent(t))).toBe(true);

    // No answer yet: ARM's refill may not have started (the writes can still be on their way), so nothing is
    // promised, only a time to ask again.
    const early = budget.reserve(SUB, 0);
    expect(early.provisional).toBe(true);
    expect(budget.isCurrent(early)).toBe(false);

    // The first answer at t=500 starts the refill clock there, not at t=0 when the writes were granted.
    budget.settle(burst[0]!, 500, { status: 201, remaining: 9 });
    expect(reserveMany(budget, 3, 500).map((t) => t.sendAt)).toEqual([600, 700, 800]);
  });

  it('keeps subscriptions apart, whatever the case of their ids', () => {
    const budget = new ArmWriteBudget(LIMITS);
    reserveMany(budget, 10, 0, SUB);
    expect(budget.reserve(SUB.toUpperCase(), 0).provisional).toBe(true);
    expect(reserveMany(budget, 10, 0, OTHER).every((t) => t.sendAt === 0 && !t.provisional)).toBe(true);
  });

  it('after a 429 voids the schedule, waits out Retry-After, then resumes one write at a time', () => {
    const budget = new ArmWriteBudget(LIMITS);
    const burst = reserveMany(budget, 10, 0);
    budget.settle(burst[0]!, 50, { status: 201, remaining: 9 });
    const waiting = reserveMany(budget, 3, 50); // due at 150, 250, 350
    budget.settle(burst[1]!, 60, { status: 429, retryAfterMs: 2000 });

    expect(waiting.some((t) => budget.isCurrent(t))).toBe(false);
    // The bucket is empty at 2060; then one write per token, 100 ms each.
    expect(reserveMany(budget, 3, 100).map((t) => t.sendAt)).toEqual([2160, 2260, 2360]);
  });

  it('lowers its estimate when ARM reports fewer remaining writes than expected, not for overtaken answers', () => {
    const overtaken = new ArmWriteBudget(LIMITS);
    const a = reserveMany(overtaken, 10, 0);
    // The 1st write's answer says 1 left: the 9 writes granted after it reached ARM first. Nothing to learn.
    overtaken.settle(a[0]!, 50, { status: 201, remaining: 1 });
    expect(overtaken.reserve(SUB, 50).sendAt).toBe(150);

    const shared = new ArmWriteBudget(LIMITS);
    const b = reserveMany(shared, 5, 0); // expects 5 left after the 5th
    // ARM says 2 left after the 5th: someone else spent 3. Those come out of this budget's next grants.
    shared.settle(b[4]!, 50, { status: 201, remaining: 2 });
    expect(reserveMany(shared, 3, 50).map((t) => t.sendAt)).toEqual([50, 50, 150]);
  });

  it('takes a shortfall reported by several answers off once, not once per answer', () => {
    const budget = new ArmWriteBudget(LIMITS);
    const tickets = reserveMany(budget, 5, 0); // expects 9, 8, 7, 6, 5 left
    // Someone else spent 4: each answer reports the same shortfall.
    tickets.forEach((t, i) => budget.settle(t, 50, { status: 201, remaining: 5 - i }));
    // 5 expected left, 4 spent elsewhere: one write now, the next after one token's refill.
    expect(reserveMany(budget, 2, 50).map((t) => t.sendAt)).toEqual([50, 150]);
  });

  it('gives back the token of a write that is not sent', () => {
    const budget = new ArmWriteBudget(LIMITS);
    const tickets = reserveMany(budget, 10, 0);
    budget.settle(tickets[0]!, 0, { status: 201, remaining: 9 });
    const late = budget.reserve(SUB, 0);
    expect(late.sendAt).toBe(100);
    budget.cancel(late);
    expect(budget.reserve(SUB, 0).sendAt).toBe(100);
  });

  it('stops counting refill once the bucket is full again, as ARM does', () => {
    const budget = new ArmWriteBudget(LIMITS);
    const first = reserveMany(budget, 10, 0);
    budget.settle(first[0]!, 50, { status: 201, remaining: 9 });
    // Long idle: full again. The next burst's refill starts only with its own first answer.
    expect(reserveMany(budget, 10, 60_000).every((t) => t.sendAt === 60_000)).toBe(true);
    expect(budget.reserve(SUB, 60_000).provisional).toBe(true);
  });
});

describe('armWriteBudgetPolicy', () => {
  function harness(answers: { status: number; headers?: Record<string, string> }[], maxWaitMs = 60_000) {
    let now = 0;
    const sent: { method: string; at: number }[] = [];
    const next: SendRequest = (request: PipelineRequest) => {
      sent.push({ method: request.method, at: now });
      const answer = answers.shift() ?? { status: 200 };
      return Promise.resolve<PipelineResponse>({
        request,
        status: answer.status,
        headers: createHttpHeaders(answer.headers ?? {}),
      });
    };
    const policy = armWriteBudgetPolicy(new ArmWriteBudget(LIMITS), {
      maxWaitMs,
      now: () => now,
      sleep: (ms) => {
        now += ms;
        return Promise.resolve();
      },
    });
    const send = (method: 'GET' | 'PUT', path = `/subscriptions/${SUB}/resourceGroups/rg/providers/x/y`) =>
      policy.sendRequest(createPipelineRequest({ url: `https://management.azure.com${path}`, method }), next);
    return { send, sent, clock: () => now };
  }

  it('resends a throttled write once its new turn comes; the caller only sees the final answer', async () => {
    const { send, sent } = harness([
      { status: 429, headers: { 'retry-after': '3', 'x-ms-ratelimit-remaining-subscription-writes': '0' } },
      { status: 201, headers: { 'x-ms-ratelimit-remaining-subscription-writes': '5' } },
    ]);
    const response = await send('PUT');
    expect(response.status).toBe(201);
    // Sent at 0, throttled; resent after Retry-After (3000) plus the time ARM needs to refill one token (100).
    expect(sent).toEqual([
      { method: 'PUT', at: 0 },
      { method: 'PUT', at: 3100 },
    ]);
  });

  it('leaves reads and calls outside a subscription alone', async () => {
    const { send, sent } = harness([{ status: 429, headers: { 'retry-after': '3' } }]);
    expect((await send('GET')).status).toBe(429);
    expect((await send('PUT', '/providers/Microsoft.Devices/operations')).status).toBe(200);
    expect(sent).toHaveLength(2);
  });

  it('fails a write whose turn is further away than it may wait, as throttled (transient), without sending it', async () => {
    const { send, sent } = harness([{ status: 429, headers: { 'retry-after': '600' } }], 60_000);
    const error = await send('PUT').catch((e: unknown) => e);
    expect(isRestError(error) && error.statusCode).toBe(429);
    expect(sent).toHaveLength(1);
  });
});
