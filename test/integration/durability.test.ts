// Durability through the local host: a host killed mid-rotation, two instances on one event, hubs that fail for a
// while, and the reconciler repairing what events missed. The outcome never changes: one new version, every hub on
// it exactly once, every hub's data still readable.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SUB_A, SUB_B, startHarness } from '../support/harness';
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
  settledOn,
  versions,
  withEventsLimitedTo,
  withoutNearExpiryEvents,
} from '../support/fleet';

const SETTINGS = {
  // A dead invocation's hubs are taken over 2 s after it claimed them.
  ROTATOR_HUB_CLAIM_SECONDS: '2',
  // No backoff of our own: each Event Grid redelivery (on its compressed schedule) is the next attempt.
  ROTATOR_HUB_RETRY_SECONDS: '0',
  // Two hubs at a time, so a crash leaves some hubs untouched.
  ROTATOR_HUB_CONCURRENCY: '2',
  // The timer stays out of the way (1 January only); the tests run the reconciler themselves.
  ROTATOR_RECONCILE_SCHEDULE: '0 0 0 1 1 *',
};

async function expectAllOn(h: Harness, refs: HubRef[], keyId: string) {
  for (const ref of refs) {
    expect(h.hubKey(ref), ref.name).toBe(keyId);
    expect(await h.stack.arm.checkHubData(ref), ref.name).toMatchObject({ readable: true, keyIdentifier: keyId });
  }
}

/** Runs the reconciler over HTTP and returns its report. */
async function reconcile(h: Harness) {
  const response = await h.api('POST', '/api/reconcile');
  expect(response.status).toBe(200);
  return response.body as {
    drift: { keyId: string; hubId?: string; kind: string; detail: string }[];
    rotations: {
      keyId: string;
      createdVersion?: string;
      status: string;
      hubs: { hubName: string; result: string }[];
    }[];
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

  it('a host killed after creating the version, with hubs still to move: one version, every hub moved once', async () => {
    const key = await h.createKey('crash-cmk', { expiresInDays: 31 });
    const refs = fleet('crash', 6);
    for (const ref of refs) await h.seedHub(ref, key.id!);
    await h.stack.eventGrid.idle();
    h.stack.arm.clearRequests();
    // Slow ARM: the host dies with hub writes in flight and most hubs not yet touched.
    h.stack.arm.faults.setLatency(300);

    // Two days on the key is inside its 30-day window: Key Vault raises KeyNearExpiry, Event Grid delivers it.
    await h.stack.keyVault.admin.advanceClock(2 * 86_400);
    await h.until(() => refs.some((ref) => putStatuses(h, ref).length > 0), 'the first hub PUT reached ARM');
    await h.host.kill();
    const created = await newVersionOf(h, 'crash-cmk', key.properties.version!);
    expect(refs.filter((ref) => putStatuses(h, ref).length === 0).length).toBeGreaterThan(0);
    h.stack.arm.faults.setLatency(0);
    await h.restartHost('kill');

    // Event Grid redelivers (the dead host's connection failed) to the restarted host, which takes over.
    await h.until(() => refs.every((ref) => settledOn(h, ref, created)), 'every hub on the new version');
    await h.stack.eventGrid.idle();

    expect(await versions(h, 'crash-cmk')).toHaveLength(2);
    await expectAllOn(h, refs, created);
    for (const ref of refs) expect(acceptedPuts(h, ref), ref.name).toBe(1);
    expect(h.stack.eventGrid.deadLetters()).toEqual([]);
    const audit = await auditOf(h, 'crash-cmk');
    expect(audit.filter((r) => r.result === 'rotated')).toHaveLength(1);
    // The job is complete: nothing for the reconciler to resume or repair.
    const report = await reconcile(h);
    expect(report.drift.filter((d) => d.keyId === keyIdOf('crash-cmk'))).toEqual([]);
    expect(report.rotations.filter((r) => r.keyId === keyIdOf('crash-cmk'))).toEqual([]);
  });

  it('a host killed mid-rotation with no redelivery coming: the reconciler finishes the job', async () => {
    const key = await h.createKey('resume-cmk');
    const refs = fleet('resume', 4);
    for (const ref of refs) await h.seedHub(ref, key.id!);
    await h.stack.eventGrid.idle();
    h.stack.arm.faults.setLatency(300);
    // One hand-made delivery, and Key Vault's own events about the new version go nowhere for now.
    await withEventsLimitedTo(h, ['Microsoft.KeyVault.KeyExpired'], async () => {
      const delivery = h.deliver([keyVaultEvent('KeyNearExpiry', key.id!)]).catch(() => 'connection lost');
      await h.until(() => refs.some((ref) => putStatuses(h, ref).length > 0), 'the first hub PUT reached ARM');
      await h.host.kill();
      expect(await delivery).toBe('connection lost');
      h.stack.arm.faults.setLatency(0);
      await h.restartHost('kill');
    });
    const created = await newVersionOf(h, 'resume-cmk', key.properties.version!);
    expect(refs.some((ref) => h.hubKey(ref) !== created)).toBe(true);

    const report = await reconcile(h);

    expect(report.rotations.filter((r) => r.keyId === keyIdOf('resume-cmk'))).toMatchObject([{ status: 'succeeded' }]);
    expect(await versions(h, 'resume-cmk')).toHaveLength(2);
    await expectAllOn(h, refs, created);
    for (const ref of refs) expect(acceptedPuts(h, ref), ref.name).toBe(1);
  });

  it('two instances handling the same event at the same moment: one version, each hub written once', async () => {
    const second = await h.startInstance();
    const key = await h.createKey('twin-cmk');
    const refs = fleet('twin', 5);
    for (const ref of refs) await h.seedHub(ref, key.id!);
    await h.stack.eventGrid.idle();
    const nearExpiry = keyVaultEvent('KeyNearExpiry', key.id!);

    const statuses = await Promise.all([h.deliver([nearExpiry]), second.deliver([nearExpiry])]);

    expect(statuses).toEqual([202, 202]);
    await h.stack.eventGrid.idle();
    expect(await versions(h, 'twin-cmk')).toHaveLength(2);
    const created = await newVersionOf(h, 'twin-cmk', key.properties.version!);
    await expectAllOn(h, refs, created);
    for (const ref of refs) expect(acceptedPuts(h, ref), ref.name).toBe(1);
    const audit = await auditOf(h, 'twin-cmk');
    expect(audit.filter((r) => r.result === 'rotated')).toHaveLength(1);
    expect(audit.filter((r) => r.result === 'moved')).toHaveLength(refs.length);
    await second.host.stop();
  });

  it('retries a hub across deliveries until it goes through; one that keeps failing is marked failed, alone', async () => {
    const key = await h.createKey('flaky-cmk');
    const steady = [hub(SUB_A, 'flaky-steady-1'), hub(SUB_B, 'flaky-steady-2')];
    const recovers = hub(SUB_A, 'flaky-recovers');
    const broken = hub(SUB_B, 'flaky-broken');
    for (const ref of [...steady, recovers, broken]) await h.seedHub(ref, key.id!);
    await h.stack.eventGrid.idle();
    h.stack.arm.clearRequests();
    // One attempt is 7 tries (the SDK pipeline retries a 503 six times): two failed attempts, then success.
    h.stack.arm.faults.failNextRequests({ status: 503, count: 14, method: 'PUT', path: '/IotHubs/flaky-recovers' });
    h.stack.arm.faults.failNextRequests({ status: 503, count: 1000, method: 'PUT', path: '/IotHubs/flaky-broken' });

    const v2 = await h.keys.createRsaKey('flaky-cmk', { keySize: 2048, keyOps: ['wrapKey', 'unwrapKey'] });
    await h.until(
      () => outcomesFor(h, broken).some((o) => o.type === 'CmkRotator.HubKeyUpdateFailed'),
      'the broken hub reported failed',
    );
    await h.stack.eventGrid.idle();
    h.stack.arm.faults.clear();

    await expectAllOn(h, [...steady, recovers], v2.id!);
    for (const ref of steady) expect(putStatuses(h, ref)).toEqual([201]);
    expect(putStatuses(h, recovers)).toEqual([...Array<number>(14).fill(503), 201]);
    const onV2 = async (ref: HubRef) =>
      (await auditOf(h, 'flaky-cmk'))
        .filter((r) => r.hubId?.endsWith(`/${ref.name}`) && r.toVersion === v2.properties.version)
        .map((r) => r.result)
        .reverse();
    const recovered = await onV2(recovers);
    expect(recovered.at(-1)).toBe('moved');
    expect(new Set(recovered.slice(0, -1))).toEqual(new Set(['retrying']));
    // The attempt limit (5) is counted across deliveries; the hub keeps its key and its data.
    expect(await onV2(broken)).toEqual(['retrying', 'retrying', 'retrying', 'retrying', 'failed']);
    expect(putStatuses(h, broken).every((s) => s === 503)).toBe(true);
    expect(h.hubKey(broken)).toBe(key.id);
    expect(await h.stack.arm.checkHubData(broken)).toMatchObject({ readable: true });
    const failure = (await auditOf(h, 'flaky-cmk')).find((r) => r.result === 'failed');
    expect(failure).toMatchObject({
      errorCode: 'UPSTREAM_UNAVAILABLE',
      hubId: expect.stringMatching(/\/flaky-broken$/),
    });
    expect(outcomesFor(h, broken).filter((o) => o.type === 'CmkRotator.HubKeyUpdateFailed')).toHaveLength(1);
    // Settled, so the event was acknowledged rather than dead-lettered.
    expect(h.stack.eventGrid.deadLetters()).toEqual([]);

    // Once ARM accepts writes again, an operator's sync retries the failed hub.
    const sync = await h.api('POST', '/api/keys/sync', { keyId: keyIdOf('flaky-cmk') });
    expect(sync.status).toBe(200);
    expect(sync.body.status).toBe('succeeded');
    await expectAllOn(h, [broken], v2.id!);
  });

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

    await expectAllOn(h, behind, current.id!);
    const driftAudit = (await auditOf(h, 'drift-cmk')).filter((r) => r.result === 'drift');
    expect(driftAudit.map((r) => r.hubId?.split('/').pop()).sort()).toEqual(['drift-1', 'drift-2']);
    expect(driftAudit.every((r) => r.trigger === 'reconcile' && r.message?.startsWith('hub-behind:'))).toBe(true);
    for (const ref of behind) {
      expect(outcomesFor(h, ref).map((o) => o.type)).toEqual(
        expect.arrayContaining(['CmkRotator.DriftDetected', 'CmkRotator.HubKeyUpdated']),
      );
    }
    // The hub on the disabled version is reported; it cannot re-wrap its data while that version is disabled, so
    // the update fails (the hub keeps its key) and is reported too.
    const revokedAudit = await auditOf(h, 'revoked-cmk');
    expect(revokedAudit.find((r) => r.result === 'drift')?.message).toMatch(/^hub-on-unusable-version: .*disabled/);
    expect(revokedAudit.find((r) => r.result === 'failed')).toMatchObject({ errorCode: 'HUB_UPDATE_FAILED' });
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
    await expectAllOn(h, [revoked], revokedCurrent.id!);
    // Nothing else drifts, and nothing was rotated.
    expect((await reconcile(h)).drift.filter((d) => /\/(drift|revoked)-cmk$/.test(d.keyId))).toEqual([]);
    expect(await versions(h, 'drift-cmk')).toHaveLength(2);
    expect(await versions(h, 'revoked-cmk')).toHaveLength(2);
  });

  it('the reconciler rotates a key whose near-expiry event never arrived, once', async () => {
    const key = await withoutNearExpiryEvents(h, () => h.createKey('missed-cmk', { expiresInDays: 20 }));
    const ref = hub(SUB_B, 'missed-hub');
    await h.seedHub(ref, key.id!);

    const report = await reconcile(h);

    expect(report.drift).toContainEqual(
      expect.objectContaining({ keyId: keyIdOf('missed-cmk'), kind: 'key-near-expiry' }),
    );
    const created = await newVersionOf(h, 'missed-cmk', key.properties.version!);
    expect(report.rotations.find((r) => r.keyId === keyIdOf('missed-cmk'))).toMatchObject({
      createdVersion: created,
      status: 'succeeded',
      hubs: [{ hubName: 'missed-hub', result: expect.stringMatching(/^(moved|already-current)$/) }],
    });
    await h.stack.eventGrid.idle();
    await expectAllOn(h, [ref], created);
    expect((await auditOf(h, 'missed-cmk')).filter((r) => r.result === 'rotated')).toMatchObject([
      { trigger: 'reconcile' },
    ]);

    // A second pass finds nothing to do.
    const again = await reconcile(h);
    expect(again.drift.filter((d) => d.keyId === keyIdOf('missed-cmk'))).toEqual([]);
    expect(await versions(h, 'missed-cmk')).toHaveLength(2);
  });

  it('the reconciler and the event for the same near-expiry at the same moment create one version', async () => {
    const key = await withoutNearExpiryEvents(h, () => h.createKey('both-cmk', { expiresInDays: 20 }));
    const refs = fleet('both', 3);
    for (const ref of refs) await h.seedHub(ref, key.id!);

    const [delivered, reconciled] = await Promise.all([
      h.deliver([keyVaultEvent('KeyNearExpiry', key.id!)]),
      h.api('POST', '/api/reconcile'),
    ]);

    expect(delivered).toBe(202);
    expect(reconciled.status).toBe(200);
    await h.stack.eventGrid.idle();
    expect(await versions(h, 'both-cmk')).toHaveLength(2);
    const created = await newVersionOf(h, 'both-cmk', key.properties.version!);
    await expectAllOn(h, refs, created);
    for (const ref of refs) expect(acceptedPuts(h, ref), ref.name).toBe(1);
    expect((await auditOf(h, 'both-cmk')).filter((r) => r.result === 'rotated')).toHaveLength(1);
  });
});

describe('a host killed between a hub PUT and its poll', () => {
  let h: Harness;
  beforeAll(async () => {
    // Hub updates stay InProgress longer than a restart plus the claim, so the next host meets them running; Event
    // Grid keeps redelivering (every 3.2 s at the end of its compressed schedule) until they are done.
    h = await startHarness({ stack: { asyncOperationDelayMs: 4000, maxDeliveryAttempts: 10 }, settings: SETTINGS });
  }, 60_000);
  afterAll(async () => {
    await h?.close();
  });

  it('even when an orphaned operation then fails, every hub ends on the new version, data readable', async () => {
    const key = await h.createKey('poll-cmk');
    const refs = [hub(SUB_A, 'poll-1'), hub(SUB_B, 'poll-2')];
    for (const ref of refs) await h.seedHub(ref, key.id!);
    await h.stack.eventGrid.idle();
    h.stack.arm.clearRequests();

    const v2 = await h.keys.createRsaKey('poll-cmk', { keySize: 2048, keyOps: ['wrapKey', 'unwrapKey'] });
    await h.until(() => refs.every((ref) => putStatuses(h, ref).includes(201)), 'both hub PUTs accepted (201)');
    await h.restartHost('kill');
    // ARM then fails the first of the two operations the dead host was polling and rolls that hub back.
    h.stack.arm.faults.failNextOperations({ count: 1, code: 'InternalServerError' });
    const firstPut = h.stack.arm.requests().find((r) => r.method === 'PUT' && r.status === 201)!;
    const rolledBack = refs.find((ref) => firstPut.url.includes(`/IotHubs/${ref.name}?`))!;
    const other = refs.find((ref) => ref !== rolledBack)!;

    await h.until(() => refs.every((ref) => settledOn(h, ref, v2.id!)), 'every hub on the new version');
    await h.stack.eventGrid.idle();

    expect(h.stack.eventGrid.deadLetters()).toEqual([]);
    expect(await versions(h, 'poll-cmk')).toHaveLength(2);
    await expectAllOn(h, refs, v2.id!);
    expect(acceptedPuts(h, rolledBack)).toBe(2);
    expect(acceptedPuts(h, other)).toBe(1);
    // Only the rolled-back hub needed a second write; the other's running operation was waited for, not redone.
    const moved = (await auditOf(h, 'poll-cmk')).filter((r) => r.result === 'moved');
    expect(moved.map((r) => r.hubId?.split('/').pop())).toEqual([rolledBack.name]);
    const report = await reconcile(h);
    expect(report.drift.filter((d) => d.keyId === keyIdOf('poll-cmk'))).toEqual([]);
  });
});
