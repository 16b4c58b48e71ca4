// Webhook event subscriptions: their settings, and the validation handshake Event Grid runs when one is created
// (the SubscriptionValidationEvent for the EventGrid schema, the OPTIONS abuse-protection request for CloudEvents).
import { randomUUID } from 'node:crypto';
import { isLoopbackHost, redactedEndpoint } from './webhookClient';
import type { WebhookClient, WebhookResponse } from './webhookClient';

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

export interface Subscription {
  name: string;
  endpoint: URL;
  eventTypes: Set<string>;
  schema: DeliverySchema;
}

/** A subscription was refused because its endpoint did not complete the validation handshake. */
export class SubscriptionValidationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SubscriptionValidationError';
  }
}

export const EVENT_GRID_ORIGIN = 'eventgrid.azure.net';
const SUBSCRIPTION_NAME = /^[A-Za-z0-9-]{3,64}$/;
const VALIDATION_EVENT_TOPIC = '/subscriptions/00000000-0000-0000-0000-000000000000';

export function parseSubscription(options: WebhookSubscriptionOptions): Subscription {
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

function handshakeFailed(subscription: Subscription, reason: string): SubscriptionValidationError {
  return new SubscriptionValidationError(
    `Webhook validation handshake failed for ${redactedEndpoint(subscription.endpoint)} (subscription ${subscription.name}, ${subscription.schema}): ${reason}`,
  );
}

/** Runs the schema's handshake; rejects with SubscriptionValidationError when the endpoint does not complete it. */
export async function validateEndpoint(
  client: WebhookClient,
  subscription: Subscription,
  timeoutMs: number,
): Promise<void> {
  const send = async (
    method: 'POST' | 'OPTIONS',
    headers: Record<string, string>,
    body?: string,
  ): Promise<WebhookResponse> => {
    try {
      return await client.send(subscription.endpoint, method, headers, body, timeoutMs);
    } catch (error) {
      throw handshakeFailed(
        subscription,
        `${method} request failed: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
  };
  if (subscription.schema === 'CloudEventSchemaV1_0') {
    const response = await send('OPTIONS', { 'WebHook-Request-Origin': EVENT_GRID_ORIGIN });
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
    return;
  }
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
  const response = await send(
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
