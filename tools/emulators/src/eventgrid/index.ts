// The Event Grid emulator: Key Vault's system topic delivering to webhook subscriptions, plus custom topics
// (`https://<topic>.<region>-1.eventgrid.azure.net/api/events`, reached through the Azure proxy) that store what
// they receive. One HTTPS server on 127.0.0.1 serves the topics and, for loopback Host headers, the admin routes.
import https from 'node:https';
import type http from 'node:http';
import type { EventSink } from '../contracts';
import { assertPortFree, listenOnLoopback } from '../tcpPorts';
import { WebhookDelivery } from './delivery';
import type { DeadLetteredEvent, DeliveryPolicy } from './delivery';
import type { DeliveryAttempt, EventDelivery } from './deliveryLog';
import { DELAYED_DELIVERY_DEFAULTS } from './endpointHealth';
import type { DelayedDeliveryPolicy, EndpointHealthReport } from './endpointHealth';
import { sendEventGridError, sendJson } from './httpUtil';
import type { WebhookSubscriptionOptions } from './subscriptions';
import { TopicEndpoints } from './topics';
import type { TopicEvent } from './topics';
import { isLoopbackHost } from './webhookClient';

export type { DeadLetteredEvent } from './delivery';
export type { DeadLetterReason, DeliveryAttempt, EventDelivery } from './deliveryLog';
export type { DelayedDeliveryPolicy, EndpointHealthReport } from './endpointHealth';
export type { DeliveryOutcome } from './payload';
export type { DeliverySchema, WebhookSubscriptionOptions } from './subscriptions';
export { SubscriptionValidationError } from './subscriptions';
export type { TopicEvent, TopicInputSchema } from './topics';
export { topicResourceId } from './topics';

/** Event Grid's retry schedule: 10 s, 30 s, 1 min, 5 min, 10 min, 30 min, 1 h, 3 h, 6 h, then every 12 h. */
export const EVENT_GRID_RETRY_SCHEDULE_MS: readonly number[] = [
  10_000, 30_000, 60_000, 300_000, 600_000, 1_800_000, 3_600_000, 10_800_000, 21_600_000, 43_200_000,
];
/** Event Grid's defaults: 30 attempts, 1440 minutes. */
export const DEFAULT_MAX_DELIVERY_ATTEMPTS = 30;
export const DEFAULT_EVENT_TIME_TO_LIVE_MS = 1440 * 60_000;
/** Event Grid waits 30 s for an answer to each delivery. */
export const EVENT_GRID_RESPONSE_TIMEOUT_MS = 30_000;
/** "If the endpoint responds within 3 minutes, Event Grid attempts to remove the event from the retry queue". */
const LATE_ANSWER_WINDOW_FACTOR = 6;

export interface EventGridEmulatorOptions {
  tls: { cert: string; key: string };
  /** Dead-lettered events are written here, one JSON file each. */
  deadLetterDir: string;
  /** Defaults to a free port. */
  port?: number;
  /**
   * Compresses Event Grid's time: its retry schedule and delayed-delivery back-off are multiplied by this (0.01: a
   * 10 s retry comes after 100 ms). Omitted with an explicit retrySchedule: retrySchedule[0] / 10 s, the compression
   * that schedule implies; omitted otherwise: 1 (real time).
   */
  timeScale?: number;
  /** Milliseconds between attempts (a compressed Event Grid schedule in tests); the last entry repeats. */
  retrySchedule?: number[];
  /** An answer later than this fails the attempt (TimedOut) and it is retried; default 30 s, not scaled. */
  responseTimeoutMs?: number;
  /**
   * Delayed delivery to an endpoint that keeps failing (see endpoint-health.ts); `false` turns it off. Omitted fields:
   * 10 failures, then 1 min doubling up to 4 h, times timeScale.
   */
  delayedDelivery?: Partial<DelayedDeliveryPolicy> | false;
  /** 1-30, as Event Grid allows. */
  maxDeliveryAttempts?: number;
  eventTimeToLiveMs?: number;
  /** Access keys by topic name (base64, like Azure's); a topic without a key accepts bearer tokens only. */
  topicKeys?: Record<string, string>;
}

export interface EventGridEmulator {
  port: number;
  /**
   * `https://127.0.0.1:<port>`: the admin routes (GET `/_admin/topics/<topic>/events`, GET|DELETE `/_admin/deliveries`,
   * GET `/_admin/deliveries/events`, GET `/_admin/endpoints`, GET `/_admin/dead-letters`).
   */
  adminUrl: string;
  /** Key Vault's system topic: what is published here goes to the webhook subscriptions. */
  systemTopicSink: EventSink;
  /** Rejects with SubscriptionValidationError when the endpoint fails the handshake. */
  subscribe(subscription: WebhookSubscriptionOptions): Promise<void>;
  /** Events a custom topic accepted, oldest first. */
  received(topicName: string): TopicEvent[];
  /** Called for each event a custom topic accepts; returns the unsubscribe function. */
  onEvent(listener: (event: TopicEvent) => void): () => void;
  /** Every webhook delivery attempt so far, with its timings. */
  deliveries(): DeliveryAttempt[];
  /** Every event per subscription: published, acknowledged (with its ack latency) or dead-lettered. */
  eventDeliveries(): EventDelivery[];
  /** Each subscription's endpoint: failures in a row and whether its deliveries are being delayed. */
  endpointHealth(): EndpointHealthReport[];
  /** Forgets recorded attempts and settled events (pending ones stay). */
  clearDeliveries(): void;
  deadLetters(): DeadLetteredEvent[];
  /** Resolves when every event published to the system topic is delivered or dead-lettered. */
  idle(): Promise<void>;
  close(): Promise<void>;
}

/** `<topic>.<region>-1.eventgrid.azure.net`, as the topic endpoint's host name reads. */
const TOPIC_HOST = /^([a-z0-9-]{3,50})\.[a-z0-9]+-1\.eventgrid\.azure\.net$/;

function checkDuration(name: string, value: number, { allowZero = false } = {}): number {
  if (!Number.isFinite(value) || value < 0 || (!allowZero && value === 0)) {
    throw new Error(
      `Event Grid emulator: ${name} must be a ${allowZero ? 'non-negative' : 'positive'} number, got ${value}.`,
    );
  }
  return value;
}

function deliveryPolicy(options: EventGridEmulatorOptions): DeliveryPolicy {
  const {
    deadLetterDir,
    maxDeliveryAttempts = DEFAULT_MAX_DELIVERY_ATTEMPTS,
    eventTimeToLiveMs = DEFAULT_EVENT_TIME_TO_LIVE_MS,
    responseTimeoutMs = EVENT_GRID_RESPONSE_TIMEOUT_MS,
  } = options;
  if (typeof deadLetterDir !== 'string' || deadLetterDir.trim() === '') {
    throw new Error('Event Grid emulator: deadLetterDir must be a folder path.');
  }
  const firstRetry = EVENT_GRID_RETRY_SCHEDULE_MS[0] ?? 10_000;
  const timeScale = checkDuration(
    'timeScale',
    options.timeScale ?? (options.retrySchedule?.[0] !== undefined ? options.retrySchedule[0] / firstRetry : 1),
    { allowZero: true },
  );
  const retrySchedule = options.retrySchedule ?? EVENT_GRID_RETRY_SCHEDULE_MS.map((ms) => ms * timeScale);
  if (
    !Array.isArray(retrySchedule) ||
    retrySchedule.length === 0 ||
    retrySchedule.some((ms) => !Number.isFinite(ms) || ms < 0)
  ) {
    throw new Error('Event Grid emulator: retrySchedule must be a non-empty list of non-negative milliseconds.');
  }
  if (!Number.isInteger(maxDeliveryAttempts) || maxDeliveryAttempts < 1 || maxDeliveryAttempts > 30) {
    throw new Error(
      `Event Grid emulator: maxDeliveryAttempts must be an integer from 1 to 30, got ${maxDeliveryAttempts}.`,
    );
  }
  checkDuration('eventTimeToLiveMs', eventTimeToLiveMs);
  checkDuration('responseTimeoutMs', responseTimeoutMs);
  let delayedDelivery: DelayedDeliveryPolicy | undefined;
  if (options.delayedDelivery !== false) {
    const given = options.delayedDelivery ?? {};
    delayedDelivery = {
      afterFailures: given.afterFailures ?? DELAYED_DELIVERY_DEFAULTS.afterFailures,
      initialDelayMs: given.initialDelayMs ?? DELAYED_DELIVERY_DEFAULTS.initialDelayMs * timeScale,
      maxDelayMs: given.maxDelayMs ?? DELAYED_DELIVERY_DEFAULTS.maxDelayMs * timeScale,
    };
    if (!Number.isInteger(delayedDelivery.afterFailures) || delayedDelivery.afterFailures < 1) {
      throw new Error(
        `Event Grid emulator: delayedDelivery.afterFailures must be a positive integer, got ${delayedDelivery.afterFailures}.`,
      );
    }
    checkDuration('delayedDelivery.initialDelayMs', delayedDelivery.initialDelayMs, { allowZero: true });
    checkDuration('delayedDelivery.maxDelayMs', delayedDelivery.maxDelayMs, { allowZero: true });
  }
  return {
    deadLetterDir,
    retrySchedule,
    maxDeliveryAttempts,
    eventTimeToLiveMs,
    responseTimeoutMs,
    lateAnswerWindowMs: responseTimeoutMs * LATE_ANSWER_WINDOW_FACTOR,
    delayedDelivery,
  };
}

function checkTopicKeys(topicKeys: Record<string, string>): Record<string, string> {
  for (const [name, key] of Object.entries(topicKeys)) {
    if (!/^[A-Za-z0-9-]{3,50}$/.test(name)) {
      throw new Error(`Event Grid emulator: topic name "${name}" must be 3-50 letters, digits or hyphens.`);
    }
    if (typeof key !== 'string' || key === '') throw new Error(`Event Grid emulator: topicKeys.${name} must be a key.`);
  }
  return topicKeys;
}

export async function startEventGridEmulator(options: EventGridEmulatorOptions): Promise<EventGridEmulator> {
  const policy = deliveryPolicy(options);
  const topics = new TopicEndpoints(checkTopicKeys(options.topicKeys ?? {}));
  if (options.port !== undefined) await assertPortFree(options.port, 'Event Grid emulator');
  const delivery = new WebhookDelivery(policy);

  const admin = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const { pathname } = new URL(req.url ?? '/', 'https://127.0.0.1');
    const topicEvents = /^\/_admin\/topics\/([^/]+)\/events$/.exec(pathname);
    const route = `${req.method ?? 'GET'} ${pathname.replace(/\/+$/, '')}`;
    if (req.method === 'GET' && topicEvents?.[1]) {
      return sendJson(res, 200, topics.received(decodeURIComponent(topicEvents[1])));
    }
    switch (route) {
      case 'GET /_admin/deliveries':
        return sendJson(res, 200, delivery.deliveries());
      case 'DELETE /_admin/deliveries':
        delivery.clearDeliveries();
        req.resume();
        res.writeHead(204).end();
        return;
      case 'GET /_admin/deliveries/events':
        return sendJson(res, 200, delivery.eventDeliveries());
      case 'GET /_admin/endpoints':
        return sendJson(res, 200, delivery.endpointHealth());
      case 'GET /_admin/dead-letters':
        return sendJson(res, 200, delivery.deadLetters());
    }
    sendEventGridError(
      req,
      res,
      404,
      'NotFound',
      `No admin route ${route}: try GET /_admin/topics/<topic>/events, GET|DELETE /_admin/deliveries, ` +
        'GET /_admin/deliveries/events, GET /_admin/endpoints or GET /_admin/dead-letters.',
    );
  };

  const route = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const host = (req.headers.host ?? '').toLowerCase().replace(/:443$/, '');
    const topicName = TOPIC_HOST.exec(host)?.[1];
    if (topicName) return topics.handle(req, res, topicName, host);
    if (isLoopbackHost(host.replace(/:\d+$/, ''))) return admin(req, res);
    sendEventGridError(
      req,
      res,
      404,
      'NotFound',
      `No Event Grid topic answers for host "${host}": publish to https://<topic>.<region>-1.eventgrid.azure.net/api/events.`,
    );
  };

  const server = https.createServer({ cert: options.tls.cert, key: options.tls.key }, (req, res) => {
    route(req, res).catch((error: unknown) => {
      const message = error instanceof Error ? error.message : String(error);
      if (res.headersSent) res.destroy();
      else sendEventGridError(req, res, 500, 'InternalServerError', `The emulator failed: ${message}`);
    });
  });
  const port = await listenOnLoopback(server, options.port ?? 0);

  return {
    port,
    adminUrl: `https://127.0.0.1:${port}`,
    systemTopicSink: { publish: (events) => delivery.publish(events) },
    subscribe: (subscription) => delivery.subscribe(subscription),
    received: (topicName) => topics.received(topicName),
    onEvent: (listener) => topics.onEvent(listener),
    deliveries: () => delivery.deliveries(),
    eventDeliveries: () => delivery.eventDeliveries(),
    endpointHealth: () => delivery.endpointHealth(),
    clearDeliveries: () => delivery.clearDeliveries(),
    deadLetters: () => delivery.deadLetters(),
    idle: () => delivery.idle(),
    close: async () => {
      await delivery.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
