// Faults through the local host: slow and failing ARM, a failing long-running operation, write throttling, Key Vault
// out of reach or refused, and an event Event Grid gives up on. Each hub either ends on the new version with its
// data readable, or is reported failed alone; nothing is lost that the reconciler cannot repair.
import { existsSync, readFileSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { KEY_VAULT_HOST_PATTERN } from '../../emulators/keyvault';
import { freePort } from '../../emulators/ports';
import { SUB_A, startHarness } from '../support/harness';
import type { Harness, HubRef } from '../support/harness';
import {
  acceptedPuts,
  auditOf,
  fleet,
  hub,
  keyIdOf,
  keyVaultEvent,
  newVersionOf,
  outcomesFor,
  putStatuses,
  versions,
} from '../support/fleet';

async function expectAllOn(h: Harness, refs: HubRef[], keyId: string) {
  for (const ref of refs) {
    expect(h.hubKey(ref), ref.name).toBe(keyId);
    expect(await h.stack.arm.checkHubData(ref), ref.name).toMatchObject({ readable: true, keyIdentifier: keyId });
  }
}

type HubResults = { hubName: string; result: string; errorCode?: string }[];

describe('faults through the local host', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({
      // Event Grid gives up after three attempts (200 ms, then 400 ms apart).
      stack: { maxDeliveryAttempts: 3 },
      settings: {
        ROTATOR_HUB_RETRY_SECONDS: '0',
        ROTATOR_RECONCILE_SCHEDULE: '0 0 0 1 1 *',
      },
    });
  }, 60_000);
  afterEach(() => {
    // A failed test must not leave its fault on for the next one.
    h.stack.arm.faults.clear();
    h.stack.proxy.setRoute({ host: KEY_VAULT_HOST_PATTERN, port: h.stack.keyVault.port });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('slow ARM only slows a rotation down', async () => {
    const key = await h.createKey('slow-cmk');
    const refs = fleet('slow', 3);
    for (const ref of refs) await h.seedHub(ref, key.id!);
    await h.stack.eventGrid.idle();
    h.stack.arm.faults.setLatency(400);

    const response = await h.api('POST', '/api/keys/rotate', { keyId: keyIdOf('slow-cmk') });
    h.stack.arm.faults.setLatency(0);

    expect(response.status).toBe(200);
    expect(response.body.status).toBe('succeeded');
    await expectAllOn(h, refs, response.body.createdVersion as string);
    expect(h.stack.arm.requests().some((r) => r.fault === 'latency 400ms')).toBe(true);
  });

  it('bursts of 5xx on reads, writes and polls are absorbed', async () => {
    const key = await h.createKey('burst-cmk');
    const refs = fleet('burst', 3);
    for (const ref of refs) await h.seedHub(ref, key.id!);
    await h.stack.eventGrid.idle();
    h.stack.arm.clearRequests();
    h.stack.arm.faults.failNextRequests({ status: 503, count: 3, method: 'GET' });
    h.stack.arm.faults.failNextRequests({ status: 502, count: 2, method: 'PUT', path: '/IotHubs/burst-1' });
    h.stack.arm.faults.failNextRequests({ status: 504, count: 1, method: 'GET', path: 'operationResults' });
    h.stack.arm.faults.failNextRequests({ status: 500, count: 1, method: 'PUT', path: '/IotHubs/burst-3' });

    const response = await h.api('POST', '/api/keys/rotate', { keyId: keyIdOf('burst-cmk') });

    expect(response.status).toBe(200);
    expect(response.body.status).toBe('succeeded');
    await expectAllOn(h, refs, response.body.createdVersion as string);
    const faults = h.stack.arm
      .requests()
      .map((r) => r.fault)
      .filter((f) => f?.startsWith('status'));
    expect(faults.sort()).toEqual([
      'status 500',
      'status 502',
      'status 502',
      'status 503',
      'status 503',
      'status 503',
      'status 504',
    ]);
    expect(putStatuses(h, refs[0]!)).toEqual([502, 502, 201]);
    expect(putStatuses(h, refs[2]!)).toEqual([500, 201]);
  });

  it('a long-running operation failing for one hub among several: isolated, reported, the rest moved', async () => {
    const key = await h.createKey('lro-cmk');
    const refs = fleet('lro', 4);
    for (const ref of refs) await h.seedHub(ref, key.id!);
    await h.stack.eventGrid.idle();
    h.stack.arm.faults.failNextOperations({ count: 1, code: 'InternalServerError', message: 'Injected LRO failure.' });

    // A new version made outside the app: Key Vault's KeyNewVersionCreated drives the move.
    const v2 = await h.keys.createRsaKey('lro-cmk', { keySize: 2048, keyOps: ['wrapKey', 'unwrapKey'] });
    await h.stack.eventGrid.idle();

    const failed = refs.filter((ref) => h.hubKey(ref) !== v2.id);
    expect(failed).toHaveLength(1);
    const [broken] = failed as [HubRef];
    await expectAllOn(
      h,
      refs.filter((ref) => ref !== broken),
      v2.id!,
    );
    // The failed hub keeps its old key, rolled back by ARM, and can still read its data.
    expect(h.hubKey(broken)).toBe(key.id);
    expect(await h.stack.arm.checkHubData(broken)).toMatchObject({ readable: true });
    expect(outcomesFor(h, broken).map((o) => o.type)).toContain('CmkRotator.HubKeyUpdateFailed');
    const failure = (await auditOf(h, 'lro-cmk')).find((r) => r.result === 'failed');
    expect(failure).toMatchObject({ errorCode: 'HUB_UPDATE_FAILED', trigger: 'event' });
    expect(failure?.message).toContain('Injected LRO failure.');
    // A permanent failure is acknowledged (not retried by Event Grid until dead-lettered).
    expect(h.stack.eventGrid.deadLetters()).toEqual([]);
    expect(acceptedPuts(h, broken)).toBe(1);
  });

  it('subscription write throttling with 15 hubs: every hub moved, none failed for being throttled', async () => {
    const key = await h.createKey('throttle-cmk');
    const refs = Array.from({ length: 15 }, (_, i) => hub(SUB_A, `throttle-${i + 1}`));
    for (const ref of refs) await h.seedHub(ref, key.id!);
    await h.stack.eventGrid.idle();
    h.stack.arm.clearRequests();
    h.stack.arm.faults.setThrottling({ enabled: true, burst: 5, refillPerSecond: 5 });

    const response = await h.api('POST', '/api/keys/rotate', { keyId: keyIdOf('throttle-cmk') });
    await h.stack.eventGrid.idle();
    h.stack.arm.faults.setThrottling({ enabled: false });

    expect(response.status).toBe(200);
    expect(response.body.status).toBe('succeeded');
    const results = response.body.hubs as HubResults;
    expect(results.filter((r) => r.result === 'moved' || r.result === 'already-current')).toHaveLength(refs.length);
    await expectAllOn(h, refs, response.body.createdVersion as string);
    expect(h.stack.arm.requests().filter((r) => r.fault === 'throttled').length).toBeGreaterThan(0);
    for (const ref of refs) expect(acceptedPuts(h, ref), ref.name).toBe(1);
    expect((await auditOf(h, 'throttle-cmk')).filter((r) => r.result === 'failed')).toEqual([]);
  });

  it('Key Vault out of reach: 503 to the operator, 500 to Event Grid, nothing half done; fine once it is back', async () => {
    const key = await h.createKey('unreachable-cmk');
    const refs = fleet('unreachable', 2);
    for (const ref of refs) await h.seedHub(ref, key.id!);
    await h.stack.eventGrid.idle();
    h.stack.arm.clearRequests();
    // The proxy now sends Key Vault's host names to a port where nothing listens.
    h.stack.proxy.setRoute({ host: KEY_VAULT_HOST_PATTERN, port: await freePort() });
    const nearExpiry = keyVaultEvent('KeyNearExpiry', key.id!);

    const [rotate, delivered] = await Promise.all([
      h.api('POST', '/api/keys/rotate', { keyId: keyIdOf('unreachable-cmk') }),
      h.deliver([nearExpiry]),
    ]);
    h.stack.proxy.setRoute({ host: KEY_VAULT_HOST_PATTERN, port: h.stack.keyVault.port });

    expect(rotate.status).toBe(503);
    expect(rotate.body.error.code).toBe('UPSTREAM_UNAVAILABLE');
    expect(delivered).toBe(500);
    expect(await versions(h, 'unreachable-cmk')).toHaveLength(1);
    expect(h.stack.arm.requests().filter((r) => r.method === 'PUT')).toEqual([]);
    expect((await auditOf(h, 'unreachable-cmk')).map((r) => r.result)).toEqual(expect.arrayContaining(['retrying']));

    // Event Grid's next attempt finds Key Vault back.
    expect(await h.deliver([nearExpiry])).toBe(202);
    await expectAllOn(h, refs, await newVersionOf(h, 'unreachable-cmk', key.properties.version!));
  });

  it('an identity that is refused tokens: 502 ACCESS_DENIED, recorded, and the event is not retried', async () => {
    const key = await h.createKey('denied-cmk');
    const ref = hub(SUB_A, 'denied-hub');
    await h.seedHub(ref, key.id!);
    await h.stack.eventGrid.idle();
    // A second instance whose managed identity endpoint rejects it (a wrong identity header).
    const refused = await h.startInstance({ IDENTITY_HEADER: 'not-the-secret' });

    const rotate = await refused.api('POST', '/api/keys/rotate', { keyId: keyIdOf('denied-cmk') });
    const delivered = await refused.deliver([keyVaultEvent('KeyNearExpiry', key.id!)]);
    await refused.host.stop();

    expect(rotate.status).toBe(502);
    expect(rotate.body.error.code).toBe('ACCESS_DENIED');
    expect(delivered).toBe(202);
    const failures = (await auditOf(h, 'denied-cmk')).filter((r) => r.result === 'failed');
    expect(failures.map((r) => [r.trigger, r.errorCode]).sort()).toEqual([
      ['event', 'ACCESS_DENIED'],
      ['manual-rotate', 'ACCESS_DENIED'],
    ]);
    expect(await versions(h, 'denied-cmk')).toHaveLength(1);
    expect(h.hubKey(ref)).toBe(key.id);
  });

  it('an event the app keeps failing transiently is dead-lettered; the reconciler repairs the hubs later', async () => {
    const key = await h.createKey('dead-cmk');
    const refs = fleet('dead', 2);
    for (const ref of refs) await h.seedHub(ref, key.id!);
    await h.stack.eventGrid.idle();
    // ARM answers every request 503 for a while.
    h.stack.arm.faults.failNextRequests({ status: 503, count: 100_000 });

    const v2 = await h.keys.createRsaKey('dead-cmk', { keySize: 2048, keyOps: ['wrapKey', 'unwrapKey'] });
    await h.stack.eventGrid.idle();
    h.stack.arm.faults.clear();

    const dead = h.stack.eventGrid.deadLetters().filter((d) => JSON.stringify(d.content).includes(v2.id!));
    expect(dead).toHaveLength(1);
    expect(existsSync(dead[0]!.filePath)).toBe(true);
    expect(JSON.parse(readFileSync(dead[0]!.filePath, 'utf8'))).toMatchObject([
      {
        eventType: 'Microsoft.KeyVault.KeyNewVersionCreated',
        deadLetterReason: 'MaxDeliveryAttemptsExceeded',
        deliveryAttempts: 3,
        lastHttpStatusCode: 500,
      },
    ]);
    expect(refs.every((ref) => h.hubKey(ref) === key.id)).toBe(true);

    const response = await h.api('POST', '/api/reconcile');

    expect(response.status).toBe(200);
    const drift = (response.body.drift as { hubId?: string; kind: string }[]).filter((d) =>
      /\/dead-\d$/.test(d.hubId ?? ''),
    );
    expect(drift.map((d) => d.kind)).toEqual(['hub-behind', 'hub-behind']);
    await expectAllOn(h, refs, v2.id!);
  });
});
