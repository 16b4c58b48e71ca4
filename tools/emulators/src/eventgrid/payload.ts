// What Event Grid puts on the wire and in dead-letter blobs: the event in the subscription's schema, and the
// lastDeliveryOutcome an HTTP answer maps to.
import type { KeyVaultEventGridEvent } from '../contracts';

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

/** Event Grid's EventGrid-to-CloudEvents mapping (dataVersion travels as `dataschema: "#<dataVersion>"`). */
export function toCloudEvent(event: KeyVaultEventGridEvent): Record<string, unknown> {
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

export function asEventGridEvent(event: KeyVaultEventGridEvent): Record<string, unknown> {
  const { id, topic, subject, eventType, eventTime, data, dataVersion, metadataVersion } = event;
  return { id, topic, subject, eventType, eventTime, data, dataVersion, metadataVersion };
}

export function outcomeOf(status: number): DeliveryOutcome {
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
