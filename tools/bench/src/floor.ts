// The least time any correct client could take to re-point a fleet, given ARM's budgets, the injected latency and
// the update time. It is a bound, not an estimate of this app: only what no client that verifies every hub can avoid
// is counted.

export interface ArmConditions {
  /** Injected latency of every ARM call. */
  latencyMs: number;
  /** How long a hub's PUT stays InProgress. */
  operationMs: number;
  /** Retry-After on the PUT and the operation status, in seconds. */
  retryAfterSeconds: number;
  /** ARM's subscription buckets: tokens at rest, refilled per second. Reads unthrottled when absent. */
  writes: { burst: number; refillPerSecond: number };
  reads?: { burst: number; refillPerSecond: number };
  /** Hubs per listing page. */
  pageSize: number;
}

export const FLOOR_FORMULA =
  'floor = max over subscriptions s of max[ (p_s+2)·L + max((n_s−Bw)⁺/Rw, (p_s+n_s−Br)⁺/Rr) + D + 2·L , ' +
  'D + (2·n_s − Br)⁺/Rr ]  (n_s hubs in s, p_s listing pages, L latency per ARM call, D hub update; writes Bw burst ' +
  '+ Rw/s, reads Br + Rr/s. The chain: list, read, PUT, the update, a read that sees it end, the verifying read. ' +
  'Reads: each hub is read before its PUT; after the updates, each needs a read that sees the end and one that ' +
  'verifies, and by then at most Br reads are banked)';

/** Subscriptions are throttled independently, so the slowest one sets the floor. */
export function floorMs(hubsPerSubscription: readonly number[], arm: ArmConditions): number {
  const reads = arm.reads ?? { burst: Number.POSITIVE_INFINITY, refillPerSecond: Number.POSITIVE_INFINITY };
  const beyond = (needed: number, bucket: { burst: number; refillPerSecond: number }) =>
    Number.isFinite(bucket.burst) ? (Math.max(0, needed - bucket.burst) / bucket.refillPerSecond) * 1000 : 0;
  const perSubscription = hubsPerSubscription.map((n) => {
    const pages = Math.max(1, Math.ceil(n / arm.pageSize));
    const lastPut = Math.max(beyond(n, arm.writes), beyond(pages + n, reads));
    const chain = (pages + 2) * arm.latencyMs + lastPut + arm.operationMs + 2 * arm.latencyMs;
    const afterUpdates = arm.operationMs + beyond(2 * n, reads);
    return Math.max(chain, afterUpdates);
  });
  return Math.max(0, ...perSubscription);
}
