// What operators read: a key's versions and hubs (with its open job), a job's progress, and the audit history.
import { describe, expect, it } from 'vitest';
import { ThrottledError, UpstreamUnavailableError } from '../../src/domain/errors';
import { permanentHubFault } from '../fakes';
import { KEY, VAULT, fakeRotator, hubId } from '../fakes/rotator';

const START = new Date('2026-06-01T00:00:00Z').getTime();
const iso = (ms: number) => new Date(START + ms).toISOString();

describe('key status', () => {
  it('lists versions newest first and marks each hub current or not', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    const v2 = t.keyVault.addVersion(KEY, { expiresOn: new Date('2027-01-01T00:00:00Z') });
    const v3 = t.keyVault.addVersion(KEY, { enabled: false });
    t.hubs.add(hubId('old'), v1.id);
    t.hubs.add(hubId('new'), v2.id);
    t.hubs.add(hubId('elsewhere'), `${VAULT}/keys/other-cmk/abc`);
    const status = await t.rotator.status(KEY);
    expect(status.versions.map((v) => [v.version, v.live])).toEqual([
      [v3.version, false],
      [v2.version, true],
      [v1.version, true],
    ]);
    expect(status.versions[1]?.expiresOn).toBe('2027-01-01T00:00:00.000Z');
    expect(status.latestUsableVersion).toBe(v2.id);
    expect(Object.fromEntries(status.hubs.map((h) => [h.hubName, h.current]))).toEqual({ old: false, new: true });
    expect(status.job).toBeUndefined();
  });

  it('shows no usable version and no hub as current when none is usable', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY, { keyOps: ['encrypt'] });
    t.hubs.add(hubId('hub'), v1.id);
    const status = await t.rotator.status(KEY);
    expect(status.latestUsableVersion).toBeUndefined();
    expect(status.hubs).toEqual([expect.objectContaining({ hubName: 'hub', current: false })]);
  });

  it('includes the progress of the job moving hubs to the latest usable version', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    const v2 = t.keyVault.addVersion(KEY);
    t.hubs.add(hubId('a'), v1.id);
    t.hubs.add(hubId('b'), v1.id);
    const report = await t.rotator.sync(KEY, { dryRun: false }, t.invocation);
    expect((await t.rotator.status(KEY)).job).toMatchObject({
      jobId: report.jobId,
      targetVersion: v2.id,
      trigger: 'manual-sync',
      done: false,
      progress: { queued: 2, moved: 0 },
    });
    await t.drain();
    const status = await t.rotator.status(KEY);
    expect(status.job).toMatchObject({ done: true, progress: { queued: 0, moved: 2 } });
    expect(status.hubs.every((h) => h.current)).toBe(true);
  });

  it('refuses keys of vaults not allowed', async () => {
    const t = fakeRotator();
    await expect(t.rotator.status({ vaultUrl: 'https://evil.vault.azure.net', name: 'k' })).rejects.toMatchObject({
      code: 'VAULT_NOT_ALLOWED',
    });
  });
});

describe('job progress', () => {
  it('counts hubs queued, in flight, throttled, retrying, moved and failed, and shows when each looks next', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    t.keyVault.addVersion(KEY);
    const [fast, slow, bad, throttled, flaky, late] = ['fast', 'slow', 'bad', 'throttled', 'flaky', 'late'].map((n) =>
      t.hubs.add(hubId(n), v1.id),
    ) as [string, string, string, string, string, string];
    t.hubs.updateMsByHub.set(fast, 10_000);
    t.hubs.updateMsByHub.set(slow, 600_000);
    t.hubs.faults.push(
      permanentHubFault(bad),
      (hub) => (hub.id === throttled ? new ThrottledError('429', 300_000) : undefined),
      (hub) => (hub.id === flaky ? new UpstreamUnavailableError('503') : undefined),
    );
    const { jobId } = await t.rotator.sync(KEY, { dryRun: false }, t.invocation);
    // The late hub's step is not taken yet: it leaves its group.
    for (const { message } of t.steps.messages) message.hubs = message.hubs.filter((h) => h.hubId !== late);
    await t.drain({ until: () => t.jobs.taskOf(fast)?.state === 'moved' });
    expect(t.clock.now().getTime() - START).toBe(10_000);

    const job = await t.rotator.job(jobId!);

    expect(job).toMatchObject({ jobId, done: false, trigger: 'manual-sync', keyId: `${VAULT}/keys/hub-cmk` });
    expect(job.progress).toEqual({
      moved: 1,
      'already-current': 0,
      skipped: 0,
      failed: 1,
      planned: 0,
      queued: 1,
      'in-flight': 1,
      throttled: 1,
      retrying: 1,
    });
    const byHub = Object.fromEntries(job.hubs.map((h) => [h.hubId, h]));
    expect(byHub[fast]).toMatchObject({ result: 'moved', durationMs: 10_000 });
    expect(byHub[slow]).toMatchObject({ result: 'in-flight', nextStepAt: iso(20_000) });
    expect(byHub[bad]).toMatchObject({ result: 'failed', errorCode: 'HUB_UPDATE_FAILED' });
    expect(byHub[throttled]).toMatchObject({ result: 'throttled', attempts: 0, nextStepAt: iso(300_000) });
    expect(byHub[flaky]).toMatchObject({ result: 'retrying', attempts: 1, nextStepAt: iso(30_000) });
    expect(byHub[late]).toMatchObject({ result: 'queued', attempts: 0 });
    expect(byHub[late]?.nextStepAt).toBeUndefined();
    expect((await t.rotator.status(KEY)).job?.progress).toEqual(job.progress);
  });

  it('answers JOB_NOT_FOUND for a job never opened, INVALID_INPUT for a malformed id, and refuses other vaults', async () => {
    const t = fakeRotator();
    await expect(t.rotator.job(`contoso.vault.azure.net~hub-cmk~${'a'.repeat(32)}`)).rejects.toMatchObject({
      code: 'JOB_NOT_FOUND',
    });
    await expect(t.rotator.job('not a job id')).rejects.toMatchObject({ code: 'INVALID_INPUT' });
    await expect(t.rotator.job(`evil.vault.azure.net~k~${'a'.repeat(32)}`)).rejects.toMatchObject({
      code: 'VAULT_NOT_ALLOWED',
    });
  });
});

describe('history', () => {
  it('pages the key’s audit records newest first, and refuses other vaults', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    t.keyVault.addVersion(KEY);
    t.hubs.add(hubId('a'), v1.id);
    t.hubs.add(hubId('b'), v1.id);
    await t.rotator.sync(KEY, { dryRun: false }, t.invocation);
    await t.drain();
    const page = await t.rotator.history(KEY, 1);
    expect(page.records).toHaveLength(1);
    expect(page.records[0]).toMatchObject({ result: 'moved', hubId: hubId('b') });
    await expect(t.rotator.history({ vaultUrl: 'https://evil.vault.azure.net', name: 'k' }, 5)).rejects.toMatchObject({
      code: 'VAULT_NOT_ALLOWED',
    });
  });
});
