import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadFunctionApp } from '../src/registry';
import type { LocalHost } from '../src/server';
import { startLocalHost } from '../src/server';
import type { FixtureApp, LogLine } from './fixture';
import { createFixtureApp, parseLogLine, waitForLog } from './fixture';

const key = 'local-test-key';
const yearly = '0 0 0 1 1 *';

describe('loadFunctionApp', () => {
  let fixture: FixtureApp;
  beforeAll(() => {
    fixture = createFixtureApp();
  });
  afterAll(() => fixture.remove());

  it('captures every function with its bindings exactly as @azure/functions registers them', async () => {
    const app = await loadFunctionApp(fixture.dir, { log: () => {} });
    expect(app.functions.map((f) => f.name)).toEqual(['getItem', 'secret', 'explode', 'onKeyEvent', 'tick']);
    const byName = Object.fromEntries(app.functions.map((f) => [f.name, f]));
    const noDeferredBinding = { supportsDeferredBinding: 'false' };
    const httpOutput = { type: 'http', direction: 'out', name: expect.stringMatching(/^httpOutput/) as unknown };

    expect(byName.getItem).toMatchObject({ triggerType: 'httpTrigger', route: 'items/{id}', methods: ['GET', 'POST'] });
    expect(Object.values(byName.getItem!.bindings)).toEqual([
      {
        type: 'httpTrigger',
        direction: 'in',
        name: expect.stringMatching(/^httpTrigger/) as unknown,
        authLevel: 'anonymous',
        route: 'items/{id}',
        methods: ['GET', 'POST'],
        properties: noDeferredBinding,
      },
      httpOutput,
    ]);
    expect(Object.keys(byName.getItem!.bindings)[1]).toBe('$return');

    // No route: the function name; app.get: GET only.
    expect(byName.secret).toMatchObject({ route: 'secret', methods: ['GET'], authLevel: 'function' });
    expect(Object.values(byName.secret!.bindings)[0]).toMatchObject({
      type: 'httpTrigger',
      authLevel: 'function',
      methods: ['GET'],
    });

    expect(Object.values(byName.onKeyEvent!.bindings)).toEqual([
      {
        type: 'eventGridTrigger',
        direction: 'in',
        name: expect.stringMatching(/^eventGridTrigger/) as unknown,
        properties: noDeferredBinding,
      },
    ]);
    expect(byName.tick).toMatchObject({ triggerType: 'timerTrigger', schedule: '%TICK_SCHEDULE%' });
    expect(Object.values(byName.tick!.bindings)).toEqual([
      {
        type: 'timerTrigger',
        direction: 'in',
        name: expect.stringMatching(/^timerTrigger/) as unknown,
        schedule: '%TICK_SCHEDULE%',
        properties: noDeferredBinding,
      },
    ]);
  });

  it('loads the same app again with fresh registrations', async () => {
    const first = await loadFunctionApp(fixture.dir, { log: () => {} });
    const second = await loadFunctionApp(fixture.dir, { log: () => {} });
    expect(second.functions.map((f) => f.name)).toEqual(first.functions.map((f) => f.name));
  });

  // The host serves what the app registers and nothing more: anything else stops it, rather than being ignored.
  it.each([
    ['a hook', `app.hook.preInvocation(() => {});`, /"preInvocation" hook \(app\.hook\.\*\); the local host runs none/],
    [
      'another trigger',
      `app.serviceBusQueue('onMessage', { connection: 'SB', queueName: 'q', handler: () => {} });`,
      /"onMessage" has a serviceBusTrigger; the local host has none/,
    ],
    [
      'an output binding',
      `app.http('put', { extraOutputs: [output.storageBlob({ path: 'c/b', connection: 'S' })], handler: () => ({}) });`,
      /"put" has a blob out binding/,
    ],
  ])('fails loudly on %s, which the app does not use', async (_, registration, message) => {
    const unsupported = createFixtureApp(`const { app, output } = require('@azure/functions');\n${registration}\n`);
    try {
      await expect(loadFunctionApp(unsupported.dir, { log: () => {} })).rejects.toThrow(message);
    } finally {
      unsupported.remove();
    }
  });

  it('says what is wrong with a folder that is no function app', async () => {
    const noMain = createFixtureApp('');
    try {
      await expect(loadFunctionApp(`${noMain.dir}/missing`)).rejects.toThrow(/No package\.json in .*missing/);
    } finally {
      noMain.remove();
    }
  });
});

describe('startLocalHost', () => {
  let fixture: FixtureApp;
  let host: LocalHost;
  let lines: string[];

  beforeAll(async () => {
    fixture = createFixtureApp();
    process.env.TICK_SCHEDULE = yearly;
    lines = [];
    host = await startLocalHost({ appDir: fixture.dir, port: 0, functionKey: key, log: (line) => lines.push(line) });
  });
  afterAll(async () => {
    await host.close();
    fixture.remove();
  });
  afterEach(() => {
    lines.length = 0;
  });

  const eventGrid = (
    functionName: string,
    init: { eventType?: string; contentType?: string; body: string; method?: string },
  ) =>
    fetch(`${host.url}/runtime/webhooks/eventgrid?functionName=${functionName}`, {
      method: init.method ?? 'POST',
      headers: {
        ...(init.eventType ? { 'aeg-event-type': init.eventType } : {}),
        'content-type': init.contentType ?? 'application/json',
      },
      body: init.body,
    });
  const received = (): unknown[] =>
    lines
      .map(parseLogLine)
      .filter((l) => l.source === 'onKeyEvent' && l.message.startsWith('{"received"'))
      .map((l) => JSON.parse(l.message) as unknown);
  const gridEvent = (id: string, subject = 'keys/rotating-key') => ({
    id,
    eventType: 'Microsoft.KeyVault.KeyNearExpiry',
    subject,
    eventTime: '2030-01-01T00:00:00Z',
    topic: '/subscriptions/s/resourceGroups/g/providers/Microsoft.KeyVault/vaults/demo',
    data: { Id: `https://demo.vault.azure.net/keys/rotating-key/${id}`, VaultName: 'demo' },
    dataVersion: '1',
  });
  const cloudEvent = (id: string) => ({
    specversion: '1.0',
    id,
    source: '/subscriptions/s/resourceGroups/g/providers/Microsoft.KeyVault/vaults/demo',
    type: 'Microsoft.KeyVault.KeyNearExpiry',
    subject: 'rotating-key',
    time: '2030-01-01T00:00:00Z',
    data: { Id: `https://demo.vault.azure.net/keys/rotating-key/${id}` },
  });

  it('serves an HTTP trigger at /api/<route> with params, query, headers and body, honouring the response', async () => {
    const get = await fetch(`${host.url}/api/items/42?q=a%20b`, { headers: { 'x-test': 'hello' } });
    expect(get.status).toBe(200);
    expect(get.headers.get('content-type')).toBe('application/json');
    expect(get.headers.get('x-reply')).toBe('yes');
    const got = (await get.json()) as Record<string, unknown>;
    expect(got).toMatchObject({ id: '42', q: 'a b', header: 'hello', body: null, functionName: 'getItem' });

    const post = await fetch(`${host.url}/API/Items/7`, { method: 'POST', body: JSON.stringify({ name: 'k1' }) });
    expect(post.status).toBe(201);
    expect(await post.json()).toMatchObject({ id: '7', body: { name: 'k1' } });

    // The app's log line reaches the log unchanged, with time, level, function name and invocation id.
    const logged = await waitForLog(lines, (l) => l.message === JSON.stringify({ event: 'getItem', id: '42' }));
    expect(logged).toEqual<LogLine>({
      level: 'information',
      source: 'getItem',
      invocationId: got.invocationId as string,
      message: '{"event":"getItem","id":"42"}',
    });
  });

  it('answers 404 for unknown routes and methods the function does not accept', async () => {
    expect((await fetch(`${host.url}/api/nothing-here`)).status).toBe(404);
    expect((await fetch(`${host.url}/api/items/1`, { method: 'PUT' })).status).toBe(404);
    expect((await fetch(`${host.url}/api/items`)).status).toBe(404);
  });

  it('requires the function key in x-functions-key or code for authLevel function', async () => {
    const missing = await fetch(`${host.url}/api/secret`);
    expect(missing.status).toBe(401);
    expect(await missing.text()).toBe('');
    expect((await fetch(`${host.url}/api/secret`, { headers: { 'x-functions-key': 'wrong' } })).status).toBe(401);
    expect((await fetch(`${host.url}/api/secret?code=wrong`)).status).toBe(401);

    const byHeader = await fetch(`${host.url}/api/secret`, { headers: { 'x-functions-key': key } });
    expect(byHeader.status).toBe(200);
    expect(await byHeader.text()).toBe('classified');
    expect((await fetch(`${host.url}/api/secret?code=${key}`)).status).toBe(200);
  });

  it('answers 500 without details when a function throws, and logs the failure', async () => {
    const response = await fetch(`${host.url}/api/explode`);
    expect(response.status).toBe(500);
    expect(await response.text()).toBe('');
    const failure = await waitForLog(
      lines,
      (l) => l.level === 'error' && l.message.includes('detail that must not reach'),
    );
    expect(failure.source).toBe('explode');
    expect(failure.message).toMatch(/^Exception while executing function: Functions\.explode\. Error: detail/);
  });

  it('answers the Event Grid subscription validation handshake', async () => {
    const validation = [
      {
        id: 'v1',
        eventType: 'Microsoft.EventGrid.SubscriptionValidationEvent',
        subject: '',
        eventTime: '2030-01-01T00:00:00Z',
        data: { validationCode: '512d38b6-c7b8-40c8-89fe-f46f9e9622b6', validationUrl: 'https://example.invalid/x' },
        dataVersion: '2',
      },
    ];
    const response = await eventGrid('onKeyEvent', {
      eventType: 'SubscriptionValidation',
      body: JSON.stringify(validation),
    });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ validationResponse: '512d38b6-c7b8-40c8-89fe-f46f9e9622b6' });

    const noCode = await eventGrid('onKeyEvent', { eventType: 'SubscriptionValidation', body: '[{"data":{}}]' });
    expect(noCode.status).toBe(400);
    expect(await noCode.text()).toMatch(/validationCode/);
  });

  it('answers the CloudEvents abuse-protection handshake', async () => {
    const response = await fetch(`${host.url}/runtime/webhooks/eventgrid?functionName=onKeyEvent`, {
      method: 'OPTIONS',
      headers: { 'WebHook-Request-Origin': 'eventgrid.azure.net' },
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('webhook-allowed-origin')).toBe('eventgrid.azure.net');
  });

  it('delivers EventGridEvent batches once per event, in order, with the event as trigger input', async () => {
    const response = await eventGrid('onKeyEvent', {
      eventType: 'Notification',
      body: JSON.stringify([gridEvent('e1'), gridEvent('e2')]),
    });
    expect(response.status).toBe(202);
    expect(received()).toEqual([
      {
        received: 'e1',
        type: 'Microsoft.KeyVault.KeyNearExpiry',
        data: { id: 'https://demo.vault.azure.net/keys/rotating-key/e1', vaultName: 'demo' },
      },
      {
        received: 'e2',
        type: 'Microsoft.KeyVault.KeyNearExpiry',
        data: { id: 'https://demo.vault.azure.net/keys/rotating-key/e2', vaultName: 'demo' },
      },
    ]);
  });

  it('delivers CloudEvents, single and batched', async () => {
    const single = await eventGrid('onKeyEvent', {
      eventType: 'Notification',
      contentType: 'application/cloudevents+json; charset=utf-8',
      body: JSON.stringify(cloudEvent('c1')),
    });
    expect(single.status).toBe(202);
    const batch = await eventGrid('onKeyEvent', {
      eventType: 'Notification',
      contentType: 'application/cloudevents-batch+json; charset=utf-8',
      body: JSON.stringify([cloudEvent('c2'), cloudEvent('c3')]),
    });
    expect(batch.status).toBe(202);
    expect(received().map((r) => (r as { received: string }).received)).toEqual(['c1', 'c2', 'c3']);
  });

  it('answers 500 when the function fails on an event, so Event Grid retries', async () => {
    const response = await eventGrid('onKeyEvent', {
      eventType: 'Notification',
      body: JSON.stringify([gridEvent('ok'), gridEvent('bad', 'fail')]),
    });
    expect(response.status).toBe(500);
    expect(await response.text()).toBe('Exception while executing function: Functions.onKeyEvent');
    expect(received().map((r) => (r as { received: string }).received)).toEqual(['ok', 'bad']);
  });

  it('rejects malformed deliveries with 400 and unknown functions with 404', async () => {
    const notJson = await eventGrid('onKeyEvent', { eventType: 'Notification', body: '[{"id": ' });
    expect(notJson.status).toBe(400);
    expect(await notJson.text()).toMatch(/not JSON/);

    const noId = await eventGrid('onKeyEvent', {
      eventType: 'Notification',
      body: JSON.stringify([{ ...gridEvent('x'), id: undefined }]),
    });
    expect(noId.status).toBe(400);
    expect(await noId.text()).toBe('Event 0: has no "id".');

    expect((await eventGrid('onKeyEvent', { body: JSON.stringify([gridEvent('x')]) })).status).toBe(400);
    const unknown = await eventGrid('nope', { eventType: 'Notification', body: '[]' });
    expect(unknown.status).toBe(404);
    expect(await unknown.text()).toBe("cannot find function: 'nope'");
    expect((await eventGrid('getItem', { eventType: 'Notification', body: '[]' })).status).toBe(404);
    expect(received()).toEqual([]);
  });

  it('invokes a timer function now through the admin API, with the key', async () => {
    const invoke = (headers: Record<string, string>, body = '{"input":""}', name = 'tick') =>
      fetch(`${host.url}/admin/functions/${name}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body,
      });
    expect((await invoke({})).status).toBe(401);
    expect((await invoke({ 'x-functions-key': key }, 'not json')).status).toBe(400);
    expect((await invoke({ 'x-functions-key': key }, '{}', 'nope')).status).toBe(404);
    expect((await invoke({ 'x-functions-key': key }, '{}', 'getItem')).status).toBe(400);

    expect((await invoke({ 'x-functions-key': key })).status).toBe(202);
    const tick = await waitForLog(lines, (l) => l.source === 'tick' && l.message.startsWith('{"tick"'));
    expect(tick.level).toBe('warning');
    expect(JSON.parse(tick.message)).toEqual({ tick: true, isPastDue: false, scheduleStatus: null });
  });

  it('lists the registered functions on GET /admin/functions, with the key', async () => {
    expect((await fetch(`${host.url}/admin/functions`)).status).toBe(401);
    const response = await fetch(`${host.url}/admin/functions`, { headers: { 'x-functions-key': key } });
    expect(response.status).toBe(200);
    const listed = (await response.json()) as { name: string; triggerType: string }[];
    expect(listed.map((f) => [f.name, f.triggerType])).toEqual([
      ['getItem', 'httpTrigger'],
      ['secret', 'httpTrigger'],
      ['explode', 'httpTrigger'],
      ['onKeyEvent', 'eventGridTrigger'],
      ['tick', 'timerTrigger'],
    ]);
    expect(listed).toEqual(host.functions);
  });
});

describe('startLocalHost configuration', () => {
  let fixture: FixtureApp;
  beforeAll(() => {
    fixture = createFixtureApp();
  });
  afterAll(() => fixture.remove());
  afterEach(() => {
    delete process.env.TICK_SCHEDULE;
  });

  it('refuses to start without a key when a function needs one', async () => {
    process.env.TICK_SCHEDULE = yearly;
    await expect(startLocalHost({ appDir: fixture.dir, port: 0, log: () => {} })).rejects.toThrow(
      /No function key is configured, but "secret" \(authLevel function\) require/,
    );
  });

  it('refuses to start when a schedule names an app setting that is not set', async () => {
    await expect(startLocalHost({ appDir: fixture.dir, port: 0, functionKey: key, log: () => {} })).rejects.toThrow(
      `Function "tick" schedule: '%TICK_SCHEDULE%' does not resolve to a value (no app setting "TICK_SCHEDULE").`,
    );
  });

  it('runs a timer function on its schedule, with the schedule status', async () => {
    process.env.TICK_SCHEDULE = '* * * * * *';
    const lines: string[] = [];
    const host = await startLocalHost({
      appDir: fixture.dir,
      port: 0,
      functionKey: key,
      log: (line) => lines.push(line),
    });
    try {
      const tick = await waitForLog(lines, (l) => l.source === 'tick' && l.message.startsWith('{"tick"'));
      const { isPastDue, scheduleStatus } = JSON.parse(tick.message) as {
        isPastDue: boolean;
        scheduleStatus: { last: string; next: string; lastUpdated: string };
      };
      expect(isPastDue).toBe(false);
      expect(Date.parse(scheduleStatus.next) - Date.parse(scheduleStatus.last)).toBeGreaterThan(0);
    } finally {
      await host.close();
    }
  });

  it('says which port is taken', async () => {
    process.env.TICK_SCHEDULE = yearly;
    const first = await startLocalHost({ appDir: fixture.dir, port: 0, functionKey: key, log: () => {} });
    try {
      await expect(
        startLocalHost({ appDir: fixture.dir, port: first.port, functionKey: key, log: () => {} }),
      ).rejects.toThrow(`Port ${first.port} (local Functions host) is already in use`);
    } finally {
      await first.close();
    }
  });
});
