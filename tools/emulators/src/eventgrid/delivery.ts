// System topic → webhook event subscriptions, the way Event Grid delivers: a validation handshake when the
// subscription is created, one event per request, a response deadline per attempt, retries on a schedule for errors a
// retry can fix, delayed delivery to an endpoint that keeps failing, and dead-lettering (at once for
// 400/401/403/413, else after the last attempt or the time-to-live).
import { randomUUID } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { EventSink, KeyVaultEventGridEvent } from '../contracts';
import { DeliveryLog } from './deliveryLog';
import type { DeadLetterReason, DeliveryAttempt, EventDelivery } from './deliveryLog';
import { EndpointHealth } from './endpointHealth';
import type { DelayedDeliveryPolicy, EndpointHealthReport } from './endpointHealth';
import { asEventGridEvent, outcomeOf, toCloudEvent } from './payload';
import type { DeliveryOutcome } from './payload';
import { EVENT_GRID_ORIGIN, parseSubscription, validateEndpoint } from './subscriptions';
import type { Subscription, WebhookSubscriptionOptions } from './subscriptions';
import { WebhookClient, WebhookTimeoutError } from './webhookClient';

export interface DeliveryPolicy {
  /** Delay before attempt n+1 is retrySchedule[n-1]; the last entry repeats. */
  retrySchedule: readonly number[];
  maxDeliveryAttempts: number;
  eventTimeToLiveMs: number;
  /** An answer later than this fails the attempt (TimedOut); Event Grid waits 30 s. */
  responseTimeoutMs: number;
  /** How long a timed-out request stays open so a late answer is still recorded (not counted). */
  lateAnswerWindowMs: number;
  /** Undefined: never delay deliveries to a failing endpoint. */
  delayedDelivery: DelayedDeliveryPolicy | undefined;
  deadLetterDir: string;
}

export interface DeadLetteredEvent {
  subscriptionName: string;
  eventId: string;
  reason: DeadLetterReason;
  /** `<deadLetterDir>/<SUBSCRIPTION-NAME>/<yyyy>/<M>/<d>/<H>/<uuid>.json`, as Event Grid names dead-letter blobs. */
  filePath: string;
  /** The file holds `[content]`: the event in the subscription's schema plus the dead-letter properties. */
  content: Record<string, unknown>;
}

/** Webhook errors Event Grid does not retry (delivery-and-retry: "Retry schedule"). */
const NOT_RETRIED = new Set([400, 401, 403, 413]);

interface PendingDelivery {
  subscription: Subscription;
  event: KeyVaultEventGridEvent;
  record: EventDelivery;
  publishTime: Date;
  attempts: number;
  /** When the next attempt fell due (epoch ms). */
  dueAtMs: number;
  lastAttemptTime?: Date;
  lastOutcome?: DeliveryOutcome;
  lastHttpStatus?: number | undefined;
}

interface PostResult {
  outcome: DeliveryOutcome;
  httpStatus?: number;
  answeredAt?: Date;
  /** After a timeout: the answer that may still come. */
  late?: Promise<{ httpStatus: number; latencyMs: number } | undefined>;
}

export class WebhookDelivery implements EventSink {
  private readonly subscriptions = new Map<string, Subscription>();
  private readonly health = new Map<string, EndpointHealth>();
  private readonly log = new DeliveryLog();
  private readonly deadLettered: DeadLetteredEvent[] = [];
  private readonly client = new WebhookClient();
  private readonly retryTimers = new Set<NodeJS.Timeout>();
  private readonly running = new Set<Promise<void>>();
  private pending = 0;
  private idleWaiters: (() => void)[] = [];
  private closed = false;

  constructor(private readonly policy: DeliveryPolicy) {}

  /** Creates (or replaces) a webhook subscription once its endpoint passes the schema's validation handshake. */
  async subscribe(options: WebhookSubscriptionOptions): Promise<void> {
    this.assertOpen();
    const subscription = parseSubscription(options);
    await validateEndpoint(this.client, subscription, this.policy.responseTimeoutMs);
    const key = subscription.name.toLowerCase();
    const previous = this.health.get(key);
    this.subscriptions.set(key, subscription);
    this.health.set(key, new EndpointHealth(subscription.name, this.policy.delayedDelivery));
    previous?.releaseAll();
  }

  publish(events: KeyVaultEventGridEvent[]): void {
    this.assertOpen();
    const publishTime = new Date();
    for (const event of events) {
      for (const subscription of this.subscriptions.values()) {
        const wanted = subscription.eventTypes.size === 0 || subscription.eventTypes.has(event.eventType.toLowerCase());
        if (!wanted) continue;
        this.pending += 1;
        const record = this.log.open(subscription.name, event.id, event.eventType, publishTime);
        this.due({ subscription, event, record, publishTime, attempts: 0, dueAtMs: publishTime.getTime() });
      }
    }
  }

  deliveries(): DeliveryAttempt[] {
    return this.log.attempts();
  }

  eventDeliveries(): EventDelivery[] {
    return this.log.events();
  }

  endpointHealth(): EndpointHealthReport[] {
    return [...this.health.values()].map((health) => health.report());
  }

  /** Forgets recorded attempts and settled events (pending ones stay), so a benchmark can measure one phase. */
  clearDeliveries(): void {
    this.log.clear();
  }

  deadLetters(): DeadLetteredEvent[] {
    return [...this.deadLettered];
  }

  /** Resolves once every published event is delivered or dead-lettered (retries included). */
  idle(): Promise<void> {
    if (this.pending === 0 || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Stops retries, aborts requests in flight and waits for dead-letter files being written. */
  async close(): Promise<void> {
    this.closed = true;
    for (const timer of this.retryTimers) clearTimeout(timer);
    this.retryTimers.clear();
    for (const health of this.health.values()) health.close();
    this.client.close();
    await Promise.allSettled([...this.running]);
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('The Event Grid emulator is closed.');
  }

  /** An attempt fell due: it goes out when the endpoint's health lets it. */
  private due(delivery: PendingDelivery): void {
    const health = this.health.get(delivery.subscription.name.toLowerCase());
    if (!health) return this.run(delivery, false);
    health.admit((probe) => this.run(delivery, probe));
  }

  private run(delivery: PendingDelivery, probe: boolean): void {
    if (this.closed) return;
    const running = this.attempt(delivery, probe).catch((error: unknown) => {
      console.error(
        `Event Grid emulator: event ${delivery.event.id} for subscription ${delivery.subscription.name} was dropped: ${
          error instanceof Error ? error.message : String(error)
        }`,
      );
      this.settle();
    });
    this.running.add(running);
    void running.finally(() => this.running.delete(running));
  }

  private settle(): void {
    this.pending -= 1;
    if (this.pending === 0) for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  private async attempt(delivery: PendingDelivery, probe: boolean): Promise<void> {
    const { maxDeliveryAttempts, eventTimeToLiveMs, retrySchedule } = this.policy;
    const health = this.health.get(delivery.subscription.name.toLowerCase());
    // Event Grid checks the time-to-live when an attempt is due (a held first attempt can outlive it too).
    if (Date.now() - delivery.publishTime.getTime() >= eventTimeToLiveMs) {
      health?.abandon(probe);
      return this.deadLetter(delivery, 'TimeToLiveExceeded');
    }
    delivery.attempts += 1;
    delivery.record.attempts = delivery.attempts;
    const attemptedAt = new Date();
    const result = await this.post(delivery);
    if (this.closed) return;
    const { outcome, httpStatus, answeredAt } = result;
    health?.record(outcome === 'Succeeded', probe);
    const notRetried = httpStatus !== undefined && NOT_RETRIED.has(httpStatus);
    const next =
      outcome === 'Succeeded'
        ? 'done'
        : notRetried || delivery.attempts >= maxDeliveryAttempts
          ? 'dead-letter'
          : 'retry';
    const { subscription, event } = delivery;
    const record = this.log.addAttempt({
      subscriptionName: subscription.name,
      eventId: event.id,
      eventType: event.eventType,
      attempt: delivery.attempts,
      dueAt: new Date(delivery.dueAtMs).toISOString(),
      attemptedAt: attemptedAt.toISOString(),
      delayedMs: Math.max(0, attemptedAt.getTime() - delivery.dueAtMs),
      ...(httpStatus === undefined ? {} : { httpStatus }),
      ...(answeredAt
        ? { answeredAt: answeredAt.toISOString(), latencyMs: answeredAt.getTime() - attemptedAt.getTime() }
        : {}),
      outcome,
      next,
    });
    void result.late?.then((late) => {
      if (late) record.lateAnswer = late;
    });
    delivery.lastAttemptTime = attemptedAt;
    delivery.lastOutcome = outcome;
    delivery.lastHttpStatus = httpStatus;

    if (next === 'done') {
      this.log.delivered(delivery.record, answeredAt ?? new Date());
      return this.settle();
    }
    if (next === 'dead-letter') {
      const reason = !notRetried
        ? 'MaxDeliveryAttemptsExceeded'
        : httpStatus === 400
          ? 'UndeliverableDueToHttpBadRequest'
          : 'UndeliverableDueToClientError';
      return this.deadLetter(delivery, reason);
    }
    const delay = retrySchedule[Math.min(delivery.attempts, retrySchedule.length) - 1] ?? 0;
    const timer = setTimeout(() => {
      this.retryTimers.delete(timer);
      delivery.dueAtMs = Date.now();
      this.due(delivery);
    }, delay);
    this.retryTimers.add(timer);
  }

  /**
   * One POST. An answer after `responseTimeoutMs` fails the attempt (TimedOut) as Event Grid's 30 s deadline does; the
   * request stays open up to `lateAnswerWindowMs` so the late answer can still be recorded.
   */
  private async post(delivery: PendingDelivery): Promise<PostResult> {
    const { subscription, event } = delivery;
    const cloudEvents = subscription.schema === 'CloudEventSchemaV1_0';
    const headers: Record<string, string> = {
      'content-type': cloudEvents ? 'application/cloudevents+json; charset=utf-8' : 'application/json; charset=utf-8',
      'aeg-event-type': 'Notification',
      // Event Grid sends the subscription name upper-cased, as in its dead-letter blob names.
      'aeg-subscription-name': subscription.name.toUpperCase(),
      'aeg-delivery-count': String(delivery.attempts - 1),
      'aeg-data-version': event.dataVersion,
      'aeg-metadata-version': event.metadataVersion,
    };
    if (cloudEvents) headers.origin = EVENT_GRID_ORIGIN;
    // Without output batching, Event Grid posts one event: an array of one, or a single structured CloudEvent.
    const body = JSON.stringify(cloudEvents ? toCloudEvent(event) : [asEventGridEvent(event)]);
    const { responseTimeoutMs, lateAnswerWindowMs } = this.policy;
    const sentAt = Date.now();
    const request = this.client.send(
      subscription.endpoint,
      'POST',
      headers,
      body,
      Math.max(responseTimeoutMs, lateAnswerWindowMs),
    );
    const answer = request.then(
      (response) => ({ response, at: new Date() }),
      (error: unknown) => ({ error }),
    );
    let deadlineTimer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'deadline'>((resolve) => {
      deadlineTimer = setTimeout(() => resolve('deadline'), responseTimeoutMs);
    });
    const first = await Promise.race([answer, deadline]);
    clearTimeout(deadlineTimer);
    if (first === 'deadline') {
      const late = answer.then((later) =>
        'response' in later ? { httpStatus: later.response.status, latencyMs: later.at.getTime() - sentAt } : undefined,
      );
      return { outcome: 'TimedOut', late };
    }
    if ('error' in first) {
      return { outcome: first.error instanceof WebhookTimeoutError ? 'TimedOut' : 'SocketError' };
    }
    return { outcome: outcomeOf(first.response.status), httpStatus: first.response.status, answeredAt: first.at };
  }

  private async deadLetter(delivery: PendingDelivery, reason: DeadLetterReason): Promise<void> {
    const { subscription, event } = delivery;
    const lastAttemptTime = delivery.lastAttemptTime?.toISOString();
    // JSON round trip drops lastHttpStatusCode when no response ever came back.
    const content = JSON.parse(
      JSON.stringify(
        subscription.schema === 'CloudEventSchemaV1_0'
          ? {
              ...toCloudEvent(event),
              deadletterreason: reason,
              deliveryattempts: delivery.attempts,
              lastdeliveryoutcome: delivery.lastOutcome,
              lasthttpstatuscode: delivery.lastHttpStatus,
              publishtime: delivery.publishTime.toISOString(),
              lastdeliveryattempttime: lastAttemptTime,
            }
          : {
              ...asEventGridEvent(event),
              deadLetterReason: reason,
              deliveryAttempts: delivery.attempts,
              lastDeliveryOutcome: delivery.lastOutcome,
              lastHttpStatusCode: delivery.lastHttpStatus,
              publishTime: delivery.publishTime.toISOString(),
              lastDeliveryAttemptTime: lastAttemptTime,
            },
      ),
    ) as Record<string, unknown>;
    const now = new Date();
    const folder = path.join(
      this.policy.deadLetterDir,
      subscription.name.toUpperCase(),
      String(now.getUTCFullYear()),
      String(now.getUTCMonth() + 1),
      String(now.getUTCDate()),
      String(now.getUTCHours()),
    );
    await mkdir(folder, { recursive: true });
    const filePath = path.join(folder, `${randomUUID()}.json`);
    await writeFile(filePath, `${JSON.stringify([content], null, 2)}\n`);
    this.deadLettered.push({ subscriptionName: subscription.name, eventId: event.id, reason, filePath, content });
    this.log.deadLettered(delivery.record, reason);
    this.settle();
  }
}
