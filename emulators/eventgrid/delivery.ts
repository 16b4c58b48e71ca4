// System topic → webhook event subscriptions, the way Event Grid delivers: a validation handshake when the
// subscription is created, one event per request, retries on a schedule for errors a retry can fix, and
// dead-lettering (at once for 400/401/403/413, else after the last attempt or the time-to-live).
import { randomUUID } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { EventSink, KeyVaultEventGridEvent } from '../contracts';
import { isLoopbackHost, redactedEndpoint, WebhookClient, WebhookTimeoutError } from './webhook-client';
import type { WebhookResponse } from './webhook-client';

export type DeliverySchema = 'EventGridSchema' | 'CloudEventSchemaV1_0';

export interface WebhookSubscriptionOptions {
  /** Event subscription name: 3-64 letters, digits or hyphens. */
  name: string;
  /** An http(s) URL on a loopback host. */
  endpointUrl: string;
  /** Event Grid's includedEventTypes (case-insensitive); every type when absent or empty. */
  eventTypes?: string[];
  schema: DeliverySchema;
}

export interface DeliveryPolicy {
  /** Delay before attempt n+1 is retrySchedule[n-1]; the last entry repeats. */
  retrySchedule: readonly number[];
  maxDeliveryAttempts: number;
  eventTimeToLiveMs: number;
  deadLetterDir: string;
}

/** Event Grid's lastDeliveryOutcome values (for webhooks), plus Succeeded. */
export type DeliveryOutcome =
  | 'Succeeded'
  | 'BadRequest'
  | 'Unauthorized'
  | 'Forbidden'
  | 'NotFound'
  | 'TimedOut'
  | 'PayloadTooLarge'
  | 'Busy'
  | 'GenericError'
  | 'SocketError';

export interface DeliveryAttempt {
  subscriptionName: string;
  eventId: string;
  eventType: string;
  /** 1 for the first attempt; the request's aeg-delivery-count header is this minus one. */
  attempt: number;
  attemptedAt: string;
  /** Absent when no HTTP response came back (connection error, timeout). */
  httpStatus?: number;
  outcome: DeliveryOutcome;
  /** What happens to the event next. */
  next: 'done' | 'retry' | 'dead-letter';
}

export type DeadLetterReason =
  | 'MaxDeliveryAttemptsExceeded'
  | 'TimeToLiveExceeded'
  | 'UndeliverableDueToHttpBadRequest'
  | 'UndeliverableDueToClientError';

export interface DeadLetteredEvent {
  subscriptionName: string;
  eventId: string;
  reason: DeadLetterReason;
  /** `<deadLetterDir>/<SUBSCRIPTION-NAME>/<yyyy>/<M>/<d>/<H>/<uuid>.json`, as Event Grid names dead-letter blobs. */
  filePath: string;
  /** The file holds `[content]`: the event in the subscription's schema plus the dead-letter properties. */
  content: Record<string, unknown>;
}

/** A subscription was refused because its endpoint did not complete the validation handshake. */
export class SubscriptionValidationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SubscriptionValidationError';
  }
}

/** Event Grid waits 30 s for a response. */
const RESPONSE_DEADLINE_MS = 30_000;
const EVENT_GRID_ORIGIN = 'eventgrid.azure.net';
const SUBSCRIPTION_NAME = /^[A-Za-z0-9-]{3,64}$/;
/** Webhook errors Event Grid does not retry (delivery-and-retry: "Retry schedule"). */
const NOT_RETRIED = new Set([400, 401, 403, 413]);
const VALIDATION_EVENT_TOPIC = '/subscriptions/00000000-0000-0000-0000-000000000000';

interface Subscription {
  name: string;
  endpoint: URL;
  eventTypes: Set<string>;
  schema: DeliverySchema;
}

interface PendingDelivery {
  subscription: Subscription;
  event: KeyVaultEventGridEvent;
  publishTime: Date;
  attempts: number;
  lastAttemptTime?: Date;
  lastOutcome?: DeliveryOutcome;
  lastHttpStatus?: number;
}

function parseSubscription(options: WebhookSubscriptionOptions): Subscription {
  const { name, endpointUrl, eventTypes = [], schema } = options;
  if (typeof name !== 'string' || !SUBSCRIPTION_NAME.test(name)) {
    throw new Error(`subscribe: name ${JSON.stringify(name)} must be 3-64 letters, digits or hyphens.`);
  }
  let endpoint: URL;
  try {
    endpoint = new URL(endpointUrl);
  } catch {
    throw new Error(`subscribe (${name}): endpointUrl is not an absolute URL.`);
  }
  if (endpoint.protocol !== 'http:' && endpoint.protocol !== 'https:') {
    throw new Error(`subscribe (${name}): endpointUrl must use http or https, not ${endpoint.protocol}.`);
  }
  if (!isLoopbackHost(endpoint.hostname)) {
    throw new Error(
      `subscribe (${name}): endpointUrl must be on a loopback host (localhost, 127.0.0.1, ::1), not ${endpoint.hostname}.`,
    );
  }
  if (schema !== 'EventGridSchema' && schema !== 'CloudEventSchemaV1_0') {
    throw new Error(
      `subscribe (${name}): schema ${JSON.stringify(schema)} must be "EventGridSchema" or "CloudEventSchemaV1_0".`,
    );
  }
  if (!Array.isArray(eventTypes) || eventTypes.some((type) => typeof type !== 'string' || type.trim() === '')) {
    throw new Error(`subscribe (${name}): eventTypes must be a list of non-empty event type names.`);
  }
  return { name, endpoint, eventTypes: new Set(eventTypes.map((type) => type.toLowerCase())), schema };
}

/** Event Grid's EventGrid-to-CloudEvents mapping (dataVersion travels as `dataschema: "#<dataVersion>"`). */
function toCloudEvent(event: KeyVaultEventGridEvent): Record<string, unknown> {
  return {
    id: event.id,
    source: event.topic,
    specversion: '1.0',
    type: event.eventType,
    dataschema: `#${event.dataVersion}`,
    subject: event.subject,
    time: event.eventTime,
    data: event.data,
  };
}

function asEventGridEvent(event: KeyVaultEventGridEvent): Record<string, unknown> {
  const { id, topic, subject, eventType, eventTime, data, dataVersion, metadataVersion } = event;
  return { id, topic, subject, eventType, eventTime, data, dataVersion, metadataVersion };
}

function outcomeOf(status: number): DeliveryOutcome {
  if (status >= 200 && status <= 204) return 'Succeeded';
  switch (status) {
    case 400:
      return 'BadRequest';
    case 401:
      return 'Unauthorized';
    case 403:
      return 'Forbidden';
    case 404:
      return 'NotFound';
    case 408:
      return 'TimedOut';
    case 413:
      return 'PayloadTooLarge';
    case 429:
    case 503:
      return 'Busy';
    default:
      return 'GenericError';
  }
}

export class WebhookDelivery implements EventSink {
  private readonly subscriptions = new Map<string, Subscription>();
  private readonly attempts: DeliveryAttempt[] = [];
  private readonly deadLettered: DeadLetteredEvent[] = [];
  private readonly client = new WebhookClient(RESPONSE_DEADLINE_MS);
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
    if (subscription.schema === 'EventGridSchema') await this.validationEventHandshake(subscription);
    else await this.abuseProtectionHandshake(subscription);
    this.subscriptions.set(subscription.name.toLowerCase(), subscription);
  }

  publish(events: KeyVaultEventGridEvent[]): void {
    this.assertOpen();
    const publishTime = new Date();
    for (const event of events) {
      for (const subscription of this.subscriptions.values()) {
        const wanted = subscription.eventTypes.size === 0 || subscription.eventTypes.has(event.eventType.toLowerCase());
        if (!wanted) continue;
        this.pending += 1;
        this.run({ subscription, event, publishTime, attempts: 0 });
      }
    }
  }

  deliveries(): DeliveryAttempt[] {
    return this.attempts.map((attempt) => ({ ...attempt }));
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
    this.client.close();
    await Promise.allSettled([...this.running]);
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('The Event Grid emulator is closed.');
  }

  private run(delivery: PendingDelivery): void {
    const running = this.attempt(delivery).catch((error: unknown) => {
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

  private async attempt(delivery: PendingDelivery): Promise<void> {
    const { maxDeliveryAttempts, eventTimeToLiveMs, retrySchedule } = this.policy;
    // Event Grid checks the time-to-live only when the next attempt is due.
    if (delivery.attempts > 0 && Date.now() - delivery.publishTime.getTime() >= eventTimeToLiveMs) {
      return this.deadLetter(delivery, 'TimeToLiveExceeded');
    }
    delivery.attempts += 1;
    const attemptedAt = new Date();
    const { outcome, httpStatus } = await this.post(delivery);
    if (this.closed) return;
    const notRetried = httpStatus !== undefined && NOT_RETRIED.has(httpStatus);
    const next =
      outcome === 'Succeeded'
        ? 'done'
        : notRetried || delivery.attempts >= maxDeliveryAttempts
          ? 'dead-letter'
          : 'retry';
    const { subscription, event } = delivery;
    this.attempts.push({
      subscriptionName: subscription.name,
      eventId: event.id,
      eventType: event.eventType,
      attempt: delivery.attempts,
      attemptedAt: attemptedAt.toISOString(),
      ...(httpStatus === undefined ? {} : { httpStatus }),
      outcome,
      next,
    });
    delivery.lastAttemptTime = attemptedAt;
    delivery.lastOutcome = outcome;
    delivery.lastHttpStatus = httpStatus;

    if (next === 'done') return this.settle();
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
      this.run(delivery);
    }, delay);
    this.retryTimers.add(timer);
  }

  private async post(delivery: PendingDelivery): Promise<{ outcome: DeliveryOutcome; httpStatus?: number }> {
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
    try {
      const response = await this.client.send(subscription.endpoint, 'POST', headers, body);
      return { outcome: outcomeOf(response.status), httpStatus: response.status };
    } catch (error) {
      return { outcome: error instanceof WebhookTimeoutError ? 'TimedOut' : 'SocketError' };
    }
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
    this.settle();
  }

  private async validationEventHandshake(subscription: Subscription): Promise<void> {
    const validationCode = randomUUID();
    const validationEvent = {
      id: randomUUID(),
      topic: VALIDATION_EVENT_TOPIC,
      subject: '',
      data: { validationCode },
      eventType: 'Microsoft.EventGrid.SubscriptionValidationEvent',
      eventTime: new Date().toISOString(),
      metadataVersion: '1',
      dataVersion: '1',
    };
    const response = await this.handshake(
      subscription,
      'POST',
      {
        'content-type': 'application/json; charset=utf-8',
        'aeg-event-type': 'SubscriptionValidation',
        'aeg-subscription-name': subscription.name.toUpperCase(),
        'aeg-delivery-count': '0',
        'aeg-data-version': '1',
        'aeg-metadata-version': '1',
      },
      JSON.stringify([validationEvent]),
    );
    if (response.status !== 200) {
      throw handshakeFailed(
        subscription,
        `the endpoint answered HTTP ${response.status}; it must answer 200 OK (202 is not accepted) with {"validationResponse":"<data.validationCode>"}.`,
      );
    }
    let echoed: unknown;
    try {
      echoed = (JSON.parse(response.body) as { validationResponse?: unknown }).validationResponse;
    } catch {
      echoed = undefined;
    }
    if (echoed !== validationCode) {
      throw handshakeFailed(
        subscription,
        'the 200 response did not echo the validation code: its body must be {"validationResponse":"<data.validationCode>"}.',
      );
    }
  }

  private async abuseProtectionHandshake(subscription: Subscription): Promise<void> {
    const response = await this.handshake(subscription, 'OPTIONS', { 'WebHook-Request-Origin': EVENT_GRID_ORIGIN });
    const header = response.headers['webhook-allowed-origin'];
    const allowed = (Array.isArray(header) ? header : [header ?? ''])
      .flatMap((value) => value.split(','))
      .map((value) => value.trim().toLowerCase());
    if (!allowed.includes(EVENT_GRID_ORIGIN) && !allowed.includes('*')) {
      throw handshakeFailed(
        subscription,
        `the OPTIONS response (HTTP ${response.status}) did not grant delivery: it must carry "WebHook-Allowed-Origin: ${EVENT_GRID_ORIGIN}" (or "*").`,
      );
    }
  }

  private async handshake(
    subscription: Subscription,
    method: 'POST' | 'OPTIONS',
    headers: Record<string, string>,
    body?: string,
  ): Promise<WebhookResponse> {
    try {
      return await this.client.send(subscription.endpoint, method, headers, body);
    } catch (error) {
      throw handshakeFailed(
        subscription,
        `${method} request failed: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
  }
}

function handshakeFailed(subscription: Subscription, reason: string): SubscriptionValidationError {
  return new SubscriptionValidationError(
    `Webhook validation handshake failed for ${redactedEndpoint(subscription.endpoint)} (subscription ${subscription.name}, ${subscription.schema}): ${reason}`,
  );
}
