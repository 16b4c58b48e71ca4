// The bookkeeping every use case shares (failures recorded, logged and published the same way; a run's status from
// its hubs), the target version, restarting quiet steps, and what status and GET /api/keys read.
import { describe, expect, it } from 'vitest';
import { emptyReport, latestUsable, publish, recordFailure, statusOf } from '../../src/application/context';
import { startSteps } from '../../src/application/propagate';
import {
  KeyNotFoundError,
  UpstreamUnavailableError,
  ValidationError,
  VaultNotAllowedError,
} from '../../src/domain/errors';
import type { HubReport } from '../../src/domain/hubStep';
import type { HubTask, RotationJob } from '../../src/domain/ports';
import { KEY, VAULT, fakeRotator, hubId, keyVaultEvent } from '../fakes/rotator';

const KEY_ID = `${VAULT}/keys/hub-cmk`;
const report = (result: HubReport['result']): HubReport => ({ hubId: 'h', hubName: 'h', from: [], to: 'v', result });

describe('a run’s status from its hubs', () => {
  it.each([
    [['failed', 'failed'], 'failed'],
    [['failed', 'moved'], 'partially-failed'],
    [['failed', 'queued'], 'in-progress'],
    [['moved', 'in-flight'], 'in-progress'],
    [['moved', 'already-current', 'skipped'], 'succeeded'],
    [[], 'succeeded'],
  ] as const)('%j is %s', (results, status) => {
    expect(statusOf(results.map(report), false)).toBe(status);
  });

  it('is planned in a dry run, whatever the hubs', () => {
    expect(statusOf([report('failed')], true)).toBe('planned');
  });

  it('answers a run that did nothing with no hubs and not as a dry run', () => {
    const t = fakeRotator();
    expect(emptyReport(KEY_ID, 'manual-sync', t.invocation, 'refused', 'no', 'VAULT_NOT_ALLOWED')).toEqual({
      keyId: KEY_ID,
      trigger: 'manual-sync',
      dryRun: false,
      decision: 'no',
      hubs: [],
      status: 'refused',
      message: 'no',
      errorCode: 'VAULT_NOT_ALLOWED',
      correlationId: 'inv-1',
    });
  });
});

describe('recording a failed run', () => {
  const started = () => Date.now() - 5;

  it('a permanent failure: error log, failed audit record with its duration, RotationFailed outcome', async () => {
    const t = fakeRotator();
    const result = await recordFailure(t.deps, new KeyNotFoundError('key k'), t.invocation, started(), {
      trigger: 'manual-sync',
      keyId: KEY_ID,
    });
    expect(result).toMatchObject({
      status: 'failed',
      errorCode: 'KEY_NOT_FOUND',
      message: 'key k was not found in Key Vault.',
    });
    expect(t.log.lines).toEqual([
      {
        level: 'error',
        event: 'rotation.failed',
        fields: {
          key: KEY_ID,
          errorCode: 'KEY_NOT_FOUND',
          message: 'key k was not found in Key Vault.',
          transient: false,
        },
      },
    ]);
    const [record] = t.audit.records;
    expect(record).toMatchObject({
      result: 'failed',
      trigger: 'manual-sync',
      keyId: KEY_ID,
      errorCode: 'KEY_NOT_FOUND',
    });
    expect(record!.durationMs).toBeGreaterThanOrEqual(5);
    expect(record!.durationMs).toBeLessThan(60_000);
    expect(t.outcomes.sent).toEqual([
      {
        type: 'CmkRotator.RotationFailed',
        subject: KEY_ID,
        data: expect.objectContaining({ result: 'failed', time: record!.time.toISOString(), keyId: KEY_ID }),
      },
    ]);
  });

  it('a transient failure: a warning and a retrying record, no outcome', async () => {
    const t = fakeRotator();
    await recordFailure(t.deps, new UpstreamUnavailableError('later'), t.invocation, started(), {
      trigger: 'event',
      keyId: KEY_ID,
    });
    expect(t.log.lines.map((l) => [l.level, l.event, l.fields.transient])).toEqual([['warn', 'rotation.failed', true]]);
    expect(t.audit.records.map((r) => r.result)).toEqual(['retrying']);
    expect(t.outcomes.sent).toEqual([]);
  });

  it('a refused request: a refused record and no outcome; an unnamed key is published as "unknown"', async () => {
    const t = fakeRotator();
    const refused = await recordFailure(t.deps, new VaultNotAllowedError('https://evil'), t.invocation, started(), {
      trigger: 'manual-rotate',
      keyId: '',
    });
    expect(refused.status).toBe('refused');
    await recordFailure(t.deps, new ValidationError([{ field: 'keyId', message: 'bad' }]), t.invocation, started(), {
      trigger: 'manual-rotate',
      keyId: '',
    });
    expect(t.audit.records.map((r) => r.result)).toEqual(['refused', 'refused']);
    expect(t.outcomes.sent).toEqual([]);
    await recordFailure(t.deps, new KeyNotFoundError('k'), t.invocation, started(), { trigger: 'event', keyId: '' });
    expect(t.outcomes.sent.map((o) => o.subject)).toEqual(['unknown']);
  });

  it('asks for a retry when a permanent failure cannot be recorded, and logs why; a transient one is answered anyway', async () => {
    const t = fakeRotator();
    t.audit.faults.push(() => new UpstreamUnavailableError('table down'));
    await expect(
      recordFailure(t.deps, new KeyNotFoundError('k'), t.invocation, started(), { trigger: 'event', keyId: KEY_ID }),
    ).rejects.toMatchObject({ code: 'UPSTREAM_UNAVAILABLE', message: 'The audit log could not record a failure.' });
    expect(t.log.lines).toContainEqual({
      level: 'error',
      event: 'audit.failed',
      fields: { errorCode: 'UPSTREAM_UNAVAILABLE', message: 'table down' },
    });
    await expect(
      recordFailure(t.deps, new UpstreamUnavailableError('x'), t.invocation, started(), {
        trigger: 'event',
        keyId: KEY_ID,
      }),
    ).resolves.toMatchObject({ status: 'failed' });
  });
});

describe('publishing outcomes', () => {
  it('sends nothing for nothing, and logs (does not throw) when the topic refuses', async () => {
    const t = fakeRotator();
    let calls = 0;
    t.deps.outcomes = {
      publish: () => {
        calls++;
        return Promise.reject(new UpstreamUnavailableError('topic down'));
      },
    };
    await publish(t.deps, t.invocation, []);
    expect(calls).toBe(0);
    await publish(t.deps, t.invocation, [{ type: 'CmkRotator.KeyRotated', subject: KEY_ID, data: {} }]);
    expect(calls).toBe(1);
    expect(t.log.lines).toEqual([
      {
        level: 'error',
        event: 'outcomes.failed',
        fields: { errorCode: 'UPSTREAM_UNAVAILABLE', message: 'topic down', count: 1 },
      },
    ]);
  });
});

describe('the target version', () => {
  it('checks live versions only, newest first, and lists why each was refused', async () => {
    const t = fakeRotator();
    const weak = t.keyVault.addVersion(KEY, { keySize: 1024 });
    const noWrap = t.keyVault.addVersion(KEY, { keyOps: ['encrypt'] });
    t.keyVault.addVersion(KEY, { enabled: false });
    const versions = await t.keyVault.listVersions(KEY);
    await expect(latestUsable(t.deps, KEY, versions)).rejects.toMatchObject({
      code: 'KEY_UNUSABLE',
      reasons: [
        `${noWrap.version}: its key_ops do not allow wrapKey, its key_ops do not allow unwrapKey`,
        `${weak.version}: its RSA size 1024 is below 2048 bits`,
      ],
    });
  });

  it('says so when no version is live at all', async () => {
    const t = fakeRotator();
    t.keyVault.addVersion(KEY, { enabled: false });
    await expect(latestUsable(t.deps, KEY, await t.keyVault.listVersions(KEY))).rejects.toMatchObject({
      reasons: ['no enabled, unexpired version exists'],
    });
  });
});

describe('a repeated event for a job', () => {
  it('is answered at once, without listing hubs, when the job is planned or was opened moments ago', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    const v2 = t.keyVault.addVersion(KEY);
    t.hubs.add(hubId('a'), v1.id);
    const event = keyVaultEvent('KeyNewVersionCreated', v2.id);
    await t.rotator.handleEvent(event, t.invocation);
    const listings = t.hubs.listings;
    const again = await t.rotator.handleEvent({ ...event, id: 'e2' }, t.invocation);
    expect(again.decision).toMatch(new RegExp(`; the move to ${v2.version} is already planned$`));
    expect(t.hubs.listings).toBe(listings);
    expect(t.log.lines.filter((l) => l.event === 'job.joined').map((l) => l.fields)).toEqual([
      { key: 'contoso.vault.azure.net/hub-cmk', version: v2.version, jobId: again.jobId, planned: true },
    ]);

    const other = fakeRotator();
    const w1 = other.keyVault.addVersion(KEY);
    const w2 = other.keyVault.addVersion(KEY);
    other.hubs.add(hubId('a'), w1.id);
    const job: RotationJob = {
      key: KEY,
      targetVersion: w2.version,
      targetId: w2.id,
      trigger: 'event',
      correlationId: 'c',
      openedAt: other.clock.now(),
    };
    await other.jobs.open(job, []);
    const joined = await other.rotator.handleEvent(keyVaultEvent('KeyNewVersionCreated', w2.id), other.invocation);
    expect(joined.decision).toMatch(/is already being planned$/);
    other.clock.advance(60_000);
    const replanned = await other.rotator.handleEvent(keyVaultEvent('KeyNewVersionCreated', w2.id), other.invocation);
    expect(replanned.hubs.map((h) => h.hubName)).toEqual(['a']);
  });
});

describe('restarting steps that went quiet', () => {
  it('restarts an open task only when its lease, last change and wait all lie two leases back', async () => {
    const t = fakeRotator();
    const now = t.clock.now().getTime();
    const quiet = now - 2 * t.deps.settings.stepLeaseMs;
    const job: RotationJob = {
      key: KEY,
      targetVersion: 'v',
      targetId: `${KEY_ID}/v`,
      trigger: 'reconcile',
      correlationId: 'c',
      openedAt: new Date(quiet - 1000),
    };
    const old = new Date(quiet - 1);
    const edge = new Date(quiet);
    const task = (name: string, extra: Partial<HubTask>): HubTask => ({
      hubId: hubId(name),
      hubName: name,
      state: 'pending',
      step: 2,
      attempts: 0,
      from: [],
      ...extra,
    });
    await startSteps(
      t.deps,
      job,
      [
        task('stalled', { leaseUntil: old, updatedAt: old, notBefore: old }),
        task('never-touched', {}),
        task('lease-at-edge', { leaseUntil: edge, updatedAt: old }),
        task('changed-at-edge', { updatedAt: edge }),
        task('waiting-until-edge', { updatedAt: old, notBefore: edge }),
        task('done', { state: 'moved', updatedAt: old }),
        task('failed', { state: 'failed', updatedAt: old }),
        task('new', { updatedAt: new Date(now) }),
      ],
      new Set([hubId('new')]),
      false,
    );
    expect(t.steps.messages.flatMap((m) => m.message.hubs)).toEqual([
      { hubId: hubId('stalled'), step: 2 },
      { hubId: hubId('never-touched'), step: 2 },
      { hubId: hubId('new'), step: 2 },
    ]);
  });
});

describe('status and the key list read what they show', () => {
  it('takes the last rotation from the newest rotated record, not from newer moves', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    t.hubs.add(hubId('a'), v1.id);
    const rotated = await t.rotator.rotate(KEY, { dryRun: false }, t.invocation);
    await t.drain();
    expect(t.audit.records.at(-1)?.result).toBe('moved');
    const status = await t.rotator.status(KEY);
    expect(status.lastRotation).toMatchObject({
      version: rotated.createdVersion?.split('/').pop(),
      trigger: 'manual-rotate',
    });
    expect(status.hubs[0]?.move).toStrictEqual({
      result: 'moved',
      finishedAt: expect.any(String),
      durationMs: expect.any(Number),
    });
  });

  it('lets a Key Vault failure through instead of showing the key as having no usable version', async () => {
    const t = fakeRotator();
    t.keyVault.addVersion(KEY);
    t.keyVault.getVersion = () => Promise.reject(new UpstreamUnavailableError('vault down'));
    await expect(t.rotator.status(KEY)).rejects.toMatchObject({ code: 'UPSTREAM_UNAVAILABLE' });
  });

  it('says a sync was requested, and plans only the hubs that are behind', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    const v2 = t.keyVault.addVersion(KEY);
    t.hubs.add(hubId('behind'), v1.id);
    t.hubs.add(hubId('current'), v2.id);
    const plan = await t.rotator.sync(KEY, { dryRun: true }, t.invocation);
    expect(plan.decision).toBe('sync requested');
    expect(plan.hubs.map((h) => [h.hubName, h.result])).toEqual([
      ['behind', 'planned'],
      ['current', 'already-current'],
    ]);
  });

  it('shows the last rotation from the newest rotated record, and each hub’s move duration when it has one', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    t.hubs.add(hubId('a'), v1.id);
    const first = await t.rotator.rotate(KEY, { dryRun: false }, t.invocation);
    await t.drain();
    t.clock.advance(60_000);
    const second = await t.rotator.rotate(KEY, { dryRun: false }, t.invocation);
    const status = await t.rotator.status(KEY);
    expect(status.lastRotation?.version).toBe(second.createdVersion?.split('/').pop());
    expect(first.createdVersion).not.toBe(second.createdVersion);
    expect(status.notifyBeforeExpiry).toBe('P30D');
    expect(status.job).toMatchObject({ createdVersion: second.createdVersion?.split('/').pop() });
    expect(status.hubs[0]?.move).toStrictEqual({ result: 'queued' });
  });

  it('shows a key with no usable version, its versions’ validity dates, and no rotation yet', async () => {
    const t = fakeRotator();
    const notBefore = new Date(t.clock.now().getTime() + 86_400_000);
    t.keyVault.addVersion(KEY, { notBefore });
    const status = await t.rotator.status(KEY);
    expect(status.latestUsableVersion).toBeUndefined();
    expect(status.versions[0]?.notBefore).toBe(notBefore.toISOString());
    expect(status.lastRotation).toBeUndefined();
    expect(status.health.level).toBe('red');
  });

  it('lists a vault it cannot list under problems, and a hub with a malformed or repeated reference once', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    t.hubs.add(hubId('a'), v1.id, {
      properties: {
        encryption: {
          keyVaultProperties: [{ keyIdentifier: v1.id }, { keyIdentifier: v1.id }, { keyIdentifier: 'not a url' }],
        },
      },
    });
    t.keyVault.listKeys = () => Promise.reject(new UpstreamUnavailableError('vault unreachable'));
    const list = await t.rotator.keys();
    expect(list.keys.map((k) => [k.name, k.hubs.current])).toEqual([['hub-cmk', 1]]);
    expect(list.problems).toEqual([
      { keyId: VAULT, error: { code: 'UPSTREAM_UNAVAILABLE', message: 'vault unreachable' } },
    ]);
  });

  it('lists keys in order of vault and name', async () => {
    const t = fakeRotator();
    for (const name of ['zeta', 'alpha', 'mid']) {
      const v = t.keyVault.addVersion({ vaultUrl: VAULT, name });
      t.hubs.add(hubId(`hub-${name}`), v.id);
    }
    expect((await t.rotator.keys()).keys.map((k) => k.name)).toEqual(['alpha', 'mid', 'zeta']);
  });
});
