// Custom topics as the EventGridPublisherClient sees them: POST https://<topic>.<region>-1.eventgrid.azure.net/api/events
// with an access key, a SAS token or an Entra ID token; Event Grid's checks, status codes and error body.
import type http from 'node:http';
import { verifyBearer } from '../auth';
import { readBody, sendEventGridError, singleHeader } from './httpUtil';
import { equalSecrets, verifySasToken } from './sas';
import type { CredentialCheck } from './sas';
import { InvalidEventsError, parseCloudEvents, parseEventGridEvents } from './schema';

/** Event Grid refuses publish requests over 1 MB with 413. */
const MAX_PUBLISH_BYTES = 1024 * 1024;
const API_VERSIONS = ['2018-01-01'];
const EVENT_GRID_AUDIENCE = 'https://eventgrid.azure.net';

export type TopicInputSchema = 'EventGridSchema' | 'CloudEventSchemaV1_0';

/** One event a topic accepted, with the fields both schemas share pulled out for printing. */
export interface TopicEvent {
  topicName: string;
  schema: TopicInputSchema;
  id: string;
  /** eventType (EventGrid schema) or type (CloudEvents). */
  type: string;
  subject: string | undefined;
  /** eventTime or time. */
  time: string | undefined;
  data: unknown;
  /** The event as stored (EventGrid schema: with `topic` and `metadataVersion` stamped). */
  event: Record<string, unknown>;
  receivedAt: string;
}

/** The ARM id Event Grid stamps as `topic` on EventGrid-schema events that leave it out. */
export function topicResourceId(topicName: string): string {
  return `/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/emulator/providers/Microsoft.EventGrid/topics/${topicName}`;
}

function summarize(
  topicName: string,
  schema: TopicInputSchema,
  event: Record<string, unknown>,
  receivedAt: string,
): TopicEvent {
  const text = (value: unknown) => (typeof value === 'string' ? value : undefined);
  const cloudEvent = schema === 'CloudEventSchemaV1_0';
  return {
    topicName,
    schema,
    id: String(event.id),
    type: String(cloudEvent ? event.type : event.eventType),
    subject: text(event.subject),
    time: text(cloudEvent ? event.time : event.eventTime),
    data: cloudEvent && 'data_base64' in event ? event.data_base64 : event.data,
    event,
    receivedAt,
  };
}

export class TopicEndpoints {
  private readonly keys: Map<string, string>;
  private readonly eventsByTopic = new Map<string, TopicEvent[]>();
  private readonly listeners = new Set<(event: TopicEvent) => void>();

  constructor(topicKeys: Record<string, string>) {
    this.keys = new Map(Object.entries(topicKeys).map(([name, key]) => [name.toLowerCase(), key]));
  }

  received(topicName: string): TopicEvent[] {
    return [...(this.eventsByTopic.get(topicName.toLowerCase()) ?? [])];
  }

  onEvent(listener: (event: TopicEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** `host` is the request's host name (`<topic>.<region>-1.eventgrid.azure.net`), `topicName` its first label. */
  async handle(req: http.IncomingMessage, res: http.ServerResponse, topicName: string, host: string): Promise<void> {
    const url = new URL(req.url ?? '/', `https://${host}`);
    if (url.pathname.replace(/\/+$/, '') !== '/api/events') {
      return sendEventGridError(req, res, 404, 'NotFound', `No resource at ${url.pathname}: publish to /api/events.`);
    }
    if (req.method !== 'POST') {
      return sendEventGridError(req, res, 405, 'MethodNotAllowed', `${req.method} is not allowed: publish with POST.`);
    }
    const auth = this.authenticate(req, topicName, host);
    if (!auth.ok) return sendEventGridError(req, res, 401, 'Unauthorized', auth.message);

    const body = await readBody(req, MAX_PUBLISH_BYTES);
    if (!body) {
      return sendEventGridError(
        req,
        res,
        413,
        'RequestEntityTooLarge',
        `The request body is larger than ${MAX_PUBLISH_BYTES} bytes: Event Grid accepts at most 1 MB per publish request.`,
      );
    }
    const apiVersion = url.searchParams.get('api-version');
    if (!apiVersion || !API_VERSIONS.includes(apiVersion)) {
      return sendEventGridError(
        req,
        res,
        400,
        'BadRequest',
        `The api-version query parameter is ${apiVersion ? `"${apiVersion}"` : 'missing'}; supported: ${API_VERSIONS.join(', ')}.`,
        'InvalidApiVersion',
      );
    }
    const mediaType = (singleHeader(req, 'content-type') ?? '').split(';')[0]?.trim().toLowerCase();
    const schema: TopicInputSchema | undefined =
      mediaType === 'application/json'
        ? 'EventGridSchema'
        : mediaType === 'application/cloudevents-batch+json' || mediaType === 'application/cloudevents+json'
          ? 'CloudEventSchemaV1_0'
          : undefined;
    if (!schema) {
      return sendEventGridError(
        req,
        res,
        400,
        'BadRequest',
        `Content-Type "${mediaType}" is not supported: use application/json (EventGrid schema) or application/cloudevents-batch+json (CloudEvents).`,
        'InvalidContentType',
      );
    }

    let events: Record<string, unknown>[];
    try {
      const json: unknown = JSON.parse(body.toString('utf8'));
      events =
        schema === 'EventGridSchema'
          ? parseEventGridEvents(json, topicResourceId(topicName))
          : parseCloudEvents(json, mediaType === 'application/cloudevents-batch+json');
    } catch (error) {
      const message =
        error instanceof InvalidEventsError
          ? error.message
          : `The request body is not valid JSON: ${error instanceof Error ? error.message : String(error)}`;
      return sendEventGridError(req, res, 400, 'BadRequest', message, 'InputJsonInvalid');
    }

    const receivedAt = new Date().toISOString();
    const accepted = events.map((event) => summarize(topicName, schema, event, receivedAt));
    const stored = this.eventsByTopic.get(topicName) ?? [];
    stored.push(...accepted);
    this.eventsByTopic.set(topicName, stored);
    res.writeHead(200, { 'content-length': '0' }).end();
    for (const event of accepted) {
      for (const listener of this.listeners) {
        try {
          listener(event);
        } catch (error) {
          console.error(
            `Event Grid emulator: an onEvent listener failed: ${error instanceof Error ? error.message : String(error)}`,
          );
        }
      }
    }
  }

  private authenticate(req: http.IncomingMessage, topicName: string, host: string): CredentialCheck {
    const topicKey = this.keys.get(topicName);
    const key = singleHeader(req, 'aeg-sas-key');
    if (key !== undefined) {
      if (topicKey === undefined) return { ok: false, message: `The topic at ${host} has no access key configured.` };
      return equalSecrets(key, topicKey)
        ? { ok: true }
        : { ok: false, message: `The request authorization key is not authorized for ${host.toUpperCase()}.` };
    }
    const sasToken = singleHeader(req, 'aeg-sas-token');
    if (sasToken !== undefined) return verifySasToken(sasToken, topicKey, host);
    const authorization = singleHeader(req, 'authorization');
    if (authorization !== undefined) {
      const check = verifyBearer(authorization, [EVENT_GRID_AUDIENCE]);
      return check.ok ? { ok: true } : { ok: false, message: `The bearer token was rejected: ${check.message}` };
    }
    return { ok: false, message: 'The request has no aeg-sas-key, aeg-sas-token or Authorization header.' };
  }
}
