// The reconciler: a missed near-expiry rotates, hubs behind are moved, failed hubs and quiet jobs are started again,
// drift is audited and published.
import { describe, expect, it } from 'vitest';
import { permanentHubFault } from '../fakes';
import { KEY, VAULT, fakeRotator, hubId } from '../fakes/rotator';

const DAY = 86_400_000;
const START = new Date('2026-06-01T00:00:00Z').getTime();
const LEASE = 60_000;

describe('reconcile', () => {
  it('rotates a key whose near-expiry was missed, and moves its hubs', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY, { expiresOn: new Date(START + 10 * DAY) });
    const hub = t.hubs.add(hubId('hub'), v1.id);

    const report = await t.rotator.reconcile(t.invocation);

    expect(report).toMatchObject({ keysScanned: 1, failures: [] });
    expect(report.drift).toEqual([
      expect.objectContaining({ kind: 'key-near-expiry', keyId: `${VAULT}/keys/hub-cmk` }),
    ]);
    expect(t.keyVault.created).toHaveLength(1);
    expect(report.rotations).toEqual([expect.objectContaining({ status: 'in-progress', trigger: 'reconcile' })]);
    await t.drain();
    expect(t.hubs.keyOf(hub)).toBe(t.keyVault.created[0]!.id);
    expect(t.audit.records.map((r) => r.result).sort()).toEqual(['drift', 'moved', 'rotated']);
    expect(t.outcomes.sent.map((o) => o.type)).toContain('CmkRotator.DriftDetected');
  });

  it('moves hubs that are behind or on an unusable version, leaves current ones, and audits and publishes the drift', async () => {
    const t = fakeRotator();
    const v0 = t.keyVault.addVersion(KEY, { enabled: false });
    const v1 = t.keyVault.addVersion(KEY);
    const v2 = t.keyVault.addVersion(KEY);
    const behind = t.hubs.add(hubId('behind'), v1.id);
    const unusable = t.hubs.add(hubId('unusable'), v0.id);
    const current = t.hubs.add(hubId('current'), v2.id);

    const report = await t.rotator.reconcile(t.invocation);

    expect(t.keyVault.created).toHaveLength(0);
    expect(report.drift.map((d) => [d.hubId, d.kind])).toEqual([
      [behind, 'hub-behind'],
      [unusable, 'hub-on-unusable-version'],
    ]);
    expect(t.audit.records.filter((r) => r.result === 'drift').map((r) => r.hubId)).toEqual([behind, unusable]);
    expect(t.outcomes.sent.filter((o) => o.type === 'CmkRotator.DriftDetected').map((o) => o.subject)).toEqual([
      behind,
      unusable,
    ]);
    await t.drain();
    expect(t.hubs.keyOf(behind)).toBe(v2.id);
    expect(t.hubs.keyOf(unusable)).toBe(v2.id);
    expect(t.hubs.puts.map((p) => p.hubId)).not.toContain(current);
  });

  it('finds nothing to do when every hub is current: no drift, no job, no record', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    t.hubs.add(hubId('hub'), v1.id);
    const report = await t.rotator.reconcile(t.invocation);
    expect(report).toMatchObject({ keysScanned: 1, drift: [], rotations: [], failures: [], resumedJobs: 0 });
    expect(t.jobs.jobs.size).toBe(0);
    expect(t.steps.sent).toBe(0);
    expect(t.audit.records).toHaveLength(0);
    expect(t.outcomes.sent).toHaveLength(0);
  });

  it('starts hubs that failed again', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    const v2 = t.keyVault.addVersion(KEY);
    const bad = t.hubs.add(hubId('bad'), v1.id);
    t.hubs.faults.push(permanentHubFault(bad));
    await t.rotator.sync(KEY, { dryRun: false }, t.invocation);
    await t.drain();
    expect(t.jobs.taskOf(bad)?.state).toBe('failed');
    t.hubs.faults = [];

    await t.rotator.reconcile(t.invocation);
    await t.drain();

    expect(t.hubs.keyOf(bad)).toBe(v2.id);
    expect(t.jobs.taskOf(bad)).toMatchObject({ state: 'moved', attempts: 0 });
  });

  it('gives a quiet task (no step for two leases past its due time) its step again, and leaves a recent one alone', async () => {
    const t = fakeRotator({ stepLeaseMs: LEASE });
    t.keyVault.addVersion(KEY);
    const v2 = t.keyVault.addVersion(KEY);
    const hub = t.hubs.add(hubId('hub'), t.keyVault.versions.get(`${VAULT}/keys/hub-cmk`)![0]!.id);
    t.hubs.updateMs = 30_000;
    await t.rotator.sync(KEY, { dryRun: false }, t.invocation);
    await t.drain({ maxMessages: 1 }); // the PUT; then every message is lost
    t.steps.messages = [];

    // Two leases after the PUT, but the look was due 10 s after it (Retry-After): not quiet yet.
    t.clock.advance(2 * LEASE);
    await t.rotator.reconcile(t.invocation);
    expect(t.steps.messages).toHaveLength(0);

    t.clock.advance(10_001);
    const report = await t.rotator.reconcile(t.invocation);
    expect(report.resumedJobs).toBe(1);
    expect(report.drift).toEqual([]); // the hub shows the target; only its task was stuck
    expect(t.steps.messages.map((m) => m.message.hubs)).toEqual([[{ hubId: hub, step: 1 }]]);
    await t.drain();
    expect(t.jobs.taskOf(hub)).toMatchObject({ state: 'moved', recorded: true });
    expect(t.hubs.keyOf(hub)).toBe(v2.id);
    expect(t.hubs.acceptedPuts(hub)).toBe(1);
  });

  it('skips keys of vaults not allowed, and reports a key that fails without stopping the others', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    const v2 = t.keyVault.addVersion(KEY);
    const behind = t.hubs.add(hubId('behind'), v1.id);
    t.hubs.add(hubId('foreign'), 'https://evil.vault.azure.net/keys/k/0123456789abcdef');
    t.hubs.add(hubId('orphan'), `${VAULT}/keys/deleted-cmk/0123456789abcdef`);

    const report = await t.rotator.reconcile(t.invocation);

    expect(report.keysScanned).toBe(2);
    expect(report.failures).toEqual([
      expect.objectContaining({ keyId: `${VAULT}/keys/deleted-cmk`, errorCode: 'KEY_NOT_FOUND' }),
    ]);
    expect(t.audit.records).toContainEqual(
      expect.objectContaining({ keyId: `${VAULT}/keys/deleted-cmk`, result: 'failed', trigger: 'reconcile' }),
    );
    await t.drain();
    expect(t.hubs.keyOf(behind)).toBe(v2.id);
  });
});
