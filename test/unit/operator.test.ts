// Operator requests (rotate, sync): dry runs answer synchronously and write nothing; real runs answer with the plan
// and the job id, and the hubs move through the step queue.
import { describe, expect, it, vi } from 'vitest';
import { UpstreamUnavailableError } from '../../src/domain/errors';
import { PLANNED_VERSION } from '../../src/domain/hubStep';
import { permanentHubFault } from '../fakes';
import { KEY, VAULT, fakeRotator, hubId } from '../fakes/rotator';
import type { FakeRotator } from '../fakes/rotator';

const OTHER_KEY = { vaultUrl: VAULT, name: 'other-cmk' };

/** Nothing at all was written: no version, job, message, hub write, audit record or outcome. */
function expectNothingWritten(t: FakeRotator) {
  expect(t.keyVault.created).toHaveLength(0);
  expect(t.jobs.jobs.size).toBe(0);
  expect(t.steps.sent).toBe(0);
  expect(t.hubs.puts).toHaveLength(0);
  expect(t.audit.records).toHaveLength(0);
  expect(t.outcomes.sent).toHaveLength(0);
}

describe('rotate', () => {
  it('a dry run plans the version and the hub moves but writes nothing', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY, { keyType: 'RSA-HSM', keySize: 4096 });
    t.hubs.add(hubId('hub-1'), v1.id);
    t.hubs.add(hubId('hub-2'), `${VAULT}/keys/other-cmk/zzz`);
    const report = await t.rotator.rotate(KEY, { dryRun: true }, t.invocation);
    expect(report).toMatchObject({ status: 'planned', dryRun: true });
    expect(report.jobId).toBeUndefined();
    expect(report.plannedVersion).toMatchObject({ keyType: 'RSA-HSM', keySize: 4096 });
    expect(report.hubs).toEqual([
      expect.objectContaining({ hubName: 'hub-1', result: 'planned', from: [v1.id], to: PLANNED_VERSION }),
    ]);
    expectNothingWritten(t);
  });

  it('creates a version even when a live one exists (the operator asked), answers with the plan, then moves hubs', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    const hub = t.hubs.add(hubId('hub-1'), v1.id);
    const report = await t.rotator.rotate(KEY, { dryRun: false, reason: 'compromise drill' }, t.invocation);
    expect(t.keyVault.created).toHaveLength(1);
    const created = t.keyVault.created[0]!;
    expect(report).toMatchObject({ status: 'in-progress', createdVersion: created.id, targetVersion: created.id });
    expect(report.jobId).toBe(`contoso.vault.azure.net~hub-cmk~${created.version}`);
    expect(report.hubs).toEqual([expect.objectContaining({ hubId: hub, result: 'queued', from: [v1.id] })]);

    await t.drain();

    expect(t.hubs.keyOf(hub)).toBe(created.id);
    expect(t.audit.records.map((r) => r.result).sort()).toEqual(['moved', 'rotated']);
    expect(t.audit.records.every((r) => r.trigger === 'manual-rotate')).toBe(true);
    expect(t.audit.records.find((r) => r.result === 'rotated')?.reason).toBe('compromise drill');
  });

  it('a retried request (same request id) creates nothing more and restarts hubs that failed', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    const bad = t.hubs.add(hubId('bad'), v1.id);
    t.hubs.faults.push(permanentHubFault(bad));
    const first = await t.rotator.rotate(KEY, { dryRun: false, requestId: 'req-1' }, t.invocation);
    await t.drain();
    expect(t.jobs.taskOf(bad)?.state).toBe('failed');
    t.hubs.faults = [];

    const again = await t.rotator.rotate(KEY, { dryRun: false, requestId: 'req-1' }, t.invocation);

    expect(t.keyVault.created).toHaveLength(1);
    expect(again.jobId).toBe(first.jobId);
    expect(again.hubs).toEqual([expect.objectContaining({ hubId: bad, result: 'queued', attempts: 0 })]);
    await t.drain();
    expect(t.hubs.keyOf(bad)).toBe(t.keyVault.created[0]!.id);
    expect(t.audit.records.filter((r) => r.result === 'rotated')).toHaveLength(1);
  });
});

describe('sync', () => {
  it('moves hubs to the latest usable version without creating one; a dry run plans only', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    const v2 = t.keyVault.addVersion(KEY);
    t.keyVault.addVersion(KEY, { expiresOn: new Date('2026-01-01T00:00:00Z') }); // the newest, but expired
    const hub = t.hubs.add(hubId('hub-1'), v1.id);

    const dry = await t.rotator.sync(KEY, { dryRun: true }, t.invocation);
    expect(dry).toMatchObject({ status: 'planned', targetVersion: v2.id });
    expect(dry.hubs).toEqual([expect.objectContaining({ result: 'planned', to: v2.id })]);
    expectNothingWritten(t);

    const real = await t.rotator.sync(KEY, { dryRun: false }, t.invocation);
    expect(real).toMatchObject({ status: 'in-progress', targetVersion: v2.id });
    await t.drain();
    expect(t.hubs.keyOf(hub)).toBe(v2.id);
    expect(t.keyVault.created).toHaveLength(0);
    expect(t.audit.records).toEqual([expect.objectContaining({ result: 'moved', trigger: 'manual-sync', hubId: hub })]);
  });

  it('answers with every hub’s current state when the job is already open', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    const v2 = t.keyVault.addVersion(KEY);
    const done = t.hubs.add(hubId('done'), v1.id);
    const first = await t.rotator.sync(KEY, { dryRun: false }, t.invocation);
    await t.drain();
    const late = t.hubs.add(hubId('late'), v1.id);

    const again = await t.rotator.sync(KEY, { dryRun: false }, t.invocation);

    expect(again.jobId).toBe(first.jobId);
    expect(Object.fromEntries(again.hubs.map((h) => [h.hubId, h.result]))).toEqual({
      [done]: 'moved',
      [late]: 'queued',
    });
    expect(again.status).toBe('in-progress');
    await t.drain();
    expect(t.hubs.keyOf(late)).toBe(v2.id);
    expect(t.hubs.acceptedPuts(done)).toBe(1);
  });

  it('restarts hubs that failed: a new step, no attempts, and the old step’s messages do nothing', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    const v2 = t.keyVault.addVersion(KEY);
    const bad = t.hubs.add(hubId('bad'), v1.id);
    const good = t.hubs.add(hubId('good'), v1.id);
    t.hubs.faults.push(permanentHubFault(bad));
    await t.rotator.sync(KEY, { dryRun: false }, t.invocation);
    await t.drain();
    const failed = t.jobs.taskOf(bad)!;
    expect(failed).toMatchObject({ state: 'failed', errorCode: 'HUB_UPDATE_FAILED', attempts: 1 });
    t.hubs.faults = [];

    const again = await t.rotator.sync(KEY, { dryRun: false }, t.invocation);

    expect(again.hubs.find((h) => h.hubId === bad)).toMatchObject({ result: 'queued', attempts: 0 });
    expect(again.hubs.find((h) => h.hubId === bad)?.errorCode).toBeUndefined();
    expect(t.jobs.taskOf(bad)).toMatchObject({ state: 'pending', step: failed.step + 1, attempts: 0 });
    // A stale message of the failed step changes nothing.
    await t.rotator.advanceHub(
      { key: KEY, targetVersion: v2.version, hubs: [{ hubId: bad, step: failed.step }] },
      t.invocation,
    );
    expect(t.jobs.taskOf(bad)).toMatchObject({ state: 'pending', step: failed.step + 1 });
    await t.drain();
    expect(t.hubs.keyOf(bad)).toBe(v2.id);
    expect(t.hubs.acceptedPuts(good)).toBe(1);
  });
});

describe('operator requests that fail', () => {
  it('refuse keys of other vaults without calling anything', async () => {
    const t = fakeRotator();
    const versions = vi.spyOn(t.keyVault, 'listVersions');
    for (const run of [
      () => t.rotator.sync({ vaultUrl: 'https://evil.vault.azure.net', name: 'k' }, { dryRun: false }, t.invocation),
      () => t.rotator.rotate({ vaultUrl: 'https://evil.vault.azure.net', name: 'k' }, { dryRun: false }, t.invocation),
    ]) {
      await expect(run()).rejects.toMatchObject({ code: 'VAULT_NOT_ALLOWED' });
    }
    expect(versions).not.toHaveBeenCalled();
    expectNothingWritten(t);
  });

  it('record a permanent failure (audit + RotationFailed) before rethrowing it', async () => {
    const t = fakeRotator();
    await expect(t.rotator.sync(OTHER_KEY, { dryRun: false }, t.invocation)).rejects.toMatchObject({
      code: 'KEY_NOT_FOUND',
    });
    expect(t.audit.records).toEqual([
      expect.objectContaining({ result: 'failed', errorCode: 'KEY_NOT_FOUND', trigger: 'manual-sync' }),
    ]);
    expect(t.outcomes.sent.map((o) => o.type)).toEqual(['CmkRotator.RotationFailed']);
  });

  it('rethrow transient failures and failures of dry runs without recording them', async () => {
    const t = fakeRotator();
    t.keyVault.addVersion(KEY);
    vi.spyOn(t.hubs, 'listAll').mockRejectedValueOnce(new UpstreamUnavailableError('ARM is unavailable'));
    await expect(t.rotator.sync(KEY, { dryRun: false }, t.invocation)).rejects.toMatchObject({
      code: 'UPSTREAM_UNAVAILABLE',
      transient: true,
    });
    await expect(t.rotator.rotate(OTHER_KEY, { dryRun: true }, t.invocation)).rejects.toMatchObject({
      code: 'KEY_NOT_FOUND',
    });
    expectNothingWritten(t);
  });
});
