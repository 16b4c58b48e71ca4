// The Event Grid extension's webhook (`/runtime/webhooks/eventgrid?functionName=<name>`), after
// Microsoft.Azure.WebJobs.Extensions.EventGrid's HttpRequestProcessor and EventGridExtensionConfigProvider:
// OPTIONS → CloudEvents abuse-protection handshake (200 + WebHook-Allowed-Origin);
// aeg-event-type SubscriptionValidation → 200 {"validationResponse": code};
// aeg-event-type Notification → the function once per event (single dispatch), 202 when all succeeded,
// 500 (so Event Grid retries) when one failed; Unsubscribe → 202; any other event type → 400.
// Unlike the extension, a body that is not JSON events answers 400 with the reason (the extension throws → 500).
// Locally the webhook needs no key, as under `func start`; in Azure it requires
// `code=<the eventgrid_extension system key>` in the subscription's endpoint URL.
import type { IncomingHttpHeaders } from 'node:http';
import { parseJsonBounded } from './httpGuards';

export interface WebhookReply {
  status: number;
  headers?: Record<string, string>;
  body?: string;
}

export type EventGridEvent = Record<string, unknown>;

/** Azure clouds' Event Grid origins the extension accepts; anything else is answered with the public cloud's. */
const knownOrigins = [
  'eventgrid.azure.net',
  'eventgrid.azure.us',
  'eventgrid.azure.eaglex.ic.gov',
  'eventgrid.azure.microsoft.scloud',
  'eventgrid.azure.cn',
];

const text = (status: number, body: string): WebhookReply => ({
  status,
  headers: { 'content-type': 'text/plain; charset=utf-8' },
  body,
});

export function functionNotFound(functionName: string | null): WebhookReply {
  return text(404, `cannot find function: '${functionName ?? ''}'`);
}

export async function processEventGridRequest(
  request: { method: string; headers: IncomingHttpHeaders; body: Buffer },
  functionName: string,
  deliver: (event: EventGridEvent) => Promise<boolean>,
): Promise<WebhookReply> {
  if (request.method === 'OPTIONS') {
    const origin = firstHeader(request.headers['webhook-request-origin']);
    const allowed = origin && knownOrigins.includes(origin) ? origin : 'eventgrid.azure.net';
    return { status: 200, headers: { 'webhook-allowed-origin': allowed } };
  }

  const eventType = firstHeader(request.headers['aeg-event-type'])?.toLowerCase();
  if (eventType === 'subscriptionvalidation') {
    const parsed = parseJson(request.body);
    if (!parsed.ok) return text(400, `The SubscriptionValidation body is not JSON: ${parsed.error}`);
    const code = validationCode(parsed.value);
    if (code === undefined) {
      return text(
        400,
        'The SubscriptionValidation body has no data.validationCode (expected [{ "data": { "validationCode": "..." } }]).',
      );
    }
    return {
      status: 200,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ validationResponse: code }),
    };
  }

  if (eventType === 'notification') {
    const parsed = parseJson(request.body);
    if (!parsed.ok) return text(400, `The Notification body is not JSON: ${parsed.error}`);
    const events = Array.isArray(parsed.value) ? (parsed.value as unknown[]) : [parsed.value];
    const problem = events.map(describeSchemaProblem).findIndex((p) => p !== undefined);
    if (problem >= 0) return text(400, `Event ${problem}: ${describeSchemaProblem(events[problem])}`);
    let allSucceeded = true;
    for (const event of events as EventGridEvent[]) allSucceeded = (await deliver(event)) && allSucceeded;
    return allSucceeded ? { status: 202 } : text(500, `Exception while executing function: Functions.${functionName}`);
  }

  if (eventType === 'unsubscribe') return { status: 202 };
  return { status: 400 };
}

function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function parseJson(body: Buffer): { ok: true; value: unknown } | { ok: false; error: string } {
  try {
    return { ok: true, value: parseJsonBounded(body.toString('utf8')) };
  } catch (error) {
    return { ok: false, error: (error as Error).message };
  }
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** EventGridEvent schema: an array whose first event carries it; CloudEvents: one event, data possibly a JSON string. */
function validationCode(body: unknown): string | undefined {
  const event = Array.isArray(body) ? (body as unknown[])[0] : body;
  if (!isObject(event)) return undefined;
  let data = event.data;
  if (typeof data === 'string') {
    try {
      data = JSON.parse(data);
    } catch {
      return undefined;
    }
  }
  const code = isObject(data) ? data.validationCode : undefined;
  return typeof code === 'string' && code !== '' ? code : undefined;
}

/** An event must be an object in the EventGridEvent schema or CloudEvents 1.0; says what is missing otherwise. */
function describeSchemaProblem(event: unknown): string | undefined {
  if (!isObject(event)) return 'is not a JSON object.';
  if (typeof event.id !== 'string' || event.id === '') return 'has no "id".';
  if ('specversion' in event) {
    if (event.specversion !== '1.0')
      return `has specversion ${JSON.stringify(event.specversion)}; only CloudEvents 1.0 is supported.`;
    for (const field of ['source', 'type']) {
      if (typeof event[field] !== 'string' || event[field] === '') return `is a CloudEvent without "${field}".`;
    }
    return undefined;
  }
  for (const field of ['eventType', 'subject', 'eventTime']) {
    if (typeof event[field] !== 'string') {
      return `is neither a CloudEvent (no "specversion") nor an EventGridEvent (no string "${field}").`;
    }
  }
  return undefined;
}
