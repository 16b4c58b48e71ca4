// The least time any client could take to re-point a fleet, given ARM's write budget and the injected costs. It
// is a bound, not an estimate of this app: only what no correct client can avoid is counted.

export interface ArmConditions {
  /** Injected latency of every ARM call. */
  latencyMs: number;
  /** How long a hub's PUT stays InProgress. */
  operationMs: number;
  /** The subscription write bucket: tokens at rest, and tokens refilled per second. */
  burst: number;
  refillPerSecond: number;
}

/**
 * Calls on one hub's path that each cost the full latency: listing finds the hub, the PUT writes it (its token is
 * spent once the call arrives), and one read observes the finished operation. A perfectly timed client sends that
 * read to land as the operation ends, so the operation time counts once, with no poll interval on top.
 */
export const SEQUENTIAL_CALLS = 3;

export const FLOOR_FORMULA =
  `floor = max over subscriptions s of [ ${SEQUENTIAL_CALLS}·L + D + max(0, W_s − B) / R ]` +
  '  (L: latency per ARM call, D: long-running PUT, W_s: hubs written in s, B: write burst, R: refill per second;' +
  ` ${SEQUENTIAL_CALLS}·L = list + PUT + one read that sees the operation end)`;

/** Subscriptions are throttled independently, so the slowest one sets the floor. */
export function floorMs(writesPerSubscription: readonly number[], arm: ArmConditions): number {
  const chain = SEQUENTIAL_CALLS * arm.latencyMs + arm.operationMs;
  const waits = writesPerSubscription.map((writes) => (Math.max(0, writes - arm.burst) / arm.refillPerSecond) * 1000);
  return chain + Math.max(0, ...waits);
}
