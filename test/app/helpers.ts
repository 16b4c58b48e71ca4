// The Functions library's own request and context objects (its test mode: no host needed), and a stub rotator.
import { HttpRequest, InvocationContext } from '@azure/functions';
import type { HttpRequestInit, HttpResponseInit } from '@azure/functions';
import type { Rotator } from '../../src/application';

export interface Captured {
  context: InvocationContext;
  /** Every line the function logged through its context: level and text. */
  logs: { level: string; text: string }[];
}

export function invocation(functionName = 'test'): Captured {
  const logs: { level: string; text: string }[] = [];
  const context = new InvocationContext({
    invocationId: `inv-${Math.random().toString(16).slice(2, 10)}`,
    functionName,
    logHandler: (level, ...args) => void logs.push({ level, text: args.map(String).join(' ') }),
  });
  return { context, logs };
}

export function request(init: HttpRequestInit & { json?: unknown }): HttpRequest {
  const { json, ...rest } = init;
  return new HttpRequest({
    method: 'GET',
    url: 'http://localhost:7071/api/test',
    ...rest,
    ...(json !== undefined ? { body: { string: JSON.stringify(json) } } : {}),
  });
}

/** A rotator whose every use case fails the test unless the test gives it an implementation. */
export function stubRotator(overrides: Partial<Rotator> = {}): Rotator {
  const unexpected = (name: string) => () => Promise.reject(new Error(`unexpected call to ${name}`));
  return {
    handleEvent: unexpected('handleEvent'),
    rotate: unexpected('rotate'),
    sync: unexpected('sync'),
    reconcile: unexpected('reconcile'),
    keys: unexpected('keys'),
    status: unexpected('status'),
    history: unexpected('history'),
    job: unexpected('job'),
    retire: unexpected('retire'),
    impact: unexpected('impact'),
    revoke: unexpected('revoke'),
    restore: unexpected('restore'),
    advanceHub: unexpected('advanceHub'),
    failPoisonedStep: unexpected('failPoisonedStep'),
    ...overrides,
  };
}

/** The JSON error body of an answer. */
export const errorOf = (response: HttpResponseInit) =>
  (response.jsonBody as { error: { code: string; message: string; details?: { field: string }[] } }).error;
