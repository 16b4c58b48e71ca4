// Pacing of ARM writes, per subscription. ARM meters writes with a token bucket per subscription (and principal, per
// region): 200 tokens, refilled at 10 a second. A fan-out that writes faster only collects 429s, and a 429 that
// every waiting request answers by retrying after the same Retry-After is a storm that spends the refill it waited
// for. So every write asks this budget for a send time first. The budget models ARM's bucket conservatively and
// grants at its pace, believes ARM when it reports fewer remaining writes than expected (someone else writes in the
// subscription too), and after a 429 grants nothing until Retry-After has passed, then resumes at the refill rate,
// one write at a time.
import { RestError } from '@azure/core-rest-pipeline';
import type { PipelinePolicy, PipelineRequest, PipelineResponse } from '@azure/core-rest-pipeline';

type Signal = PipelineRequest['abortSignal'];

export interface TokenBucketLimits {
  burst: number;
  refillPerSecond: number;
}

/** ARM's documented subscription write limits (Azure Resource Manager request limits and throttling). */
export const ARM_SUBSCRIPTION_WRITES: TokenBucketLimits = { burst: 200, refillPerSecond: 10 };

export const REMAINING_WRITES_HEADER = 'x-ms-ratelimit-remaining-subscription-writes';

/** A 429 without Retry-After pauses the subscription's writes this long. */
const DEFAULT_THROTTLE_PAUSE_MS = 1000;

/** Permission to send one write at `sendAt` (epoch ms), valid while the budget's schedule stands. */
export interface WriteTicket {
  subscriptionId: string;
  sendAt: number;
  /** Schedules are redone after a 429: a ticket from an earlier schedule is void. */
  schedule: number;
  /**
   * A provisional ticket only says when to ask again: the write needs refilled tokens, and the refill has not
   * started yet (see Bucket.refilling).
   */
  provisional: boolean;
  /** The tokens the budget expects the bucket to hold right after this write. */
  expectedRemaining: number;
  /** How many writes the budget had granted in the subscription, this one included. */
  sequence: number;
  /** Writes spent elsewhere that the budget had already taken off when it granted this one. */
  debitedAtGrant: number;
}

interface Bucket {
  /** Tokens at time `at`; `at` may lie in the future (writes already scheduled); tokens may be fractional. */
  tokens: number;
  at: number;
  /**
   * ARM's bucket refills from the moment our writes start reaching it, and not at all while it is full. Ours may
   * only count refill from a moment known to be no earlier: the first answer after it was last full. Counting from
   * the moment we granted the writes instead would credit refill ARM never gave whenever the writes queue on their
   * way out (a busy process, a connection pool).
   */
  refilling: boolean;
  schedule: number;
  pausedUntil: number;
  granted: number;
  /** Writes spent elsewhere (by other clients) already taken off the tokens since the bucket was last full. */
  debited: number;
}

export class ArmWriteBudget {
  private readonly buckets = new Map<string, Bucket>();

  /**
   * No safety margin is kept: the model never runs ahead of ARM's bucket (its refill starts no earlier, and a write
   * reaches ARM only after it was granted, when ARM has refilled at least as much).
   */
  constructor(private readonly limits: TokenBucketLimits = ARM_SUBSCRIPTION_WRITES) {}

  /** Schedules one write: the earliest time the subscription's bucket has a token for it. */
  reserve(subscriptionId: string, now: number): WriteTicket {
    const bucket = this.bucketOf(subscriptionId, now);
    const start = Math.max(now, bucket.at);
    const level = this.levelAt(bucket, start);
    if (level >= this.limits.burst) {
      Object.assign(bucket, { tokens: this.limits.burst, at: start, refilling: false, debited: 0 });
    }
    const ticket = (sendAt: number, provisional = false): WriteTicket => ({
      subscriptionId,
      sendAt,
      schedule: bucket.schedule,
      provisional,
      expectedRemaining: bucket.tokens,
      sequence: bucket.granted,
      debitedAtGrant: bucket.debited,
    });
    const missing = 1 - level;
    if (missing <= 0) {
      Object.assign(bucket, { tokens: level - 1, at: start, granted: bucket.granted + 1 });
      return ticket(start);
    }
    const tokenMs = 1000 / this.limits.refillPerSecond;
    if (!bucket.refilling) return ticket(now + tokenMs, true);
    const sendAt = start + missing * tokenMs;
    Object.assign(bucket, { tokens: this.levelAt(bucket, sendAt) - 1, at: sendAt, granted: bucket.granted + 1 });
    return ticket(sendAt);
  }

  /** Whether the ticket may be used now that its time has come (not provisional, and no 429 reset the schedule). */
  isCurrent(ticket: WriteTicket): boolean {
    return !ticket.provisional && this.buckets.get(key(ticket.subscriptionId))?.schedule === ticket.schedule;
  }

  /** Gives back the token of a write that will not be sent. */
  cancel(ticket: WriteTicket): void {
    const bucket = this.buckets.get(key(ticket.subscriptionId));
    if (bucket && this.isCurrent(ticket)) bucket.tokens = Math.min(this.limits.burst, bucket.tokens + 1);
  }

  /** Learns from ARM's answer to a write: its count of remaining writes, or a 429 and how long to stay away. */
  settle(
    ticket: WriteTicket,
    now: number,
    answer: { status: number; remaining?: number; retryAfterMs?: number | undefined },
  ): void {
    const bucket = this.bucketOf(ticket.subscriptionId, now);
    if (answer.status === 429) {
      bucket.pausedUntil = Math.max(bucket.pausedUntil, now + (answer.retryAfterMs ?? DEFAULT_THROTTLE_PAUSE_MS));
      Object.assign(bucket, {
        tokens: 0,
        at: bucket.pausedUntil,
        refilling: true,
        schedule: bucket.schedule + 1,
        debited: 0,
      });
      return;
    }
    if (!bucket.refilling) Object.assign(bucket, { at: Math.max(now, bucket.at), refilling: true });
    if (answer.remaining === undefined || !this.isCurrent(ticket)) return;
    // ARM counts whole tokens. Fewer than expected means writes this budget did not grant were spent meanwhile,
    // unless writes granted after this one reached ARM first: those are not counted against anyone. The answers of
    // several writes report the same shortfall, so only what exceeds the shortfall already debited is taken off
    // (debiting it once per answer would starve the subscription).
    const overtaken = bucket.granted - ticket.sequence;
    const spentElsewhere = Math.floor(ticket.expectedRemaining) - answer.remaining - overtaken + ticket.debitedAtGrant;
    if (spentElsewhere > bucket.debited) {
      bucket.tokens -= spentElsewhere - bucket.debited;
      bucket.debited = spentElsewhere;
    }
  }

  private bucketOf(subscriptionId: string, now: number): Bucket {
    const id = key(subscriptionId);
    let bucket = this.buckets.get(id);
    if (!bucket) {
      bucket = {
        tokens: this.limits.burst,
        at: now,
        refilling: false,
        schedule: 0,
        pausedUntil: 0,
        granted: 0,
        debited: 0,
      };
      this.buckets.set(id, bucket);
    }
    return bucket;
  }

  private levelAt(bucket: Bucket, time: number): number {
    if (!bucket.refilling) return bucket.tokens;
    const refilled = (Math.max(0, time - bucket.at) / 1000) * this.limits.refillPerSecond;
    return Math.min(this.limits.burst, bucket.tokens + refilled);
  }
}

const key = (subscriptionId: string) => subscriptionId.toLowerCase();

/** ARM meters these as writes (deletes have a bucket of their own). */
const WRITE_METHODS = new Set(['PUT', 'PATCH', 'POST']);
const SUBSCRIPTION_IN_PATH = /^\/subscriptions\/([^/]+)/i;

export interface WriteBudgetPolicyOptions {
  /** A write that would have to wait longer than this for its turn fails as throttled (transient) instead. */
  maxWaitMs: number;
  now?: () => number;
  sleep?: (ms: number, signal?: Signal) => Promise<void>;
}

/**
 * The pipeline policy that makes every ARM write wait for its turn in its subscription's budget, feeds ARM's
 * answers back, and resends a write ARM throttled once its new turn comes. Placed after the SDK's retry policy, it
 * is the only place a 429 on a write is handled: the SDK never sees one, so it never retries one on its own.
 */
export function armWriteBudgetPolicy(budget: ArmWriteBudget, options: WriteBudgetPolicyOptions): PipelinePolicy {
  const now = options.now ?? Date.now;
  const sleep = options.sleep ?? abortableSleep;
  return {
    name: 'armWriteBudgetPolicy',
    async sendRequest(request, next) {
      const subscriptionId = WRITE_METHODS.has(request.method)
        ? SUBSCRIPTION_IN_PATH.exec(new URL(request.url).pathname)?.[1]
        : undefined;
      if (!subscriptionId) return next(request);
      const deadline = now() + options.maxWaitMs;
      for (;;) {
        const ticket = budget.reserve(subscriptionId, now());
        if (ticket.sendAt > deadline) {
          budget.cancel(ticket);
          throw new RestError(
            `Writes to subscription ${subscriptionId} are throttled beyond ${options.maxWaitMs} ms; try again later.`,
            { statusCode: 429, code: 'SubscriptionRequestsThrottled', request },
          );
        }
        const wait = ticket.sendAt - now();
        if (wait > 0) await sleep(wait, request.abortSignal);
        if (!budget.isCurrent(ticket)) continue; // a 429 meanwhile: take a turn in the new schedule
        const response = await next(request);
        const remaining = Number(response.headers.get(REMAINING_WRITES_HEADER) ?? Number.NaN);
        budget.settle(ticket, now(), {
          status: response.status,
          ...(Number.isInteger(remaining) ? { remaining } : {}),
          ...(response.status === 429 ? { retryAfterMs: retryAfterMs(response) } : {}),
        });
        if (response.status !== 429) return response;
      }
    },
  };
}

/** Retry-After in milliseconds (`retry-after-ms`, `x-ms-retry-after-ms`, or `retry-after` in seconds or as a date). */
export function retryAfterMs(response: PipelineResponse): number | undefined {
  for (const name of ['retry-after-ms', 'x-ms-retry-after-ms']) {
    const ms = Number(response.headers.get(name) ?? Number.NaN);
    if (Number.isFinite(ms)) return Math.max(0, ms);
  }
  const value = response.headers.get('retry-after');
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(value);
  return Number.isFinite(date) ? Math.max(0, date - Date.now()) : undefined;
}

function abortableSleep(ms: number, signal?: Signal): Promise<void> {
  const aborted = () =>
    Object.assign(new Error('The request was aborted while waiting for its ARM write turn.'), { name: 'AbortError' });
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(aborted());
    const onAbort = () => {
      clearTimeout(timer);
      reject(aborted());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort);
  });
}
