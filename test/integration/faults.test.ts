// Faults through the local host: slow and failing ARM, failing long-running operations, Key Vault out of reach or
// refused, and an event Event Grid gives up on. Each hub either ends on the new version with its data readable, or
// is reported failed alone; nothing is lost that the reconciler cannot repair.
import { existsSync, readFileSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { KEY_VAULT_HOST_PATTERN } from '@cmk-rotator/emulators/keyvault';
import { freePort } from '@cmk-rotator/emulators/tcpPorts';
import { SUB_A, startHarness } from '../support/harness';
import type { Harness } from '../support/harness';
import {
  acceptedPuts,
  auditOf,
  expectAllOn,
  fleet,
  hub,
  hubAudit,
  jobIdFor,
  keyIdOf,
  keyVaultEvent,
  newVersionOf,
  outcomesFor,
  putStatuses,
  resultsOf,
  settleIfAny,
  versions,
  withoutNearExpiryEvents,
} from '../support/fleet';

const allMoved = (names: string[]) => Object.fromEntries(names.map((n) => [n, 'moved']));

describe('faults through the local host', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({
      // Event Grid gives up after three attempts (200 ms, then 400 ms apart), and keeps delivering on time to an
      // endpoint that failed a while (delayed delivery would hold back the next tests' events).
      stack: { maxDeliveryAttempts: 3, eventGrid: { delayedDelivery: false } },
      settings: {
        // Transient failures are retried at once (no backoff), still counted: five attempts, then failed.
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
    await settleIfAny(h, key.id!);
    h.stack.arm.faults.setLatency(400);

    const response = await h.api('POST', '/api/keys/rotate', { keyId: keyIdOf('slow-cmk') });
    expect(response.status).toBe(200);
    expect(response.body.status).toBe('in-progress');
    const job = await h.settle(response.body.jobId as string);
    h.stack.arm.faults.setLatency(0);

    expect(resultsOf(job)).toEqual(allMoved(refs.map((r) => r.name)));
    await expectAllOn(h, refs, response.body.createdVersion as string);
    for (const ref of refs) expect(putStatuses(h, ref), ref.name).toEqual([201]);
    expect(h.stack.arm.requests().some((r) => r.fault === 'latency 400ms')).toBe(true);
  }, 60_000);

  it('bursts of 5xx on reads, writes and polls are absorbed by retried steps, each failure counted', async () => {
    const key = await h.createKey('burst-cmk');
    const refs = fleet('burst', 3);
    for (const ref of refs) await h.seedHub(ref, key.id!);
    await settleIfAny(h, key.id!);
    h.stack.arm.clearRequests();
    h.stack.arm.faults.failNextRequests({ status: 500, count: 3, method: 'GET', path: '/IotHubs/burst-2' });
    h.stack.arm.faults.failNextRequests({ status: 502, count: 2, method: 'PUT', path: '/IotHubs/burst-1' });
    h.stack.arm.faults.failNextRequests({ status: 504, count: 1, method: 'GET', path: 'operationResults' });
    h.stack.arm.faults.failNextRequests({ status: 500, count: 1, method: 'PUT', path: '/IotHubs/burst-3' });

    const response = await h.api('POST', '/api/keys/rotate', { keyId: keyIdOf('burst-cmk') });

    expect(response.status).toBe(200);
    const job = await h.settle(response.body.jobId as string);
    expect(resultsOf(job)).toEqual(allMoved(refs.map((r) => r.name)));
    await expectAllOn(h, refs, response.body.createdVersion as string);
    const faults = h.stack.arm
      .requests()
      .map((r) => r.fault)
      .filter((f) => f?.startsWith('status'));
    expect(faults.sort()).toEqual([
      'status 500',
      'status 500',
      'status 500',
      'status 500',
      'status 502',
      'status 502',
      'status 504',
    ]);
    expect(putStatuses(h, refs[0]!)).toEqual([502, 502, 201]);
    expect(putStatuses(h, refs[1]!)).toEqual([201]);
    expect(putStatuses(h, refs[2]!)).toEqual([500, 201]);
    // Every failure was an attempt (the one 504 on a look at an operation belongs to one of the three hubs).
    const attempts = Object.fromEntries(job.hubs.map((x) => [x.hubName, x.attempts ?? 0]));
    expect(attempts['burst-1']! - 2 + attempts['burst-2']! - 3 + attempts['burst-3']! - 1).toBe(1);
    expect((await auditOf(h, 'burst-cmk')).filter((r) => r.result === 'moved')).toHaveLength(3);
  }, 60_000);

  it('failed long-running operations: an internal error is retried, any other fails its hub alone', async () => {
    const key = await h.createKey('lro-cmk');
    const refs = fleet('lro', 4);
    for (const ref of refs) await h.seedHub(ref, key.id!);
    await settleIfAny(h, key.id!);
    h.stack.arm.clearRequests();
    // The first operation to end fails with ARM's own trouble, the second because the hub cannot use the key.
    h.stack.arm.faults.failNextOperations({ count: 1, code: 'InternalServerError', message: 'Injected LRO failure.' });
    h.stack.arm.faults.failNextOperations({ count: 1, code: 'KeyVaultKeyNotUsable', message: 'Injected denial.' });

    // A new version made outside the app: Key Vault's KeyNewVersionCreated drives the move.
    const v2 = await h.keys.createRsaKey('lro-cmk', { keySize: 2048, keyOps: ['wrapKey', 'unwrapKey'] });
    const job = await h.settle(jobIdFor(v2.id!));
    await h.stack.eventGrid.idle();

    const failed = job.hubs.filter((x) => x.result === 'failed');
    expect(failed).toMatchObject([
      { errorCode: 'HUB_UPDATE_FAILED', reason: expect.stringContaining('Injected denial.') },
    ]);
    expect(job.progress).toMatchObject({ moved: 3, failed: 1 });
    const broken = refs.find((r) => r.name === failed[0]!.hubName)!;
    await expectAllOn(
      h,
      refs.filter((ref) => ref !== broken),
      v2.id!,
    );
    // The failed hub keeps its old key, rolled back by ARM, and can still read its data.
    expect(h.hubKey(broken)).toBe(key.id);
    expect(await h.stack.arm.checkHubData(broken)).toMatchObject({ readable: true });
    expect(outcomesFor(h, broken).map((o) => o.type)).toEqual(['CmkRotator.HubKeyUpdateFailed']);
    expect(await hubAudit(h, 'lro-cmk', broken, v2.id!)).toMatchObject([
      {
        result: 'failed',
        errorCode: 'HUB_UPDATE_FAILED',
        trigger: 'event',
        message: expect.stringContaining('denial'),
      },
    ]);
    // The internal failure cost one more read and PUT (its first update was rolled back): one PUT more in all.
    expect(refs.reduce((n, ref) => n + acceptedPuts(h, ref), 0)).toBe(refs.length + 1);
    // A permanent failure is acknowledged (not retried by Event Grid until dead-lettered).
    expect(h.stack.eventGrid.deadLetters()).toEqual([]);
  }, 60_000);

  it('Key Vault out of reach: 503 to the operator, 500 to Event Grid, nothing half done; fine once it is back', async () => {
    const key = await withoutNearExpiryEvents(h, () => h.createKey('unreachable-cmk', { expiresInDays: 20 }));
    const refs = fleet('unreachable', 2);
    for (const ref of refs) await h.seedHub(ref, key.id!);
    await settleIfAny(h, key.id!);
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
    // (Records about hubs are those of Key Vault's event for the key's first version, which found them current.)
    const audit = (await auditOf(h, 'unreachable-cmk')).filter((r) => !r.hubId);
    expect(audit.map((r) => r.result)).toEqual(['retrying']);
    expect(audit[0]).toMatchObject({ trigger: 'event', errorCode: 'UPSTREAM_UNAVAILABLE' });

    // Event Grid's next attempt finds Key Vault back.
    expect(await h.deliver([nearExpiry])).toBe(202);
    const created = await newVersionOf(h, 'unreachable-cmk', key.properties.version!);
    expect(resultsOf(await h.settle(jobIdFor(created)))).toEqual(allMoved(refs.map((r) => r.name)));
    await expectAllOn(h, refs, created);
  }, 60_000);

  it('an identity that is refused tokens: 502 ACCESS_DENIED, recorded, and the event is not retried', async () => {
    const key = await h.createKey('denied-cmk');
    const ref = hub(SUB_A, 'denied-hub');
    await h.seedHub(ref, key.id!);
    await settleIfAny(h, key.id!);
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
  }, 60_000);

  it('an event the app keeps failing transiently is dead-lettered; the reconciler repairs the hubs later', async () => {
    const key = await h.createKey('dead-cmk');
    const refs = fleet('dead', 2);
    for (const ref of refs) await h.seedHub(ref, key.id!);
    await settleIfAny(h, key.id!);
    // ARM answers every request 500 for a while: the hubs cannot even be listed.
    h.stack.arm.faults.failNextRequests({ status: 500, count: 100_000 });

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
    expect(await h.job(jobIdFor(v2.id!))).toBeUndefined();

    const response = await h.api('POST', '/api/reconcile');

    expect(response.status).toBe(200);
    const drift = (response.body.drift as { hubId?: string; kind: string }[]).filter((d) =>
      /\/dead-\d$/.test(d.hubId ?? ''),
    );
    expect(drift.map((d) => d.kind)).toEqual(['hub-behind', 'hub-behind']);
    expect(response.body.rotations).toContainEqual(
      expect.objectContaining({ jobId: jobIdFor(v2.id!), status: 'in-progress', trigger: 'reconcile' }),
    );
    expect(resultsOf(await h.settle(jobIdFor(v2.id!)))).toEqual(allMoved(refs.map((r) => r.name)));
    await expectAllOn(h, refs, v2.id!);
    for (const ref of refs) expect(acceptedPuts(h, ref), ref.name).toBe(1);
  }, 60_000);
});
