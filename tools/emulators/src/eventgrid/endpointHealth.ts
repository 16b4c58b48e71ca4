// Event Grid's "delayed delivery" (delivery-and-retry docs): "As an endpoint experiences delivery failures, Event Grid
// begins to delay the delivery and retry of events to that endpoint. For example, if the first 10 events published to
// an endpoint fail, Event Grid assumes that the endpoint is experiencing issues and delays all subsequent retries,
// and new deliveries, for some time - in some cases up to several hours."
//
// Modelled per event subscription: after `afterFailures` failed attempts in a row the endpoint is unhealthy. Then every
// attempt that falls due (new deliveries and retries alike) is held until the delay ends; one held attempt goes out as
// a probe. A probe that succeeds makes the endpoint healthy and releases everything held; one that fails doubles the
// delay (from `initialDelayMs` up to `maxDelayMs`). The docs give no delays, so these are configurable guesses.

export interface DelayedDeliveryPolicy {
  afterFailures: number;
  initialDelayMs: number;
  maxDelayMs: number;
}

/** Real-time defaults (scaled by the emulator's timeScale): 10 failures, then 1 minute doubling up to 4 hours. */
export const DELAYED_DELIVERY_DEFAULTS: DelayedDeliveryPolicy = {
  afterFailures: 10,
  initialDelayMs: 60_000,
  maxDelayMs: 4 * 3600_000,
};

export interface EndpointHealthReport {
  subscriptionName: string;
  consecutiveFailures: number;
  /** Whether attempts are being held back now. */
  delayed: boolean;
  /** When the next attempt may go out, while delayed. */
  delayedUntil?: string;
  /** Attempts due but held back. */
  held: number;
}

/** Starts an attempt; `probe` says whether it tests an unhealthy endpoint. */
export type AttemptStarter = (probe: boolean) => void;

export class EndpointHealth {
  private consecutiveFailures = 0;
  private delayedUntilMs = 0;
  private probeInFlight = false;
  private readonly held: AttemptStarter[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly subscriptionName: string,
    private readonly policy: DelayedDeliveryPolicy | undefined,
  ) {}

  private get unhealthy(): boolean {
    return this.policy !== undefined && this.consecutiveFailures >= this.policy.afterFailures;
  }

  /** Starts the attempt now, or holds it while the endpoint's deliveries are delayed. */
  admit(start: AttemptStarter): void {
    if (!this.unhealthy) return start(false);
    if (!this.probeInFlight && Date.now() >= this.delayedUntilMs) {
      this.probeInFlight = true;
      return start(true);
    }
    this.held.push(start);
    this.schedule();
  }

  /** The outcome of an attempt that `admit` started. */
  record(succeeded: boolean, probe: boolean): void {
    if (probe) this.probeInFlight = false;
    if (succeeded) {
      this.consecutiveFailures = 0;
      this.delayedUntilMs = 0;
      this.cancelTimer();
      for (const start of this.held.splice(0)) start(false);
      return;
    }
    this.consecutiveFailures += 1;
    const policy = this.policy;
    if (policy && this.unhealthy) {
      const delay = Math.min(
        policy.maxDelayMs,
        policy.initialDelayMs * 2 ** (this.consecutiveFailures - policy.afterFailures),
      );
      this.delayedUntilMs = Math.max(this.delayedUntilMs, Date.now() + delay);
    }
    this.schedule();
  }

  /** A probe that ended without an answer worth counting (e.g. its event expired): let the next one go. */
  abandon(probe: boolean): void {
    if (!probe) return;
    this.probeInFlight = false;
    this.schedule();
  }

  report(): EndpointHealthReport {
    const delayed = this.unhealthy;
    return {
      subscriptionName: this.subscriptionName,
      consecutiveFailures: this.consecutiveFailures,
      delayed,
      ...(delayed ? { delayedUntil: new Date(this.delayedUntilMs).toISOString() } : {}),
      held: this.held.length,
    };
  }

  /** Stops holding anything: every held attempt goes out now (the subscription was replaced). */
  releaseAll(): void {
    this.cancelTimer();
    for (const start of this.held.splice(0)) start(false);
  }

  close(): void {
    this.cancelTimer();
    this.held.length = 0;
  }

  /** Wakes up when the delay ends to send one held attempt as the probe. */
  private schedule(): void {
    if (this.timer || this.probeInFlight || this.held.length === 0) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        if (this.probeInFlight) return;
        const next = this.held.shift();
        if (!next) return;
        if (!this.unhealthy) return next(false);
        this.probeInFlight = true;
        next(true);
      },
      Math.max(0, this.delayedUntilMs - Date.now()),
    );
  }

  private cancelTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
