// Event Grid delivery timing: the response deadline per attempt, the retry schedule compressed by a time scale,
// delayed delivery to an endpoint that keeps failing, and the per-delivery timings a benchmark reads.
import { mkdtempSync, rmSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startEventGridEmulator } from '../src/eventgrid';
import type { EventGridEmulator, EventGridEmulatorOptions } from '../src/eventgrid';
import { keyVaultEvent, startWebhook, subscriber, tls } from './eventgridBed';
import type { RecordedRequest, Reply } from './eventgridBed';

/** Polls until `check` holds (the test's own timeout bounds the wait). */
async function until(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((resolve) => setTimeout(resolve, 5));
}

function adminCall(emulator: EventGridEmulator, method: string, adminPath: string) {
  return new Promise<{ status: number; body: unknown }>((resolve, reject) => {
    https
      .request(`${emulator.adminUrl}${adminPath}`, { method }, (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk.toString()));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: body ? (JSON.parse(body) as unknown) : null }),
        );
      })
      .on('error', reject)
      .end();
  });
}

describe('Event Grid emulator: delivery timing', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function start(options: Partial<EventGridEmulatorOptions> = {}): Promise<EventGridEmulator> {
    const deadLetterDir = mkdtempSync(path.join(os.tmpdir(), 'eventgrid-dead-letters-'));
    cleanups.push(() => rmSync(deadLetterDir, { recursive: true, force: true }));
    const emulator = await startEventGridEmulator({ tls, deadLetterDir, ...options });
    cleanups.push(() => emulator.close());
    return emulator;
  }

  async function subscribed(emulator: EventGridEmulator, reply: (request: RecordedRequest) => Reply) {
    const hook = await startWebhook(reply);
    cleanups.push(() => hook.close());
    await emulator.subscribe({ name: 'rotator', endpointUrl: hook.url, schema: 'EventGridSchema' });
    return hook;
  }

  it('an answer later than the response deadline is a failed attempt (TimedOut), retried; the late answer is recorded', async () => {
    const emulator = await start({ retrySchedule: [5], maxDeliveryAttempts: 5, responseTimeoutMs: 100 });
    const answers = subscriber(200);
    let notifications = 0;
    const hook = await subscribed(emulator, (request) => {
      const answer = answers(request);
      if (request.headers['aeg-event-type'] !== 'Notification') return answer;
      notifications += 1;
      return notifications === 1 ? { ...answer, delayMs: 400 } : answer;
    });
    const event = keyVaultEvent();
    emulator.systemTopicSink.publish([event]);
    await emulator.idle();

    expect(hook.notifications().map((n) => n.headers['aeg-delivery-count'])).toEqual(['0', '1']);
    const [first, second] = emulator.deliveries();
    expect(first).toMatchObject({ attempt: 1, outcome: 'TimedOut', next: 'retry' });
    expect(first).not.toHaveProperty('httpStatus');
    expect(first).not.toHaveProperty('latencyMs');
    expect(second).toMatchObject({ attempt: 2, httpStatus: 200, outcome: 'Succeeded', next: 'done' });
    const [record] = emulator.eventDeliveries();
    expect(record).toMatchObject({ eventId: event.id, status: 'delivered', attempts: 2 });
    expect(record?.ackLatencyMs).toBeGreaterThanOrEqual(100);

    await until(() => emulator.deliveries()[0]?.lateAnswer !== undefined);
    const late = emulator.deliveries()[0]?.lateAnswer;
    expect(late?.httpStatus).toBe(200);
    expect(late?.latencyMs).toBeGreaterThanOrEqual(100);
  });

  it("follows Event Grid's retry schedule compressed by the time scale", async () => {
    // 0.002: 10 s, 30 s, 1 min become 20 ms, 60 ms, 120 ms.
    const emulator = await start({ timeScale: 0.002, maxDeliveryAttempts: 5, delayedDelivery: false });
    await subscribed(emulator, subscriber(500, 500, 500, 200));
    emulator.systemTopicSink.publish([keyVaultEvent()]);
    await emulator.idle();

    const attempts = emulator.deliveries();
    expect(attempts.map((a) => a.outcome)).toEqual(['GenericError', 'GenericError', 'GenericError', 'Succeeded']);
    const gaps = attempts.slice(1).map((a, i) => Date.parse(a.dueAt) - Date.parse(attempts[i]?.answeredAt ?? a.dueAt));
    // Timers never fire early; a millisecond of clock rounding either way.
    expect(gaps[0]).toBeGreaterThanOrEqual(19);
    expect(gaps[1]).toBeGreaterThanOrEqual(59);
    expect(gaps[2]).toBeGreaterThanOrEqual(119);
  });

  it('delays new deliveries and retries to an endpoint that keeps failing, until a probe succeeds', async () => {
    const emulator = await start({
      retrySchedule: [5],
      maxDeliveryAttempts: 30,
      delayedDelivery: { afterFailures: 2, initialDelayMs: 150, maxDelayMs: 2_000 },
    });
    let healthy = false;
    const answers = subscriber(200);
    const hook = await subscribed(emulator, (request) => {
      const answer = answers(request);
      if (request.headers['aeg-event-type'] !== 'Notification') return answer;
      return healthy ? answer : { status: 500 };
    });

    const first = keyVaultEvent();
    emulator.systemTopicSink.publish([first]);
    await until(() => emulator.endpointHealth()[0]?.delayed === true);
    expect(emulator.endpointHealth()[0]).toMatchObject({ subscriptionName: 'rotator', consecutiveFailures: 2 });

    const later = [keyVaultEvent(), keyVaultEvent('Microsoft.KeyVault.KeyNewVersionCreated')];
    emulator.systemTopicSink.publish(later);
    expect(hook.notifications()).toHaveLength(2);
    expect(emulator.endpointHealth()[0]?.held).toBeGreaterThanOrEqual(2);

    // The first probe still fails: the delay doubles and nothing else went out meanwhile.
    await until(() => (emulator.endpointHealth()[0]?.consecutiveFailures ?? 0) >= 3);
    expect(hook.notifications()).toHaveLength(3);
    expect(emulator.endpointHealth()[0]?.delayed).toBe(true);

    healthy = true;
    await emulator.idle();
    expect(emulator.endpointHealth()[0]).toMatchObject({ consecutiveFailures: 0, delayed: false, held: 0 });
    const records = emulator.eventDeliveries();
    expect(records.map((r) => r.status)).toEqual(['delivered', 'delivered', 'delivered']);
    for (const event of later) {
      const firstAttempt = emulator.deliveries().find((a) => a.eventId === event.id && a.attempt === 1);
      expect(firstAttempt?.delayedMs).toBeGreaterThanOrEqual(100);
    }
  });

  it('delayed delivery can be turned off: a failing endpoint gets every new event at once', async () => {
    const emulator = await start({ retrySchedule: [1_000], maxDeliveryAttempts: 2, delayedDelivery: false });
    const hook = await subscribed(emulator, subscriber(500));
    emulator.systemTopicSink.publish(Array.from({ length: 12 }, () => keyVaultEvent()));
    await until(() => hook.notifications().length === 12);
    // The endpoint has answered the twelfth delivery; the emulator counts the failure when that answer arrives.
    await until(() => emulator.endpointHealth()[0]?.consecutiveFailures === 12);
    expect(emulator.endpointHealth()[0]).toMatchObject({ consecutiveFailures: 12, delayed: false });
  });

  it('the admin API lists attempts with their timings, each event with its ack latency, and endpoint health', async () => {
    const emulator = await start({ retrySchedule: [5], maxDeliveryAttempts: 3 });
    await subscribed(emulator, subscriber(503, 200));
    const event = keyVaultEvent();
    emulator.systemTopicSink.publish([event]);
    await emulator.idle();

    const attempts = await adminCall(emulator, 'GET', '/_admin/deliveries');
    expect(attempts.body).toEqual([
      expect.objectContaining({
        attempt: 1,
        httpStatus: 503,
        dueAt: expect.any(String) as unknown,
        delayedMs: expect.any(Number) as unknown,
        latencyMs: expect.any(Number) as unknown,
      }),
      expect.objectContaining({ attempt: 2, httpStatus: 200, answeredAt: expect.any(String) as unknown }),
    ]);
    const events = await adminCall(emulator, 'GET', '/_admin/deliveries/events');
    expect(events.body).toEqual([
      expect.objectContaining({
        eventId: event.id,
        status: 'delivered',
        attempts: 2,
        ackLatencyMs: expect.any(Number) as unknown,
      }),
    ]);
    const endpoints = await adminCall(emulator, 'GET', '/_admin/endpoints');
    expect(endpoints.body).toEqual([{ subscriptionName: 'rotator', consecutiveFailures: 0, delayed: false, held: 0 }]);

    expect((await adminCall(emulator, 'DELETE', '/_admin/deliveries')).status).toBe(204);
    expect((await adminCall(emulator, 'GET', '/_admin/deliveries')).body).toEqual([]);
    expect((await adminCall(emulator, 'GET', '/_admin/deliveries/events')).body).toEqual([]);
    expect((await adminCall(emulator, 'POST', '/_admin/deliveries')).status).toBe(404);
  });

  it('refuses invalid timing settings with the field named', async () => {
    await expect(start({ responseTimeoutMs: 0 })).rejects.toThrow(/responseTimeoutMs must be a positive number/);
    await expect(start({ timeScale: -1 })).rejects.toThrow(/timeScale must be a non-negative number/);
    await expect(start({ delayedDelivery: { afterFailures: 0 } })).rejects.toThrow(/afterFailures must be a positive/);
  });
});
