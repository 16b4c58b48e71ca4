// Durability through the local host: a host killed mid-rotation or mid-plan, two instances on one event, hubs that
// fail for a while, and the reconciler repairing what events missed. The outcome never changes: one new version,
// every hub on it with exactly one accepted PUT, every hub's data still readable.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SUB_A, SUB_B, startHarness } from '../support/harness';
import type { Harness, HubRef } from '../support/harness';
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
  withEventsLimitedTo,
  withoutNearExpiryEvents,
} from '../support/fleet';

const SETTINGS = {
  // A dead instance's step is taken over by its watchdog message 2 s after it claimed it...
  ROTATOR_HUB_CLAIM_SECONDS: '2',
  // ...not by the queue's own lease, which stays at Azure's 10 minutes.
  LOCAL_HOST_QUEUE_LEASE_SECONDS: '600',
  // Transient failures are retried at once (no backoff), still counted: five attempts, then failed.
  ROTATOR_HUB_RETRY_SECONDS: '0',
  // The timer stays out of the way (1 January only); the tests run the reconciler themselves.
  ROTATOR_RECONCILE_SCHEDULE: '0 0 0 1 1 *',
};

const allMoved = (refs: HubRef[]) => Object.fromEntries(refs.map((r) => [r.name, 'moved']));

/** Runs the reconciler over HTTP and returns its report. */
async function reconcile(h: Harness) {
  const response = await h.api('POST', '/api/reconcile');
  expect(response.status).toBe(200);
  return response.body as {
    drift: { keyId: string; hubId?: string; kind: string; detail: string }[];
    rotations: { keyId: string; jobId?: string; createdVersion?: string; status: string; hubs: unknown[] }[];
    failures: unknown[];
  };
}

describe('durability through the local host', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ settings: SETTINGS });
  }, 60_000);
  afterAll(async () => {
    await h?.close();
  });

  it('a host killed mid-rotation, hub reads and writes in flight: one version, every hub moved once', async () => {
    const key = await h.createKey('crash-cmk', { expiresInDays: 31 });
    const refs = fleet('crash', 6);
    for (const ref of refs) await h.seedHub(ref, key.id!);
    await settleIfAny(h, key.id!);
    h.stack.arm.clearRequests();
    // Slow ARM, and updates that outlast the restart: the host dies with hub reads and writes in flight, and the
    // next one meets the updates it started still running.
    h.stack.arm.faults.setLatency(300);
    for (const ref of refs) h.stack.arm.timing.setHub(ref, { operationMs: 8_000, retryAfterSeconds: 1 });

    // Two days on the key is inside its 30-day window: Key Vault raises KeyNearExpiry, Event Grid delivers it.
    await h.stack.keyVault.admin.advanceClock(2 * 86_400);
    await h.until(() => refs.some((ref) => putStatuses(h, ref).length > 0), 'the first hub PUT reached ARM');
    await h.host.kill();
    const created = await newVersionOf(h, 'crash-cmk', key.properties.version!);
    h.stack.arm.faults.setLatency(0);
    await h.restartHost('kill');

    // The restarted host takes the dead one's steps over from their watchdog messages.
    const job = await h.settle(jobIdFor(created));
    await h.stack.eventGrid.idle();

    expect(resultsOf(job)).toEqual(allMoved(refs));
    expect(await versions(h, 'crash-cmk')).toHaveLength(2);
    await expectAllOn(h, refs, created);
    for (const ref of refs) expect(acceptedPuts(h, ref), ref.name).toBe(1);
    expect(h.stack.eventGrid.deadLetters()).toEqual([]);
    const audit = await auditOf(h, 'crash-cmk');
    expect(audit.filter((r) => r.result === 'rotated')).toHaveLength(1);
    expect(audit.filter((r) => r.result === 'moved')).toHaveLength(refs.length);
    // The job is complete: nothing for the reconciler to resume or repair.
    const report = await reconcile(h);
    expect(report.drift.filter((d) => d.keyId === keyIdOf('crash-cmk'))).toEqual([]);
    expect(report.rotations.filter((r) => r.keyId === keyIdOf('crash-cmk'))).toEqual([]);
  }, 90_000);

  it('a host killed while planning, after creating the version, no redelivery coming: the reconciler finishes', async () => {
    const refs = fleet('resume', 4);
    // One hand-made delivery, and Key Vault's own events about the key go nowhere for now.
    const key = await withEventsLimitedTo(h, ['Microsoft.KeyVault.KeyExpired'], async () => {
      const made = await h.createKey('resume-cmk', { expiresInDays: 20 });
      for (const ref of refs) await h.seedHub(ref, made.id!);
      // Listing the hubs (a page of two at a time) now takes seconds: the host dies before it opens the job.
      h.stack.arm.faults.setLatency(2_000);
      const delivery = h.deliver([keyVaultEvent('KeyNearExpiry', made.id!)]).catch(() => 'connection lost');
      await h.until(async () => (await versions(h, 'resume-cmk')).length === 2, 'the new version');
      await h.host.kill();
      expect(await delivery).toBe('connection lost');
      h.stack.arm.faults.setLatency(0);
      await h.restartHost('kill');
      return made;
    });
    const created = await newVersionOf(h, 'resume-cmk', key.properties.version!);
    expect(await h.job(jobIdFor(created))).toBeUndefined();
    expect(refs.every((ref) => h.hubKey(ref) === key.id)).toBe(true);

    const report = await reconcile(h);

    expect(report.drift.filter((d) => d.keyId === keyIdOf('resume-cmk')).map((d) => d.kind)).toEqual(
      refs.map(() => 'hub-behind'),
    );
    expect(report.rotations.filter((r) => r.keyId === keyIdOf('resume-cmk'))).toMatchObject([
      { jobId: jobIdFor(created), status: 'in-progress' },
    ]);
    expect(resultsOf(await h.settle(jobIdFor(created)))).toEqual(allMoved(refs));
    expect(await versions(h, 'resume-cmk')).toHaveLength(2);
    await expectAllOn(h, refs, created);
    for (const ref of refs) expect(acceptedPuts(h, ref), ref.name).toBe(1);
  }, 90_000);

  it('two instances handling the same event at the same moment: one version, each hub written once', async () => {
    const second = await h.startInstance();
    const key = await withoutNearExpiryEvents(h, () => h.createKey('twin-cmk', { expiresInDays: 20 }));
    const refs = fleet('twin', 5);
    for (const ref of refs) await h.seedHub(ref, key.id!);
    await settleIfAny(h, key.id!);
    const nearExpiry = keyVaultEvent('KeyNearExpiry', key.id!);

    const statuses = await Promise.all([h.deliver([nearExpiry]), second.deliver([nearExpiry])]);

    expect(statuses).toEqual([202, 202]);
    expect(await versions(h, 'twin-cmk')).toHaveLength(2);
    const created = await newVersionOf(h, 'twin-cmk', key.properties.version!);
    expect(resultsOf(await h.settle(jobIdFor(created)))).toEqual(allMoved(refs));
    await h.stack.eventGrid.idle();
    await expectAllOn(h, refs, created);
    for (const ref of refs) expect(acceptedPuts(h, ref), ref.name).toBe(1);
    const audit = await auditOf(h, 'twin-cmk');
    expect(audit.filter((r) => r.result === 'rotated')).toHaveLength(1);
    expect(audit.filter((r) => r.result === 'moved')).toHaveLength(refs.length);
    await second.host.stop();
  }, 60_000);

  it('retries a hub step by step until it goes through; one that keeps failing is marked failed, alone', async () => {
    const key = await h.createKey('flaky-cmk');
    const steady = [hub(SUB_A, 'flaky-steady-1'), hub(SUB_B, 'flaky-steady-2')];
    const recovers = hub(SUB_A, 'flaky-recovers');
    const broken = hub(SUB_B, 'flaky-broken');
    for (const ref of [...steady, recovers, broken]) await h.seedHub(ref, key.id!);
    await settleIfAny(h, key.id!);
    h.stack.arm.clearRequests();
    // 502 (no Retry-After): a transient failure, each one an attempt. Two, then success; or one every time.
    h.stack.arm.faults.failNextRequests({ status: 502, count: 2, method: 'PUT', path: '/IotHubs/flaky-recovers' });
    h.stack.arm.faults.failNextRequests({ status: 502, count: 1000, method: 'PUT', path: '/IotHubs/flaky-broken' });

    const v2 = await h.keys.createRsaKey('flaky-cmk', { keySize: 2048, keyOps: ['wrapKey', 'unwrapKey'] });
    const job = await h.settle(jobIdFor(v2.id!));
    await h.stack.eventGrid.idle();
    h.stack.arm.faults.clear();

    expect(resultsOf(job)).toEqual({ ...allMoved([...steady, recovers]), 'flaky-broken': 'failed' });
    const attempts = Object.fromEntries(job.hubs.map((x) => [x.hubName, x.attempts]));
    expect(attempts).toEqual({ 'flaky-steady-1': 0, 'flaky-steady-2': 0, 'flaky-recovers': 2, 'flaky-broken': 5 });
    await expectAllOn(h, [...steady, recovers], v2.id!);
    for (const ref of steady) expect(putStatuses(h, ref)).toEqual([201]);
    expect(putStatuses(h, recovers)).toEqual([502, 502, 201]);
    // One record per hub for the job, whatever it took: the final state.
    expect((await hubAudit(h, 'flaky-cmk', recovers, v2.id!)).map((r) => r.result)).toEqual(['moved']);
    // The attempt limit (5) is counted across steps; the hub keeps its key and its data.
    expect(putStatuses(h, broken)).toEqual([502, 502, 502, 502, 502]);
    expect(h.hubKey(broken)).toBe(key.id);
    expect(await h.stack.arm.checkHubData(broken)).toMatchObject({ readable: true });
    expect(await hubAudit(h, 'flaky-cmk', broken, v2.id!)).toMatchObject([
      { result: 'failed', errorCode: 'UPSTREAM_UNAVAILABLE', message: expect.stringContaining('after 5 attempts') },
    ]);
    expect(outcomesFor(h, broken).map((o) => o.type)).toEqual(['CmkRotator.HubKeyUpdateFailed']);
    // The event was acknowledged when planned, never redelivered or dead-lettered.
    expect(h.stack.eventGrid.deadLetters()).toEqual([]);

    // Once ARM accepts writes again, an operator's sync retries the failed hub (only that one).
    const sync = await h.api('POST', '/api/keys/sync', { keyId: keyIdOf('flaky-cmk') });
    expect(sync.status).toBe(200);
    expect(sync.body).toMatchObject({ status: 'in-progress', jobId: jobIdFor(v2.id!) });
    expect(resultsOf(await h.settle(jobIdFor(v2.id!)))).toEqual(allMoved([...steady, recovers, broken]));
    await expectAllOn(h, [broken], v2.id!);
    expect(putStatuses(h, broken)).toEqual([502, 502, 502, 502, 502, 201]);
    for (const ref of [...steady, recovers]) expect(acceptedPuts(h, ref), ref.name).toBe(1);
    expect(outcomesFor(h, broken).map((o) => o.type)).toEqual([
      'CmkRotator.HubKeyUpdateFailed',
      'CmkRotator.HubKeyUpdated',
    ]);
  }, 60_000);

  it('the reconciler moves hubs left behind; a hub on a disabled version is reported, and moved once it can be', async () => {
    const old = await h.createKey('drift-cmk');
    const current = await h.keys.createRsaKey('drift-cmk', { keySize: 2048, keyOps: ['wrapKey', 'unwrapKey'] });
    const revokedOld = await h.createKey('revoked-cmk');
    const revokedCurrent = await h.keys.createRsaKey('revoked-cmk', {
      keySize: 2048,
      keyOps: ['wrapKey', 'unwrapKey'],
    });
    await h.stack.eventGrid.idle();
    // Hubs restored from an old template, after the new versions' events came and went.
    const behind = [hub(SUB_A, 'drift-1'), hub(SUB_B, 'drift-2')];
    for (const ref of behind) await h.seedHub(ref, old.id!);
    const revoked = hub(SUB_A, 'revoked-hub');
    await h.seedHub(revoked, revokedOld.id!);
    await h.keys.updateKeyProperties('revoked-cmk', revokedOld.properties.version!, { enabled: false });

    // The hourly timer, run now through the host's admin API.
    const logsBefore = h.host.logs.length;
    expect((await h.api('POST', '/admin/functions/reconcile', { input: null })).status).toBe(202);
    await h.until(
      () => h.host.logs.slice(logsBefore).some((l) => l.functionName === 'reconcile' && l.event === 'reconcile.done'),
      'the reconcile timer finished',
    );

    expect(resultsOf(await h.settle(jobIdFor(current.id!)))).toEqual(allMoved(behind));
    await expectAllOn(h, behind, current.id!);
    const driftAudit = (await auditOf(h, 'drift-cmk')).filter((r) => r.result === 'drift');
    expect(driftAudit.map((r) => r.hubId?.split('/').pop()).sort()).toEqual(['drift-1', 'drift-2']);
    expect(driftAudit.every((r) => r.trigger === 'reconcile' && r.message?.startsWith('hub-behind:'))).toBe(true);
    for (const ref of behind) {
      expect(outcomesFor(h, ref).map((o) => o.type)).toEqual(['CmkRotator.DriftDetected', 'CmkRotator.HubKeyUpdated']);
    }
    // The hub on the disabled version is reported; it cannot re-wrap its data while that version is disabled, so
    // the update fails (the hub keeps its key) and is reported too.
    const revokedJob = await h.settle(jobIdFor(revokedCurrent.id!));
    expect(revokedJob.hubs).toMatchObject([
      { hubName: 'revoked-hub', result: 'failed', errorCode: 'HUB_UPDATE_FAILED' },
    ]);
    const revokedAudit = await auditOf(h, 'revoked-cmk');
    expect(revokedAudit.find((r) => r.result === 'drift')?.message).toMatch(/^hub-on-unusable-version: .*disabled/);
    expect(revokedAudit.filter((r) => r.result === 'failed')).toMatchObject([{ errorCode: 'HUB_UPDATE_FAILED' }]);
    expect(outcomesFor(h, revoked).map((o) => o.type)).toEqual(
      expect.arrayContaining(['CmkRotator.DriftDetected', 'CmkRotator.HubKeyUpdateFailed']),
    );
    expect(h.hubKey(revoked)).toBe(revokedOld.id);

    // With the old version enabled again, the next reconcile moves it and its data stays readable.
    await h.keys.updateKeyProperties('revoked-cmk', revokedOld.properties.version!, { enabled: true });
    const report = await reconcile(h);
    expect(report.drift).toEqual(
      expect.arrayContaining([expect.objectContaining({ hubId: expect.stringMatching(/\/revoked-hub$/) })]),
    );
    expect(resultsOf(await h.settle(jobIdFor(revokedCurrent.id!)))).toEqual({ 'revoked-hub': 'moved' });
    await expectAllOn(h, [revoked], revokedCurrent.id!);
    // Nothing else drifts, and nothing was rotated.
    expect((await reconcile(h)).drift.filter((d) => /\/(drift|revoked)-cmk$/.test(d.keyId))).toEqual([]);
    expect(await versions(h, 'drift-cmk')).toHaveLength(2);
    expect(await versions(h, 'revoked-cmk')).toHaveLength(2);
    for (const ref of [...behind, revoked]) expect(acceptedPuts(h, ref), ref.name).toBe(ref === revoked ? 2 : 1);
  }, 90_000);

  it('the reconciler rotates a key whose near-expiry event never arrived, once', async () => {
    const key = await withoutNearExpiryEvents(h, () => h.createKey('missed-cmk', { expiresInDays: 20 }));
    const ref = hub(SUB_B, 'missed-hub');
    await h.seedHub(ref, key.id!);
    await settleIfAny(h, key.id!);

    const report = await reconcile(h);

    expect(report.drift).toContainEqual(
      expect.objectContaining({ keyId: keyIdOf('missed-cmk'), kind: 'key-near-expiry' }),
    );
    const created = await newVersionOf(h, 'missed-cmk', key.properties.version!);
    expect(report.rotations.find((r) => r.keyId === keyIdOf('missed-cmk'))).toMatchObject({
      createdVersion: created,
      jobId: jobIdFor(created),
      status: 'in-progress',
      hubs: [{ hubName: 'missed-hub', result: 'queued' }],
    });
    expect(resultsOf(await h.settle(jobIdFor(created)))).toEqual({ 'missed-hub': 'moved' });
    await h.stack.eventGrid.idle();
    await expectAllOn(h, [ref], created);
    expect((await auditOf(h, 'missed-cmk')).filter((r) => r.result === 'rotated')).toMatchObject([
      { trigger: 'reconcile' },
    ]);

    // A second pass finds nothing to do.
    const again = await reconcile(h);
    expect(again.drift.filter((d) => d.keyId === keyIdOf('missed-cmk'))).toEqual([]);
    expect(await versions(h, 'missed-cmk')).toHaveLength(2);
    expect(acceptedPuts(h, ref)).toBe(1);
  }, 60_000);

  it('the reconciler and the event for the same near-expiry at the same moment create one version', async () => {
    const key = await withoutNearExpiryEvents(h, () => h.createKey('both-cmk', { expiresInDays: 20 }));
    const refs = fleet('both', 3);
    for (const ref of refs) await h.seedHub(ref, key.id!);
    await settleIfAny(h, key.id!);

    const [delivered, reconciled] = await Promise.all([
      h.deliver([keyVaultEvent('KeyNearExpiry', key.id!)]),
      h.api('POST', '/api/reconcile'),
    ]);

    expect(delivered).toBe(202);
    expect(reconciled.status).toBe(200);
    expect(await versions(h, 'both-cmk')).toHaveLength(2);
    const created = await newVersionOf(h, 'both-cmk', key.properties.version!);
    expect(resultsOf(await h.settle(jobIdFor(created)))).toEqual(allMoved(refs));
    await h.stack.eventGrid.idle();
    await expectAllOn(h, refs, created);
    for (const ref of refs) expect(acceptedPuts(h, ref), ref.name).toBe(1);
    expect((await auditOf(h, 'both-cmk')).filter((r) => r.result === 'rotated')).toHaveLength(1);
  }, 60_000);
});
