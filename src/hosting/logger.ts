// Structured logs through the Functions context (so they reach Application Insights with the invocation):
// one line per event, `<event> {json fields}`, the invocation id always included.
import type { InvocationContext } from '@azure/functions';
import type { JsonObject, Logger } from '../domain/ports';

export function invocationLogger(context: InvocationContext): Logger {
  const line = (event: string, fields: JsonObject = {}) =>
    `${event} ${JSON.stringify({ ...fields, invocationId: context.invocationId })}`;
  return {
    info: (event, fields) => context.info(line(event, fields)),
    warn: (event, fields) => context.warn(line(event, fields)),
    error: (event, fields) => context.error(line(event, fields)),
  };
}
