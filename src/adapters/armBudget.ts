// ARM's request budget, shared by every instance of the app. ARM meters each subscription with token buckets: writes
// 200 burst refilled at 10/s, reads 250 burst at 25/s. Hub moves run as queue steps on however many instances the
// platform scales to, so a budget kept in one process would be spent once per instance. The bucket therefore lives
// in Table Storage (one row per subscription and kind, updated with ETag conditions), and instances take tokens
// from it in small blocks so that the table sees a fraction of ARM's traffic. Why a table: it is already the app's
// storage, it needs no new service or role, and its conditional updates are all a token bucket needs; a lease or a
// singleton instance would serialise the fan-out instead. The model follows ARM's answers: fewer remaining requests
// than modelled (someone else spends the subscription's budget too) lowers it, and a 429 empties it until its
// Retry-After has passed. When a caller would have to wait longer than a moment, it gets a ThrottledError with the
// wait instead: its step goes back on the queue, delayed, rather than holding an instance.
import { ThrottledError } from '../domain/errors';

export type BudgetKind = 'reads' | 'writes';

export interface TokenBucketLimits {
  burst: number;
  refillPerSecond: number;
}

/** ARM's documented per-subscription limits (Azure Resource Manager request limits and throttling). */
export const ARM_LIMITS: Record<BudgetKind, TokenBucketLimits> = {
  reads: { burst: 250, refillPerSecond: 25 },
  writes: { burst: 200, refillPerSecond: 10 },
};

/** One bucket as stored: `tokens` at epoch-ms `at` (negative: requests already promised a future token). */
export interface BucketState {
  tokens: number;
  at: number;
  /** After a 429: no request before this (epoch ms). */
  pausedUntil: number;
}

/** Where buckets live (Table Storage in the app, memory in unit tests); writes are conditional on the ETag read. */
export interface BucketStore {
  read(id: string): Promise<{ state: BucketState; etag: string } | undefined>;
  /** Resolves with the new ETag, or undefined when the row changed since `etag` (or exists, when creating). */
  write(id: string, state: BucketState, etag: string | undefined): Promise<string | undefined>;
}

export interface SharedBudgetOptions {
  limits?: Record<BudgetKind, TokenBucketLimits>;
  /** Tokens an instance takes from the shared bucket at once. */
  blockSize?: Record<BudgetKind, number>;
  /**
   * Tokens never granted. A request reaches ARM some time after its token was granted (queueing, latency, jitter),
   * so ARM's bucket starts and refills a little later than the model's; this margin absorbs that much skew
   * (reserve / refill per second: half a second by default).
   */
  reserve?: Record<BudgetKind, number>;
  /**
   * A request waits this long at most for its token; beyond, it fails with ThrottledError (its step is delayed).
   * By default a write waits longer than a read: a hub's PUT follows a read made for it, which a delayed step would
   * have to make again, spending the scarcer budget.
   */
  maxInlineWaitMs?: number;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

interface LocalBucket {
  tokens: number;
  pausedUntil: number;
  /** The refresh in flight, if any (cleared to undefined when it settles). */
  refreshing?: Promise<number> | undefined;
  /** The shared level seen at the last refresh, less what this instance took since: for ARM's corrections. */
  modelled: number;
  lastCorrection: number;
}

const DEFAULT_RETRY_AFTER_MS = 1_000;
const CONFLICT_RETRIES = 20;
const CORRECTION_INTERVAL_MS = 1_000;

export class SharedArmBudget {
  private readonly local = new Map<string, LocalBucket>();
  private readonly limits: Record<BudgetKind, TokenBucketLimits>;
  private readonly blockSize: Record<BudgetKind, number>;
  private readonly reserve: Record<BudgetKind, number>;
  private readonly maxInlineWaitMs: Record<BudgetKind, number>;
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(
    private readonly store: BucketStore,
    options: SharedBudgetOptions = {},
  ) {
    this.limits = options.limits ?? ARM_LIMITS;
    this.blockSize = options.blockSize ?? { reads: 10, writes: 5 };
    this.reserve = options.reserve ?? { reads: 13, writes: 5 };
    const inline = options.maxInlineWaitMs;
    this.maxInlineWaitMs = inline === undefined ? { reads: 2_000, writes: 15_000 } : { reads: inline, writes: inline };
    this.now = options.now ?? Date.now;
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
  }

  /** Waits for one token of the subscription's bucket, or throws ThrottledError with how long to stay away. */
  async acquire(subscriptionId: string, kind: BudgetKind): Promise<void> {
    const id = bucketId(subscriptionId, kind);
    const local = this.localOf(id);
    for (;;) {
      const paused = local.pausedUntil - this.now();
      if (paused > this.maxInlineWaitMs[kind]) {
        throw new ThrottledError(
          `ARM ${kind} of subscription ${subscriptionId} are throttled; try again later.`,
          paused,
        );
      }
      if (paused > 0) await this.sleep(paused);
      if (local.tokens >= 1) {
        local.tokens--;
        return;
      }
      // One refresh at a time per bucket; a caller that joined another's refresh looks again afterwards.
      const own = !local.refreshing;
      local.refreshing ??= this.refresh(id, kind, local).finally(() => (local.refreshing = undefined));
      const waitMs = await local.refreshing;
      if (own && waitMs > 0) {
        // The refresh promised this caller the bucket's next token, due after `waitMs`.
        await this.sleep(waitMs);
        return;
      }
    }
  }

  /** Learns from ARM's answer: its count of remaining requests, or a 429 and how long to stay away. */
  observe(
    subscriptionId: string,
    kind: BudgetKind,
    answer: { status: number; remaining?: number; retryAfterMs?: number },
  ): Promise<void> {
    const id = bucketId(subscriptionId, kind);
    const local = this.localOf(id);
    const now = this.now();
    if (answer.status === 429) {
      const until = now + (answer.retryAfterMs ?? DEFAULT_RETRY_AFTER_MS);
      local.tokens = 0;
      local.pausedUntil = Math.max(local.pausedUntil, until);
      return this.lower(id, { tokens: 0, at: until, pausedUntil: until });
    }
    const remaining = answer.remaining;
    if (remaining === undefined || remaining >= local.modelled - this.blockSize[kind]) return Promise.resolve();
    if (now - local.lastCorrection < CORRECTION_INTERVAL_MS) return Promise.resolve();
    local.lastCorrection = now;
    // ARM's count leaves out tokens other instances hold unspent in their blocks: keep room for them.
    const corrected = remaining - 2 * this.blockSize[kind];
    local.modelled = corrected;
    return this.lower(id, { tokens: corrected, at: now, pausedUntil: 0 });
  }

  /** Takes a block of tokens; returns 0, or how long the caller waits for the one token promised to it. */
  private async refresh(id: string, kind: BudgetKind, local: LocalBucket): Promise<number> {
    const { burst, refillPerSecond } = this.limits[kind];
    for (let attempt = 0; attempt < CONFLICT_RETRIES; attempt++) {
      const now = this.now();
      const stored = await this.store.read(id);
      const state = stored?.state ?? { tokens: burst, at: now, pausedUntil: 0 };
      if (state.pausedUntil > now) {
        local.pausedUntil = state.pausedUntil;
        return 0;
      }
      const level = levelAt(state, now, this.limits[kind]) - this.reserve[kind];
      const grant = level >= 1 ? Math.min(this.blockSize[kind], Math.floor(level)) : 1;
      const waitMs = level >= 1 ? 0 : ((1 - level) / refillPerSecond) * 1000;
      if (waitMs > this.maxInlineWaitMs[kind]) {
        // Nothing to spare for a while: this instance stays away (its steps are delayed) instead of queueing debt.
        local.pausedUntil = now + waitMs;
        return 0;
      }
      const remaining = level + this.reserve[kind] - grant;
      const written = await this.store.write(id, { tokens: remaining, at: now, pausedUntil: 0 }, stored?.etag);
      if (written === undefined) continue; // another instance took tokens meanwhile: look again
      local.modelled = remaining;
      if (waitMs > 0) return waitMs;
      local.tokens += grant;
      return 0;
    }
    throw new ThrottledError(`The ARM ${kind} budget is contended; try again shortly.`, DEFAULT_RETRY_AFTER_MS);
  }

  /** Lowers the shared bucket to `target` unless it is already lower (best effort: a lost race is harmless). */
  private async lower(id: string, target: BucketState): Promise<void> {
    const kind = id.endsWith('|reads') ? 'reads' : 'writes';
    for (let attempt = 0; attempt < 3; attempt++) {
      const stored = await this.store.read(id).catch(() => undefined);
      const now = this.now();
      if (stored) {
        const current = levelAt(stored.state, now, this.limits[kind]);
        const paused = Math.max(stored.state.pausedUntil, target.pausedUntil);
        if (current <= target.tokens && stored.state.pausedUntil >= target.pausedUntil) return;
        const next = { tokens: Math.min(current, target.tokens), at: Math.max(now, target.at), pausedUntil: paused };
        if ((await this.store.write(id, next, stored.etag).catch(() => undefined)) !== undefined) return;
      } else if ((await this.store.write(id, target, undefined).catch(() => undefined)) !== undefined) return;
    }
  }

  private localOf(id: string): LocalBucket {
    let local = this.local.get(id);
    if (!local) {
      local = { tokens: 0, pausedUntil: 0, modelled: Number.POSITIVE_INFINITY, lastCorrection: 0 };
      this.local.set(id, local);
    }
    return local;
  }
}

function levelAt(state: BucketState, now: number, limits: TokenBucketLimits): number {
  const from = Math.max(state.at, state.pausedUntil);
  const refilled = (Math.max(0, now - from) / 1000) * limits.refillPerSecond;
  return Math.min(limits.burst, state.tokens + refilled);
}

const bucketId = (subscriptionId: string, kind: BudgetKind) => `${subscriptionId.toLowerCase()}|${kind}`;
