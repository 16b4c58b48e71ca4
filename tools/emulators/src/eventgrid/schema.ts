// Validation of published events, following the data-plane spec (EventGrid.json 2018-01-01): EventGridEvent needs
// id, subject, data, eventType, eventTime, dataVersion; a CloudEvent 1.0 needs id, source, specversion, type.

/** A publish request Event Grid would refuse with 400; the message names the event and the field. */
export class InvalidEventsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidEventsError';
  }
}

type JsonObject = Record<string, unknown>;

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i;
const CLOUD_EVENT_ATTRIBUTES = new Set([
  'id',
  'source',
  'specversion',
  'type',
  'datacontenttype',
  'dataschema',
  'subject',
  'time',
  'data',
  'data_base64',
]);

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function objectsOf(body: unknown, what: string): JsonObject[] {
  if (!Array.isArray(body)) throw new InvalidEventsError(`The request body must be a JSON array of ${what}.`);
  return body.map((item: unknown, index) => {
    if (!isObject(item)) throw new InvalidEventsError(`events[${index}] must be a JSON object.`);
    return item;
  });
}

function requiredString(event: JsonObject, index: number, field: string, allowEmpty = false): string {
  const value = event[field];
  if (value === undefined || value === null) {
    throw new InvalidEventsError(`events[${index}]: required property '${field}' was not set.`);
  }
  if (typeof value !== 'string') throw new InvalidEventsError(`events[${index}]: '${field}' must be a string.`);
  if (!allowEmpty && value.trim() === '')
    throw new InvalidEventsError(`events[${index}]: '${field}' must not be empty.`);
  return value;
}

function optionalString(event: JsonObject, index: number, field: string): string | undefined {
  const value = event[field];
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw new InvalidEventsError(`events[${index}]: '${field}' must be a string.`);
  return value;
}

function dateTime(value: string, index: number, field: string): string {
  if (!RFC3339.test(value) || Number.isNaN(Date.parse(value))) {
    throw new InvalidEventsError(`events[${index}]: '${field}' must be an RFC 3339 date-time, got "${value}".`);
  }
  return value;
}

/**
 * EventGridEvent[] as stored by a topic: Event Grid stamps `topic` (when the publisher left it out) and
 * `metadataVersion`, and keeps only the schema's properties.
 */
export function parseEventGridEvents(body: unknown, topicResourceId: string): JsonObject[] {
  return objectsOf(body, 'EventGridEvent objects').map((event, index) => {
    const id = requiredString(event, index, 'id');
    const subject = requiredString(event, index, 'subject', true);
    const eventType = requiredString(event, index, 'eventType');
    const eventTime = dateTime(requiredString(event, index, 'eventTime'), index, 'eventTime');
    const dataVersion = requiredString(event, index, 'dataVersion', true);
    if (!('data' in event)) throw new InvalidEventsError(`events[${index}]: required property 'data' was not set.`);
    const metadataVersion = optionalString(event, index, 'metadataVersion');
    if (metadataVersion !== undefined && metadataVersion !== '1') {
      throw new InvalidEventsError(
        `events[${index}]: 'metadataVersion' must be "1" when set, got "${metadataVersion}".`,
      );
    }
    const topic = optionalString(event, index, 'topic') ?? topicResourceId;
    return { id, topic, subject, eventType, eventTime, data: event.data, dataVersion, metadataVersion: '1' };
  });
}

/** CloudEvents 1.0 in JSON format, batched (`application/cloudevents-batch+json`) or single (`application/cloudevents+json`). */
export function parseCloudEvents(body: unknown, batch: boolean): JsonObject[] {
  if (!batch && !isObject(body)) throw new InvalidEventsError('The request body must be one CloudEvent JSON object.');
  const events = batch ? objectsOf(body, 'CloudEvents') : [body as JsonObject];
  return events.map((event, index) => {
    requiredString(event, index, 'id');
    requiredString(event, index, 'source');
    requiredString(event, index, 'type');
    const specversion = requiredString(event, index, 'specversion');
    if (specversion !== '1.0') {
      throw new InvalidEventsError(`events[${index}]: 'specversion' must be "1.0", got "${specversion}".`);
    }
    const time = optionalString(event, index, 'time');
    if (time !== undefined) dateTime(time, index, 'time');
    for (const field of ['subject', 'dataschema', 'datacontenttype', 'data_base64'])
      optionalString(event, index, field);
    if ('data' in event && 'data_base64' in event) {
      throw new InvalidEventsError(`events[${index}]: set either 'data' or 'data_base64', not both.`);
    }
    for (const name of Object.keys(event)) {
      if (!CLOUD_EVENT_ATTRIBUTES.has(name) && !/^[a-z0-9]{1,20}$/.test(name)) {
        throw new InvalidEventsError(
          `events[${index}]: extension attribute '${name}' must be 1-20 lower-case letters or digits.`,
        );
      }
    }
    return event;
  });
}
