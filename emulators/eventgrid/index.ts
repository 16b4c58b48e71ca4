// The Event Grid emulator: Key Vault's system topic delivering to webhook subscriptions, plus custom topics
// (`https://<topic>.<region>-1.eventgrid.azure.net/api/events`, reached through the Azure proxy) that store what
// they receive. One HTTPS server on 127.0.0.1 serves the topics and, for loopback Host headers, the admin routes.
import https from 'node:https';
import type http from 'node:http';
import type { EventSink } from '../contracts';
import { assertPortFree, listenOnLoopback } from '../ports';
import { WebhookDelivery } from './delivery';
import type { DeadLetteredEvent, DeliveryAttempt, DeliveryPolicy, WebhookSubscriptionOptions } from './delivery';
import { sendEventGridError, sendJson } from './http-util';
import { TopicEndpoints } from './topics';
import type { TopicEvent } from './topics';
import { isLoopbackHost } from './webhook-client';

export type {
  DeadLetteredEvent,
  DeadLetterReason,
  DeliveryAttempt,
  DeliveryOutcome,
  DeliverySchema,
  WebhookSubscriptionOptions,
} from './delivery';
export { SubscriptionValidationError } from './delivery';
export type { TopicEvent, TopicInputSchema } from './topics';
export { topicResourceId } from './topics';

/** Event Grid's retry schedule: 10 s, 30 s, 1 min, 5 min, 10 min, 30 min, 1 h, 3 h, 6 h, then every 12 h. */
export const EVENT_GRID_RETRY_SCHEDULE_MS: readonly number[] = [
  10_000, 30_000, 60_000, 300_000, 600_000, 1_800_000, 3_600_000, 10_800_000, 21_600_000, 43_200_000,
];
/** Event Grid's defaults: 30 attempts, 1440 minutes. */
export const DEFAULT_MAX_DELIVERY_ATTEMPTS = 30;
export const DEFAULT_EVENT_TIME_TO_LIVE_MS = 1440 * 60_000;

export interface EventGridEmulatorOptions {
  tls: { cert: string; key: string };
  /** Dead-lettered events are written here, one JSON file each. */
  deadLetterDir: string;
  /** Defaults to a free port. */
  port?: number;
  /** Milliseconds between attempts (a compressed Event Grid schedule in tests); the last entry repeats. */
  retrySchedule?: number[];
  /** 1-30, as Event Grid allows. */
  maxDeliveryAttempts?: number;
  eventTimeToLiveMs?: number;
  /** Access keys by topic name (base64, like Azure's); a topic without a key accepts bearer tokens only. */
  topicKeys?: Record<string, string>;
}

export interface EventGridEmulator {
  port: number;
  /** `https://127.0.0.1:<port>`: the admin routes (`/_admin/topics/<topic>/events`, `/_admin/deliveries`, `/_admin/dead-letters`). */
  adminUrl: string;
  /** Key Vault's system topic: what is published here goes to the webhook subscriptions. */
  systemTopicSink: EventSink;
  /** Rejects with SubscriptionValidationError when the endpoint fails the handshake. */
  subscribe(subscription: WebhookSubscriptionOptions): Promise<void>;
  /** Events a custom topic accepted, oldest first. */
  received(topicName: string): TopicEvent[];
  /** Called for each event a custom topic accepts; returns the unsubscribe function. */
  onEvent(listener: (event: TopicEvent) => void): () => void;
  /** Every webhook delivery attempt so far. */
  deliveries(): DeliveryAttempt[];
  deadLetters(): DeadLetteredEvent[];
  /** Resolves when every event published to the system topic is delivered or dead-lettered. */
  idle(): Promise<void>;
  close(): Promise<void>;
}

/** `<topic>.<region>-1.eventgrid.azure.net`, as the topic endpoint's host name reads. */
const TOPIC_HOST = /^([a-z0-9-]{3,50})\.[a-z0-9]+-1\.eventgrid\.azure\.net$/;

function deliveryPolicy(options: EventGridEmulatorOptions): DeliveryPolicy {
  const {
    deadLetterDir,
    retrySchedule = [...EVENT_GRID_RETRY_SCHEDULE_MS],
    maxDeliveryAttempts = DEFAULT_MAX_DELIVERY_ATTEMPTS,
    eventTimeToLiveMs = DEFAULT_EVENT_TIME_TO_LIVE_MS,
  } = options;
  if (typeof deadLetterDir !== 'string' || deadLetterDir.trim() === '') {
    throw new Error('Event Grid emulator: deadLetterDir must be a folder path.');
  }
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
  if (!Number.isFinite(eventTimeToLiveMs) || eventTimeToLiveMs <= 0) {
    throw new Error(`Event Grid emulator: eventTimeToLiveMs must be a positive number, got ${eventTimeToLiveMs}.`);
  }
  return { deadLetterDir, retrySchedule, maxDeliveryAttempts, eventTimeToLiveMs };
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
    if (req.method !== 'GET') {
      sendEventGridError(req, res, 405, 'MethodNotAllowed', 'The admin routes are read-only (GET).');
    } else if (topicEvents?.[1]) {
      sendJson(res, 200, topics.received(decodeURIComponent(topicEvents[1])));
    } else if (pathname === '/_admin/deliveries') {
      sendJson(res, 200, delivery.deliveries());
    } else if (pathname === '/_admin/dead-letters') {
      sendJson(res, 200, delivery.deadLetters());
    } else {
      sendEventGridError(
        req,
        res,
        404,
        'NotFound',
        `No admin route ${pathname}: try /_admin/topics/<topic>/events, /_admin/deliveries or /_admin/dead-letters.`,
      );
    }
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
