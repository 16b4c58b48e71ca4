// ARM's subscription throttling: token buckets per subscription for reads, writes and deletes (Azure Resource
// Manager "request limits and throttling", token-bucket algorithm), with the remaining-requests headers and the 429
// ARM answers when a bucket is empty.
import * as z from 'zod';
import { ArmError } from './errors';
import { parseInput } from './faults';

/** Which of ARM's per-subscription buckets a request draws from. */
export type RequestKind = 'read' | 'write' | 'delete';

/** ARM's documented subscription limits (request limits and throttling, token-bucket algorithm). */
export const ARM_SUBSCRIPTION_LIMITS: Record<RequestKind, { burst: number; refillPerSecond: number }> = {
  read: { burst: 250, refillPerSecond: 25 },
  write: { burst: 200, refillPerSecond: 10 },
  delete: { burst: 200, refillPerSecond: 10 },
};

const bucketSchema = z.union([
  z.boolean(),
  z.strictObject({ burst: z.number().int().min(1).optional(), refillPerSecond: z.number().positive().optional() }),
]);

/**
 * `enabled` switches ARM's subscription throttling on or off. Writes and deletes are throttled once it is on;
 * reads only with `reads` (off unless asked for, so callers written before read throttling existed see the same
 * answers). Each bucket is `true` (ARM's limits), `false`, or `{ burst?, refillPerSecond? }`. The top-level
 * `burst`/`refillPerSecond` are the write bucket's, as before.
 */
const throttlingSchema = z.strictObject({
  enabled: z.boolean(),
  burst: z.number().int().min(1).optional(),
  refillPerSecond: z.number().positive().optional(),
  writes: bucketSchema.optional(),
  deletes: bucketSchema.optional(),
  reads: bucketSchema.optional(),
});
export type ThrottlingSettings = z.input<typeof throttlingSchema>;

interface BucketLimits {
  burst: number;
  refillPerSecond: number;
}

function bucketLimits(
  kind: RequestKind,
  setting: z.output<typeof bucketSchema> | undefined,
  fallback: boolean,
): BucketLimits | undefined {
  const wanted = setting ?? fallback;
  if (wanted === false) return undefined;
  const arm = ARM_SUBSCRIPTION_LIMITS[kind];
  if (wanted === true) return { ...arm };
  return { burst: wanted.burst ?? arm.burst, refillPerSecond: wanted.refillPerSecond ?? arm.refillPerSecond };
}

interface TokenBucket {
  tokens: number;
  updatedAtMs: number;
}

export class SubscriptionThrottle {
  private limits: Partial<Record<RequestKind, BucketLimits>> = {};
  private readonly buckets = new Map<string, TokenBucket>();

  set(input: unknown): void {
    const settings = parseInput(throttlingSchema, input);
    this.clear();
    if (!settings.enabled) return;
    const legacyWrites = {
      ...(settings.burst ? { burst: settings.burst } : {}),
      ...(settings.refillPerSecond ? { refillPerSecond: settings.refillPerSecond } : {}),
    };
    const writes = settings.writes ?? (Object.keys(legacyWrites).length > 0 ? legacyWrites : undefined);
    const limits: Partial<Record<RequestKind, BucketLimits>> = {};
    const wanted = [
      ['write', writes, true],
      ['delete', settings.deletes, true],
      ['read', settings.reads, false],
    ] as const;
    for (const [kind, setting, fallback] of wanted) {
      const bucket = bucketLimits(kind, setting, fallback);
      if (bucket) limits[kind] = bucket;
    }
    this.limits = limits;
  }

  /** The buckets in force (empty while throttling is off). */
  settings(): Partial<Record<RequestKind, BucketLimits>> {
    return structuredClone(this.limits);
  }

  clear(): void {
    this.limits = {};
    this.buckets.clear();
  }

  /**
   * Takes a token for the request: returns the remaining-requests header to answer with (none while this kind is
   * not throttled), or throws ARM's 429 with Retry-After when the bucket is empty.
   */
  take(kind: RequestKind, subscriptionId: string, actor: string, nowMs: number): Record<string, string> {
    const limits = this.limits[kind];
    if (!limits) return {};
    const header = `x-ms-ratelimit-remaining-subscription-${kind}s`;
    const key = `${kind}:${subscriptionId.toLowerCase()}`;
    const bucket = this.buckets.get(key) ?? { tokens: limits.burst, updatedAtMs: nowMs };
    const refilled = ((nowMs - bucket.updatedAtMs) / 1000) * limits.refillPerSecond;
    bucket.tokens = Math.min(limits.burst, bucket.tokens + Math.max(0, refilled));
    bucket.updatedAtMs = nowMs;
    this.buckets.set(key, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return { [header]: String(Math.floor(bucket.tokens)) };
    }
    const retryAfterSeconds = Math.ceil((1 - bucket.tokens) / limits.refillPerSecond);
    throw new ArmError(
      429,
      'SubscriptionRequestsThrottled',
      `Number of '${kind}' requests for subscription '${subscriptionId}' actor '${actor}' exceeded. ` +
        `Please try again after '${retryAfterSeconds}' seconds after additional tokens are available. ` +
        'Refer to https://aka.ms/arm-throttling',
      { 'retry-after': String(retryAfterSeconds), [header]: '0' },
    );
  }
}
