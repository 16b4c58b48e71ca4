// The lifecycle use cases over in-memory fakes: what retire, revoke and restore change, record and publish, that a
// dry run and a refused request change nothing, and that a revoked key is left out of automatic rotation.
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/domain/errors';
import { KEY, VAULT, fakeRotator, hubId, keyVaultEvent } from '../fakes/rotator';

const DAY = 86_400_000;
const KEY_ID = `${VAULT}/keys/hub-cmk`;

/** A key with an old version (v1), its successor (v2, 30 days old) and hubs on each. */
function bed() {
  const t = fakeRotator();
  const now = t.clock.now().getTime();
  const v1 = t.keyVault.addVersion(KEY, { createdOn: new Date(now - 200 * DAY) });
  const v2 = t.keyVault.addVersion(KEY, { createdOn: new Date(now - 30 * DAY), latest: true });
  const onV1 = t.hubs.add(hubId('on-v1'), v1.id);
  const onV2 = t.hubs.add(hubId('on-v2'), v2.id);
  return { t, v1, v2, onV1, onV2 };
}

/** Nothing in the vault, the audit log, the outcomes or the ledger changed. */
function expectUntouched(t: ReturnType<typeof fakeRotator>) {
  expect(t.keyVault.enabledChanges).toEqual([]);
  expect(t.audit.records).toEqual([]);
  expect(t.outcomes.sent).toEqual([]);
  expect(t.revocations.byKey.size).toBe(0);
}

describe('retire', () => {
  it('disables an unreferenced superseded version once its successor is past the grace period, and records it', async () => {
    const { t, v1, v2, onV1 } = bed();
    t.hubs.hubs.delete(onV1);
    const dry = await t.rotator.retire(KEY, { dryRun: true }, t.invocation);
    expect(dry.versions.map((v) => [v.version, v.decision])).toEqual([
      [v2.version, 'keep'],
      [v1.version, 'disable'],
    ]);
    expectUntouched(t);

    const report = await t.rotator.retire(KEY, { dryRun: false }, t.invocation);
    expect(report).toMatchObject({ graceDays: 7, retired: [v1.version], trigger: 'manual-retire' });
    expect(report.versions[1]).toMatchObject({ version: v1.version, decision: 'disabled', enabled: false });
    expect(t.keyVault.enabledChanges).toEqual([{ version: v1.version, enabled: false }]);
    expect(t.audit.records).toEqual([
      expect.objectContaining({ keyId: KEY_ID, result: 'retired', fromVersion: v1.version, trigger: 'manual-retire' }),
    ]);
    expect(t.outcomes.sent).toEqual([expect.objectContaining({ type: 'CmkRotator.VersionRetired', subject: v1.id })]);
  });

  it('keeps a referenced version and respects a longer grace period given in the request', async () => {
    const { t, v1, onV1 } = bed();
    const referenced = await t.rotator.retire(KEY, { dryRun: false }, t.invocation);
    expect(referenced.versions[1]).toMatchObject({ decision: 'keep', reason: 'referenced', hubIds: [onV1] });
    t.hubs.hubs.delete(onV1);
    const graced = await t.rotator.retire(KEY, { dryRun: false, graceDays: 31 }, t.invocation);
    expect(graced.versions[1]).toMatchObject({ version: v1.version, decision: 'keep', reason: 'within-grace' });
    expectUntouched(t);
  });
});

describe('revoke and restore', () => {
  it('a dry run lists the hubs and versions and changes nothing; a real one needs the key’s name', async () => {
    const { t, v1, v2, onV1, onV2 } = bed();
    const plan = await t.rotator.revoke(KEY, { dryRun: true }, t.invocation);
    expect(plan).toMatchObject({ status: 'planned', versions: [v2.version, v1.version] });
    expect(plan.hubs.map((h) => [h.hubId, h.wouldFail])).toEqual([
      [onV1, true],
      [onV2, true],
    ]);
    await expect(t.rotator.revoke(KEY, { dryRun: false }, t.invocation)).rejects.toBeInstanceOf(ValidationError);
    await expect(t.rotator.revoke(KEY, { dryRun: false, confirm: 'other' }, t.invocation)).rejects.toThrow(
      /confirm: must be the key's name/,
    );
    expectUntouched(t);
  });

  it('revokes one version: disables it, records the ledger, audits and publishes the affected hubs', async () => {
    const { t, v1, onV1 } = bed();
    const report = await t.rotator.revoke(
      KEY,
      { dryRun: false, version: v1.version, confirm: 'hub-cmk' },
      t.invocation,
    );
    expect(report).toMatchObject({ status: 'revoked', version: v1.version, versions: [v1.version] });
    expect(report.hubs.map((h) => h.hubId)).toEqual([onV1]);
    expect(t.keyVault.enabledChanges).toEqual([{ version: v1.version, enabled: false }]);
    expect(await t.revocations.last(KEY)).toMatchObject({ versions: [v1.version], version: v1.version });
    expect((await t.rotator.status(KEY)).revoked).toEqual({ revokedAt: expect.any(String), versions: [v1.version] });
    expect(t.audit.records).toEqual([expect.objectContaining({ result: 'revoked', trigger: 'manual-revoke' })]);
    expect(t.outcomes.sent).toEqual([
      expect.objectContaining({
        type: 'CmkRotator.KeyRevoked',
        subject: KEY_ID,
        data: expect.objectContaining({ versions: [v1.version], hubs: [expect.objectContaining({ hubId: onV1 })] }),
      }),
    ]);
  });

  it('restore re-enables exactly what the revocations disabled (not a version that was disabled before)', async () => {
    const { t, v1, v2 } = bed();
    const v0 = t.keyVault.addVersion(KEY, { createdOn: new Date(t.clock.now().getTime() - 300 * DAY), enabled: false });
    await t.rotator.revoke(KEY, { dryRun: false, version: v1.version, confirm: 'hub-cmk' }, t.invocation);
    await t.rotator.revoke(KEY, { dryRun: false, confirm: 'hub-cmk' }, t.invocation);
    expect((await t.revocations.last(KEY))?.versions.sort()).toEqual([v1.version, v2.version].sort());

    const plan = await t.rotator.restore(KEY, { dryRun: true }, t.invocation);
    expect(plan).toMatchObject({ status: 'planned', versions: [v2.version, v1.version] });
    expect(t.keyVault.versions.get(KEY_ID)?.filter((v) => v.enabled)).toEqual([]);

    const restored = await t.rotator.restore(KEY, { dryRun: false, confirm: 'hub-cmk' }, t.invocation);
    expect(restored.status).toBe('restored');
    expect(restored.hubs).toHaveLength(2);
    const enabled = t.keyVault.versions
      .get(KEY_ID)
      ?.filter((v) => v.enabled)
      .map((v) => v.version);
    expect(enabled?.sort()).toEqual([v1.version, v2.version].sort());
    expect(enabled).not.toContain(v0.version);
    expect((await t.revocations.last(KEY))?.restoredAt).toBeInstanceOf(Date);
    expect((await t.rotator.status(KEY)).revoked).toBeUndefined();
    expect(t.outcomes.sent.map((o) => o.type)).toEqual([
      'CmkRotator.KeyRevoked',
      'CmkRotator.KeyRevoked',
      'CmkRotator.KeyRestored',
    ]);
    // Nothing left to restore.
    await expect(t.rotator.restore(KEY, { dryRun: false, confirm: 'hub-cmk' }, t.invocation)).rejects.toMatchObject({
      code: 'NOT_REVOKED',
    });
  });

  it('a revoked key is not rotated: KeyNearExpiry is recorded and ignored, the reconciler leaves it alone', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY, { expiresOn: new Date(t.clock.now().getTime() + 10 * DAY) });
    t.hubs.add(hubId('hub'), v1.id);
    await t.rotator.revoke(KEY, { dryRun: false, confirm: 'hub-cmk' }, t.invocation);

    const answer = await t.rotator.handleEvent(keyVaultEvent('KeyNearExpiry', v1.id), t.invocation);
    expect(answer.status).toBe('ignored');
    expect(t.audit.records.at(-1)).toMatchObject({ result: 'ignored', message: expect.stringContaining('revoked') });
    const report = await t.rotator.reconcile(t.invocation);
    expect(report).toMatchObject({ revokedKeys: [KEY_ID], rotations: [], drift: [], failures: [], resumedJobs: 0 });
    expect(t.keyVault.created).toEqual([]);

    // A version created meanwhile (Key Vault autorotation) moves no hub while the key is revoked.
    const v2 = t.keyVault.addVersion(KEY);
    expect((await t.rotator.handleEvent(keyVaultEvent('KeyNewVersionCreated', v2.id), t.invocation)).status).toBe(
      'ignored',
    );
    expect(t.hubs.puts).toEqual([]);

    await t.rotator.restore(KEY, { dryRun: false, confirm: 'hub-cmk' }, t.invocation);
    await t.rotator.handleEvent(keyVaultEvent('KeyNewVersionCreated', v2.id), t.invocation);
    await t.drain();
    expect(t.hubs.keyOf(hubId('hub'))).toBe(v2.id);
  });

  it('the reconciler does not restart an open job of a revoked key', async () => {
    const { t } = bed();
    await t.rotator.rotate(KEY, { dryRun: false }, t.invocation);
    expect(await t.jobs.unfinished()).toHaveLength(1);
    expect((await t.rotator.reconcile(t.invocation)).resumedJobs).toBe(1);
    await t.rotator.revoke(KEY, { dryRun: false, confirm: 'hub-cmk' }, t.invocation);
    expect((await t.rotator.reconcile(t.invocation)).resumedJobs).toBe(0);
  });
});

describe('automatic retirement (ROTATOR_RETIRE_AFTER_DAYS)', () => {
  it('the reconciler retires with the same checks, after the configured days', async () => {
    const t = fakeRotator({ retireAfterDays: 14 });
    const now = t.clock.now().getTime();
    const v1 = t.keyVault.addVersion(KEY, { createdOn: new Date(now - 100 * DAY) });
    const v2 = t.keyVault.addVersion(KEY, { createdOn: new Date(now - 10 * DAY) });
    t.hubs.add(hubId('hub'), v2.id);
    // v2 replaced v1 ten days ago: within the 14 days, v1 stays.
    expect((await t.rotator.reconcile(t.invocation)).retired).toEqual([]);
    t.clock.advance(5 * DAY);
    const report = await t.rotator.reconcile(t.invocation);
    expect(report.retired).toEqual([{ keyId: KEY_ID, versions: [v1.version] }]);
    expect(t.keyVault.enabledChanges).toEqual([{ version: v1.version, enabled: false }]);
    expect(t.audit.records.filter((r) => r.result === 'retired').map((r) => r.trigger)).toEqual(['reconcile']);
    // Once retired, the next run has nothing to do.
    expect((await t.rotator.reconcile(t.invocation)).retired).toEqual([]);
  });
});
