import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { KeyVaultEventGridEvent } from '../src/contracts';
import { startEventGridEmulator } from '../src/eventgrid';
import type { EventGridEmulator, EventGridEmulatorOptions } from '../src/eventgrid';
import { keyVaultEvent, startWebhook, subscriber, tls } from './eventgridBed';
import type { RecordedRequest, Reply } from './eventgridBed';

describe('Event Grid emulator: system topic to webhook subscriptions', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function start(options: Partial<EventGridEmulatorOptions> = {}): Promise<EventGridEmulator> {
    const deadLetterDir = mkdtempSync(path.join(os.tmpdir(), 'eventgrid-dead-letters-'));
    cleanups.push(() => rmSync(deadLetterDir, { recursive: true, force: true }));
    const emulator = await startEventGridEmulator({
      tls,
      deadLetterDir,
      retrySchedule: [5, 10],
      maxDeliveryAttempts: 3,
      ...options,
    });
    cleanups.push(() => emulator.close());
    return emulator;
  }

  async function webhook(reply: (request: RecordedRequest) => Reply, secure = false) {
    const hook = await startWebhook(reply, secure);
    cleanups.push(() => hook.close());
    return hook;
  }

  it('EventGrid schema: sends the validation event and creates the subscription when the code is echoed', async () => {
    const emulator = await start();
    const hook = await webhook(subscriber(200));
    await emulator.subscribe({ name: 'rotator', endpointUrl: hook.url, schema: 'EventGridSchema' });

    const [validation] = hook.requests;
    expect(validation?.method).toBe('POST');
    expect(validation?.headers['aeg-event-type']).toBe('SubscriptionValidation');
    const body = JSON.parse(validation?.body ?? '') as Record<string, unknown>[];
    expect(body).toHaveLength(1);
    expect(body[0]).toMatchObject({
      eventType: 'Microsoft.EventGrid.SubscriptionValidationEvent',
      data: { validationCode: expect.any(String) as unknown },
      dataVersion: '1',
      metadataVersion: '1',
    });

    emulator.systemTopicSink.publish([keyVaultEvent()]);
    await emulator.idle();
    expect(hook.notifications()).toHaveLength(1);
  });

  it.each([
    ['a wrong code', () => ({ status: 200, body: JSON.stringify({ validationResponse: 'not-the-code' }) })],
    ['202 Accepted', () => ({ status: 202 })],
    ['404', () => ({ status: 404 })],
  ])('EventGrid schema: a handshake answered with %s rejects subscribe and creates nothing', async (_case, reply) => {
    const emulator = await start();
    const hook = await webhook(reply);
    const failure = emulator.subscribe({ name: 'rotator', endpointUrl: hook.url, schema: 'EventGridSchema' });
    await expect(failure).rejects.toThrow(
      /Webhook validation handshake failed for http:\/\/127\.0\.0\.1:\d+\/api\/updates /,
    );
    await expect(failure).rejects.not.toThrow(/webhook-secret/);

    emulator.systemTopicSink.publish([keyVaultEvent()]);
    await emulator.idle();
    expect(emulator.deliveries()).toEqual([]);
  });

  it('CloudEvents schema: performs the OPTIONS abuse-protection handshake', async () => {
    const emulator = await start();
    const hook = await webhook(subscriber(200));
    await emulator.subscribe({ name: 'rotator', endpointUrl: hook.url, schema: 'CloudEventSchemaV1_0' });
    expect(hook.requests).toHaveLength(1);
    expect(hook.requests[0]?.method).toBe('OPTIONS');
    expect(hook.requests[0]?.headers['webhook-request-origin']).toBe('eventgrid.azure.net');
  });

  it('CloudEvents schema: an endpoint that does not grant the origin is refused', async () => {
    const emulator = await start();
    const hook = await webhook(() => ({ status: 405 }));
    await expect(
      emulator.subscribe({ name: 'rotator', endpointUrl: hook.url, schema: 'CloudEventSchemaV1_0' }),
    ).rejects.toThrow(/WebHook-Allowed-Origin: eventgrid\.azure\.net/);
  });

  it('refuses bad subscriptions before contacting anything', async () => {
    const emulator = await start();
    await expect(
      emulator.subscribe({ name: 'x', endpointUrl: 'http://127.0.0.1:1/', schema: 'EventGridSchema' }),
    ).rejects.toThrow(/name "x" must be 3-64 letters, digits or hyphens/);
    await expect(
      emulator.subscribe({ name: 'rotator', endpointUrl: 'https://example.com/api', schema: 'EventGridSchema' }),
    ).rejects.toThrow(/loopback host .* not example\.com/);
  });

  it('EventGrid schema: delivers one event per request with Event Grid headers', async () => {
    const emulator = await start();
    const hook = await webhook(subscriber(200));
    await emulator.subscribe({ name: 'rotator-sub', endpointUrl: hook.url, schema: 'EventGridSchema' });
    const first = keyVaultEvent();
    const second = keyVaultEvent('Microsoft.KeyVault.KeyNewVersionCreated');
    emulator.systemTopicSink.publish([first, second]);
    await emulator.idle();

    const notifications = hook.notifications();
    expect(notifications).toHaveLength(2);
    const bodies = notifications.map((n) => JSON.parse(n.body) as unknown);
    expect(bodies).toEqual(expect.arrayContaining([[first], [second]]));
    expect(notifications[0]?.headers).toMatchObject({
      'content-type': 'application/json; charset=utf-8',
      'aeg-event-type': 'Notification',
      'aeg-subscription-name': 'ROTATOR-SUB',
      'aeg-delivery-count': '0',
      'aeg-data-version': '1',
      'aeg-metadata-version': '1',
    });
    expect(emulator.deliveries()).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ eventId: first.id, attempt: 1, httpStatus: 200, outcome: 'Succeeded', next: 'done' }),
        expect.objectContaining({
          eventId: second.id,
          attempt: 1,
          httpStatus: 200,
          outcome: 'Succeeded',
          next: 'done',
        }),
      ]),
    );
  });

  it('CloudEvents schema: converts the event as Event Grid does and posts it as a single structured CloudEvent', async () => {
    const emulator = await start();
    const hook = await webhook(subscriber(202), true);
    await emulator.subscribe({ name: 'rotator', endpointUrl: hook.url, schema: 'CloudEventSchemaV1_0' });
    const event = keyVaultEvent();
    emulator.systemTopicSink.publish([event]);
    await emulator.idle();

    const [notification] = hook.notifications();
    expect(notification?.headers).toMatchObject({
      'content-type': 'application/cloudevents+json; charset=utf-8',
      'aeg-subscription-name': 'ROTATOR',
      'aeg-delivery-count': '0',
      origin: 'eventgrid.azure.net',
    });
    expect(JSON.parse(notification?.body ?? '')).toEqual({
      id: event.id,
      source: event.topic,
      specversion: '1.0',
      type: event.eventType,
      dataschema: '#1',
      subject: event.subject,
      time: event.eventTime,
      data: event.data,
    });
    expect(emulator.deliveries()).toMatchObject([{ attempt: 1, httpStatus: 202, outcome: 'Succeeded' }]);
  });

  it('delivers only the event types a subscription includes', async () => {
    const emulator = await start();
    const hook = await webhook(subscriber(200));
    await emulator.subscribe({
      name: 'near-expiry-only',
      endpointUrl: hook.url,
      schema: 'EventGridSchema',
      eventTypes: ['Microsoft.KeyVault.KeyNearExpiry'],
    });
    const wanted = keyVaultEvent('Microsoft.KeyVault.KeyNearExpiry');
    emulator.systemTopicSink.publish([keyVaultEvent('Microsoft.KeyVault.KeyNewVersionCreated'), wanted]);
    await emulator.idle();
    expect(hook.notifications().map((n) => (JSON.parse(n.body) as KeyVaultEventGridEvent[])[0]?.id)).toEqual([
      wanted.id,
    ]);
  });

  it('retries 5xx and 404 with an increasing delivery count until the endpoint accepts', async () => {
    const emulator = await start({ maxDeliveryAttempts: 5 });
    const hook = await webhook(subscriber(500, 404, 503, 200));
    await emulator.subscribe({ name: 'rotator', endpointUrl: hook.url, schema: 'EventGridSchema' });
    const event = keyVaultEvent();
    emulator.systemTopicSink.publish([event]);
    await emulator.idle();

    expect(hook.notifications().map((n) => n.headers['aeg-delivery-count'])).toEqual(['0', '1', '2', '3']);
    expect(
      emulator.deliveries().map(({ attempt, httpStatus, outcome, next }) => ({ attempt, httpStatus, outcome, next })),
    ).toEqual([
      { attempt: 1, httpStatus: 500, outcome: 'GenericError', next: 'retry' },
      { attempt: 2, httpStatus: 404, outcome: 'NotFound', next: 'retry' },
      { attempt: 3, httpStatus: 503, outcome: 'Busy', next: 'retry' },
      { attempt: 4, httpStatus: 200, outcome: 'Succeeded', next: 'done' },
    ]);
    expect(emulator.deadLetters()).toEqual([]);
  });

  it.each([
    [400, 'BadRequest', 'UndeliverableDueToHttpBadRequest'],
    [401, 'Unauthorized', 'UndeliverableDueToClientError'],
    [403, 'Forbidden', 'UndeliverableDueToClientError'],
    [413, 'PayloadTooLarge', 'UndeliverableDueToClientError'],
  ])('does not retry %i: dead-letters after the first attempt', async (status, outcome, reason) => {
    const emulator = await start();
    const hook = await webhook(subscriber(status, 200));
    await emulator.subscribe({ name: 'rotator', endpointUrl: hook.url, schema: 'EventGridSchema' });
    const event = keyVaultEvent();
    emulator.systemTopicSink.publish([event]);
    await emulator.idle();

    expect(hook.notifications()).toHaveLength(1);
    const [deadLetter] = emulator.deadLetters();
    expect(deadLetter).toMatchObject({ subscriptionName: 'rotator', eventId: event.id, reason });
    const written = JSON.parse(readFileSync(deadLetter?.filePath ?? '', 'utf8')) as Record<string, unknown>[];
    expect(written).toEqual([deadLetter?.content]);
    expect(written[0]).toMatchObject({
      ...event,
      deadLetterReason: reason,
      deliveryAttempts: 1,
      lastDeliveryOutcome: outcome,
      lastHttpStatusCode: status,
      publishTime: expect.any(String) as unknown,
      lastDeliveryAttemptTime: expect.any(String) as unknown,
    });
    expect(deadLetter?.filePath).toMatch(
      /[/\\]ROTATOR[/\\]\d{4}[/\\]\d{1,2}[/\\]\d{1,2}[/\\]\d{1,2}[/\\][0-9a-f-]{36}\.json$/,
    );
  });

  it('dead-letters after the maximum number of attempts (CloudEvents dead-letter format)', async () => {
    const emulator = await start({ maxDeliveryAttempts: 3 });
    const hook = await webhook(subscriber(503));
    await emulator.subscribe({ name: 'rotator', endpointUrl: hook.url, schema: 'CloudEventSchemaV1_0' });
    const event = keyVaultEvent();
    emulator.systemTopicSink.publish([event]);
    await emulator.idle();

    expect(hook.notifications()).toHaveLength(3);
    expect(emulator.deliveries().map((d) => d.next)).toEqual(['retry', 'retry', 'dead-letter']);
    expect(emulator.deadLetters()[0]?.content).toMatchObject({
      id: event.id,
      type: event.eventType,
      specversion: '1.0',
      deadletterreason: 'MaxDeliveryAttemptsExceeded',
      deliveryattempts: 3,
      lastdeliveryoutcome: 'Busy',
      lasthttpstatuscode: 503,
    });
  });

  it('retries connection failures and dead-letters without a status code', async () => {
    const emulator = await start({ maxDeliveryAttempts: 2 });
    const hook = await webhook(subscriber(200));
    await emulator.subscribe({ name: 'rotator', endpointUrl: hook.url, schema: 'EventGridSchema' });
    await hook.close();
    emulator.systemTopicSink.publish([keyVaultEvent()]);
    await emulator.idle();

    expect(emulator.deliveries().map(({ outcome, httpStatus }) => ({ outcome, httpStatus }))).toEqual([
      { outcome: 'SocketError', httpStatus: undefined },
      { outcome: 'SocketError', httpStatus: undefined },
    ]);
    const content = emulator.deadLetters()[0]?.content;
    expect(content).toMatchObject({
      deadLetterReason: 'MaxDeliveryAttemptsExceeded',
      lastDeliveryOutcome: 'SocketError',
    });
    expect(content).not.toHaveProperty('lastHttpStatusCode');
  });

  it('dead-letters when the time-to-live has passed by the next attempt', async () => {
    const emulator = await start({ retrySchedule: [60], eventTimeToLiveMs: 20, maxDeliveryAttempts: 30 });
    const hook = await webhook(subscriber(500));
    await emulator.subscribe({ name: 'rotator', endpointUrl: hook.url, schema: 'EventGridSchema' });
    emulator.systemTopicSink.publish([keyVaultEvent()]);
    await emulator.idle();

    expect(hook.notifications()).toHaveLength(1);
    expect(emulator.deadLetters()[0]?.content).toMatchObject({
      deadLetterReason: 'TimeToLiveExceeded',
      deliveryAttempts: 1,
      lastDeliveryOutcome: 'GenericError',
      lastHttpStatusCode: 500,
    });
  });

  it('refuses invalid retry settings with the field named', async () => {
    await expect(start({ maxDeliveryAttempts: 31 })).rejects.toThrow(
      /maxDeliveryAttempts must be an integer from 1 to 30/,
    );
    await expect(start({ retrySchedule: [] })).rejects.toThrow(/retrySchedule must be a non-empty list/);
  });
});
