// What the reconciler leaves behind for operators (its decisions, drift records and outcomes, the reconcile.done
// summary) and which open jobs it resumes: only those of allowed vaults, failed hubs included, failures reported.
import { describe, expect, it, vi } from 'vitest';
import { UpstreamUnavailableError } from '../../src/domain/errors';
import { KEY, VAULT, fakeRotator, hubId } from '../fakes/rotator';

const DAY = 86_400_000;
const START = new Date('2026-06-01T00:00:00Z').getTime();
const KEY_URL = `${VAULT}/keys/hub-cmk`;

describe('the reconciler’s decisions', () => {
  it('a missed near-expiry: the rotation says so', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY, { expiresOn: new Date(START + 10 * DAY) });
    t.hubs.add(hubId('hub'), v1.id);
    const report = await t.rotator.reconcile(t.invocation);
    expect(report.rotations.map((r) => r.decision)).toEqual(['the reconciler found a missed near-expiry']);
  });

  it('hubs behind: the move says so; each drift is audited and published with its kind, detail and hub', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    t.keyVault.addVersion(KEY);
    const behind = t.hubs.add(hubId('behind'), v1.id);
    const report = await t.rotator.reconcile(t.invocation);
    expect(report.rotations.map((r) => r.decision)).toEqual(['the reconciler found hubs behind']);
    const [drift] = report.drift;
    expect(drift).toMatchObject({ kind: 'hub-behind', keyId: KEY_URL, hubId: behind });
    expect(t.audit.records.filter((r) => r.result === 'drift')).toEqual([
      expect.objectContaining({
        keyId: KEY_URL,
        hubId: behind,
        trigger: 'reconcile',
        correlationId: 'inv-1',
        message: `hub-behind: ${drift!.detail}`,
      }),
    ]);
    expect(t.outcomes.sent.filter((o) => o.type === 'CmkRotator.DriftDetected')).toEqual([
      { type: 'CmkRotator.DriftDetected', subject: behind, data: { ...drift, correlationId: 'inv-1' } },
    ]);
  });

  it('logs a summary: keys scanned, drift, rotations, resumed jobs, revoked keys, retired versions, failures', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    t.keyVault.addVersion(KEY);
    t.hubs.add(hubId('behind'), v1.id);
    t.hubs.add(hubId('orphan'), `${VAULT}/keys/deleted-cmk/0123456789abcdef`);
    await t.rotator.reconcile(t.invocation);
    expect(t.log.lines.filter((l) => l.event === 'reconcile.done')).toEqual([
      {
        level: 'info',
        event: 'reconcile.done',
        fields: { keysScanned: 2, drift: 1, rotations: 1, resumedJobs: 1, revokedKeys: 0, retired: 0, failures: 1 },
      },
    ]);
  });

  it('with nothing found, writes nothing at all', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    t.hubs.add(hubId('hub'), v1.id);
    await t.rotator.reconcile(t.invocation);
    expect(t.audit.appends).toBe(0);
  });
});

describe('open jobs', () => {
  /** A job to v2 whose hubs are `failed` and `quiet` (pending, its message lost), the hubs no longer listed. */
  async function openJob(vaultUrl = VAULT) {
    const t = fakeRotator({ allowedVaults: [VAULT, 'https://other.vault.azure.net'] });
    const key = { vaultUrl, name: 'hub-cmk' };
    const v1 = t.keyVault.addVersion(key);
    const v2 = t.keyVault.addVersion(key);
    const job = {
      key,
      targetVersion: v2.version,
      targetId: v2.id,
      trigger: 'manual-sync' as const,
      correlationId: 'c',
      openedAt: new Date(START),
    };
    await t.jobs.open(job, [
      { hubId: hubId('failed'), hubName: 'failed', from: [v1.id] },
      { hubId: hubId('quiet'), hubName: 'quiet', from: [v1.id] },
    ]);
    await t.jobs.update(job, { ...t.jobs.taskOf(hubId('failed'))!, state: 'failed', attempts: 3, recorded: true });
    t.clock.advance(DAY);
    vi.spyOn(t.hubs, 'listAll').mockResolvedValue([]);
    return { t, job };
  }

  it('are resumed, failed hubs started again too', async () => {
    const { t } = await openJob();
    const report = await t.rotator.reconcile(t.invocation);
    expect(report.resumedJobs).toBe(1);
    expect(
      t.steps
        .queuedHubs()
        .map((h) => h.hubId)
        .sort(),
    ).toEqual([hubId('failed'), hubId('quiet')].sort());
    expect(t.jobs.taskOf(hubId('failed'))).toMatchObject({ state: 'pending', attempts: 0 });
  });

  it('of a vault no longer allowed are left alone', async () => {
    const { t } = await openJob('https://other.vault.azure.net');
    t.deps.settings.allowedVaults = [VAULT];
    const report = await t.rotator.reconcile(t.invocation);
    expect(report.resumedJobs).toBe(0);
    expect(t.steps.sent).toBe(0);
    expect(t.jobs.taskOf(hubId('failed'))?.state).toBe('failed');
  });

  it('one that cannot be read is reported as a failure; the reconciler goes on', async () => {
    const { t } = await openJob();
    vi.spyOn(t.jobs, 'tasks').mockRejectedValueOnce(new UpstreamUnavailableError('the ledger is unavailable'));
    const report = await t.rotator.reconcile(t.invocation);
    expect(report.resumedJobs).toBe(0);
    expect(report.failures).toEqual([
      { keyId: KEY_URL, errorCode: 'UPSTREAM_UNAVAILABLE', message: 'the ledger is unavailable' },
    ]);
  });
});

describe('automatic retirement', () => {
  /** v0 and v1 superseded long ago, v2 current on the hub. */
  function superseded(settings: { retireAfterDays?: number } = {}) {
    const t = fakeRotator(settings);
    const now = t.clock.now().getTime();
    const v0 = t.keyVault.addVersion(KEY, { createdOn: new Date(now - 200 * DAY) });
    const v1 = t.keyVault.addVersion(KEY, { createdOn: new Date(now - 100 * DAY) });
    const v2 = t.keyVault.addVersion(KEY, { createdOn: new Date(now - 50 * DAY) });
    t.hubs.add(hubId('hub'), v2.id);
    return { t, v0, v1, v2 };
  }

  it('is off unless configured: nothing is disabled, the hubs are listed once', async () => {
    const { t } = superseded();
    const report = await t.rotator.reconcile(t.invocation);
    expect(report.retired).toEqual([]);
    expect(t.keyVault.enabledChanges).toEqual([]);
    expect(t.hubs.listings).toBe(1);
  });

  it('when configured, retires a settled key’s superseded versions and counts them in the summary', async () => {
    const { t, v0, v1 } = superseded({ retireAfterDays: 14 });
    const report = await t.rotator.reconcile(t.invocation);
    expect(report.retired.map((r) => [r.keyId, [...r.versions].sort()])).toEqual([
      [KEY_URL, [v0.version, v1.version].sort()],
    ]);
    expect(t.log.lines.find((l) => l.event === 'reconcile.done')?.fields.retired).toBe(2);
  });

  it('leaves a key that is rotating or moving alone', async () => {
    const { t, v1 } = superseded({ retireAfterDays: 14 });
    t.hubs.add(hubId('behind'), v1.id);
    const report = await t.rotator.reconcile(t.invocation);
    expect(report.rotations).toHaveLength(1);
    expect(report.retired).toEqual([]);
    expect(report.failures).toEqual([]);
    expect(t.keyVault.enabledChanges).toEqual([]);
  });

  it('a retirement that fails is reported; the reconciler goes on', async () => {
    const { t } = superseded({ retireAfterDays: 14 });
    vi.spyOn(t.keyVault, 'setEnabled').mockRejectedValue(new UpstreamUnavailableError('the vault is unavailable'));
    const report = await t.rotator.reconcile(t.invocation);
    expect(report.retired).toEqual([]);
    expect(report.failures).toEqual([
      { keyId: KEY_URL, errorCode: 'UPSTREAM_UNAVAILABLE', message: 'the vault is unavailable' },
    ]);
  });
});
