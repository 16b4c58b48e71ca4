import { describe, expect, it } from 'vitest';
import { InProcessLock } from '../../src/domain/concurrency';
import { keyLabel } from '../../src/domain/keyId';
import type { KeyName } from '../../src/domain/keyId';
import { ROTATED_FROM_TAG } from '../../src/domain/keyPolicy';
import { decideHub } from '../../src/domain/hubMove';
import { RotationService } from '../../src/domain/rotation';
import { UpstreamUnavailableError } from '../../src/domain/errors';
import type { JsonObject, RotationJob } from '../../src/domain/ports';
import {
  FakeAudit,
  FakeClock,
  FakeHubs,
  FakeJobs,
  FakeKeyVault,
  FakeOutcomes,
  MemoryLogger,
  permanentHubFault,
  transientHubFault,
} from '../fakes';

const VAULT = 'https://contoso.vault.azure.net';
const KEY: KeyName = { vaultUrl: VAULT, name: 'hub-cmk' };
const OTHER_KEY: KeyName = { vaultUrl: VAULT, name: 'other-cmk' };
const SUB = '/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Devices/IotHubs';

function setup(options: { concurrency?: number } = {}) {
  const clock = new FakeClock();
  const keyVault = new FakeKeyVault(clock);
  const hubs = new FakeHubs();
  const audit = new FakeAudit();
  const outcomes = new FakeOutcomes();
  const log = new MemoryLogger();
  const lock = new InProcessLock();
  const jobs = new FakeJobs();
  const service = new RotationService({
    keyVault,
    hubs,
    audit,
    outcomes,
    jobs,
    clock,
    lock: { runExclusive: (key, work) => lock.run(keyLabel(key), work) },
    settings: {
      allowedVaults: [VAULT],
      defaultKeyValidityDays: 90,
      hubConcurrency: options.concurrency ?? 4,
      maxEtagAttempts: 3,
      maxHubAttempts: 3,
      claimTtlMs: 60_000,
      firstRetryDelayMs: 30_000,
      nearExpiryDays: 30,
    },
  });
  const invocation = { correlationId: 'inv-1', log };
  return { clock, keyVault, hubs, audit, outcomes, jobs, log, service, invocation };
}

function event(type: string, keyId: string, extra: Record<string, unknown> = {}) {
  const [, , , , name, version] = keyId.split('/');
  return {
    id: `evt-${Math.random().toString(16).slice(2)}`,
    topic: '/subscriptions/x/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/contoso',
    subject: name,
    eventType: `Microsoft.KeyVault.${type}`,
    eventTime: '2026-06-01T00:00:00Z',
    data: {
      Id: keyId,
      VaultName: 'contoso',
      ObjectType: 'Key',
      ObjectName: name,
      Version: version,
      NBF: null,
      EXP: '1780000000 ',
      ...extra,
    },
    dataVersion: '1',
    metadataVersion: '1',
  };
}

describe('RotationService: Key Vault events', () => {
  it('near expiry of the current version creates exactly one version and moves every hub, keeping all else', async () => {
    const t = setup();
    const v1 = t.keyVault.addVersion(KEY, { keySize: 3072, tags: { owner: 'sec' } });
    t.keyVault.policies.set(`${VAULT}/keys/hub-cmk`, 'P60D');
    const h1 = t.hubs.add(`${SUB}/hub-1`, v1.id);
    const h2 = t.hubs.add(`${SUB}/hub-2`, v1.id.toUpperCase().replace('HTTPS', 'https'));
    const other = t.hubs.add(`${SUB}/hub-other`, `${VAULT}/keys/other-cmk/abc`);
    const before = structuredClone(t.hubs.hubs.get(h1)!.body);

    const report = await t.service.handleEvent(event('KeyNearExpiry', v1.id), t.invocation);

    expect(t.keyVault.created).toHaveLength(1);
    const created = t.keyVault.created[0]!;
    expect(created).toMatchObject({ keyType: 'RSA', keySize: 3072, enabled: true });
    expect(created.keyOps).toEqual(expect.arrayContaining(['wrapKey', 'unwrapKey']));
    expect(created.tags).toEqual({ owner: 'sec', [ROTATED_FROM_TAG]: v1.version });
    expect(created.expiresOn).toEqual(new Date('2026-07-31T00:00:00Z')); // policy P60D from "now"
    expect(report).toMatchObject({ status: 'succeeded', createdVersion: created.id, targetVersion: created.id });
    expect(report.hubs.map((h) => [h.hubName, h.result])).toEqual(
      expect.arrayContaining([
        ['hub-1', 'moved'],
        ['hub-2', 'moved'],
      ]),
    );
    expect(t.hubs.keyOf(h1)).toBe(created.id);
    expect(t.hubs.keyOf(h2)).toBe(created.id);
    expect(t.hubs.keyOf(other)).toBe(`${VAULT}/keys/other-cmk/abc`);
    // Only the key identifier changed; the PUT carried If-Match with the etag read.
    const after = structuredClone(t.hubs.hubs.get(h1)!.body);
    (
      before.properties as { encryption: { keyVaultProperties: { keyIdentifier: string }[] } }
    ).encryption.keyVaultProperties[0]!.keyIdentifier = created.id;
    expect(after).toEqual(before);
    expect(t.hubs.puts.every((p) => p.ifMatch?.startsWith('"etag-'))).toBe(true);
    // Audit: one rotation, one record per hub; outcomes: rotated + one per moved hub.
    expect(t.audit.records.map((r) => r.result).sort()).toEqual(['moved', 'moved', 'rotated']);
    expect(t.outcomes.sent.map((o) => o.type).sort()).toEqual([
      'CmkRotator.HubKeyUpdated',
      'CmkRotator.HubKeyUpdated',
      'CmkRotator.KeyRotated',
    ]);
    expect(t.log.lines.some((l) => l.event === 'hub.moved' && l.fields.hub === h1)).toBe(true);
  });

  it('a duplicate delivery creates no second version and rewrites no hub', async () => {
    const t = setup();
    const v1 = t.keyVault.addVersion(KEY);
    t.hubs.add(`${SUB}/hub-1`, v1.id);
    const nearExpiry = event('KeyNearExpiry', v1.id);
    await t.service.handleEvent(nearExpiry, t.invocation);
    const puts = t.hubs.puts.length;

    const again = await t.service.handleEvent(nearExpiry, t.invocation);

    expect(t.keyVault.created).toHaveLength(1);
    expect(t.hubs.puts).toHaveLength(puts);
    // The job already records the hub as moved: reported as such, not worked again.
    expect(again.hubs.map((h) => h.result)).toEqual(['moved']);
    expect(again.decision).toMatch(/newer version .* already exists/);
  });

  it('concurrent deliveries of one event create one version', async () => {
    const t = setup();
    const v1 = t.keyVault.addVersion(KEY);
    t.hubs.add(`${SUB}/hub-1`, v1.id);
    const nearExpiry = event('KeyNearExpiry', v1.id);
    const results = await Promise.allSettled([1, 2, 3].map(() => t.service.handleEvent(nearExpiry, t.invocation)));
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled']);
    expect(t.keyVault.created).toHaveLength(1);
    expect(t.hubs.keyOf(`${SUB}/hub-1`)).toBe(t.keyVault.created[0]!.id);
  });

  it('KeyExpired for an old version whose successor exists only propagates', async () => {
    const t = setup();
    const v1 = t.keyVault.addVersion(KEY);
    const v2 = t.keyVault.addVersion(KEY);
    t.hubs.add(`${SUB}/hub-1`, v1.id);
    const report = await t.service.handleEvent(event('KeyExpired', v1.id), t.invocation);
    expect(t.keyVault.created).toHaveLength(0);
    expect(report.targetVersion).toBe(v2.id);
    expect(t.hubs.keyOf(`${SUB}/hub-1`)).toBe(v2.id);
  });

  it('KeyNewVersionCreated never rotates, and an older version arriving late never downgrades a hub', async () => {
    const t = setup();
    const v1 = t.keyVault.addVersion(KEY);
    const v2 = t.keyVault.addVersion(KEY);
    const v3 = t.keyVault.addVersion(KEY);
    t.hubs.add(`${SUB}/on-v3`, v3.id);
    t.hubs.add(`${SUB}/on-v1`, v1.id);

    // v3 is latest: the late event for v2 moves the v1 hub to the latest usable version and leaves v3 alone.
    const report = await t.service.handleEvent(event('KeyNewVersionCreated', v2.id), t.invocation);

    expect(t.keyVault.created).toHaveLength(0);
    expect(t.hubs.keyOf(`${SUB}/on-v3`)).toBe(v3.id);
    expect(t.hubs.keyOf(`${SUB}/on-v1`)).toBe(v3.id);
    expect(report.hubs.find((h) => h.hubName === 'on-v3')?.result).toBe('already-current');
  });

  it('a hub already on a newer version than the usable target is skipped, not downgraded', async () => {
    const t = setup();
    const v1 = t.keyVault.addVersion(KEY);
    const v2 = t.keyVault.addVersion(KEY, { enabled: false });
    t.hubs.add(`${SUB}/ahead`, v2.id);
    const report = await t.service.handleEvent(event('KeyNewVersionCreated', v1.id), t.invocation);
    expect(t.hubs.keyOf(`${SUB}/ahead`)).toBe(v2.id);
    expect(report.hubs[0]?.result).toBe('skipped');
    expect(report.hubs[0]?.reason).toMatch(/newer version/);
  });

  it('retries a hub after 412 with a fresh read and the new etag', async () => {
    const t = setup();
    const v1 = t.keyVault.addVersion(KEY);
    const v2 = t.keyVault.addVersion(KEY);
    const hub = t.hubs.add(`${SUB}/raced`, v1.id);
    let raced = false;
    t.hubs.faults.push((doc) => {
      if (!raced) {
        raced = true;
        t.hubs.touch(doc.id); // someone else wrote the hub between our GET and PUT
      }
      return undefined;
    });
    const report = await t.service.handleEvent(event('KeyNewVersionCreated', v2.id), t.invocation);
    expect(report.hubs[0]?.result).toBe('moved');
    expect(t.hubs.puts.filter((p) => p.hubId === hub)).toHaveLength(2);
    expect(t.hubs.keyOf(hub)).toBe(v2.id);
  });

  it('isolates a permanently failing hub: the others move, the failure is recorded and published', async () => {
    const t = setup();
    const v1 = t.keyVault.addVersion(KEY);
    const v2 = t.keyVault.addVersion(KEY);
    const bad = t.hubs.add(`${SUB}/bad`, v1.id);
    const good = t.hubs.add(`${SUB}/good`, v1.id);
    t.hubs.faults.push(permanentHubFault(bad));

    const report = await t.service.handleEvent(event('KeyNewVersionCreated', v2.id), t.invocation);

    expect(report.status).toBe('partially-failed');
    expect(t.hubs.keyOf(good)).toBe(v2.id);
    expect(t.hubs.keyOf(bad)).toBe(v1.id);
    expect(report.hubs.find((h) => h.hubId === bad)).toMatchObject({
      result: 'failed',
      errorCode: 'HUB_UPDATE_FAILED',
    });
    expect(t.audit.records.find((r) => r.hubId === bad)).toMatchObject({
      result: 'failed',
      errorCode: 'HUB_UPDATE_FAILED',
    });
    expect(t.outcomes.sent.find((o) => o.subject === bad)?.type).toBe('CmkRotator.HubKeyUpdateFailed');
  });

  it('a transient hub failure is rethrown (so Event Grid redelivers) after the other hubs moved', async () => {
    const t = setup();
    const v1 = t.keyVault.addVersion(KEY);
    t.hubs.add(`${SUB}/flaky`, v1.id);
    t.hubs.add(`${SUB}/fine`, v1.id);
    t.hubs.faults.push(transientHubFault(`${SUB}/flaky`, 1));
    const nearExpiry = event('KeyNearExpiry', v1.id);

    await expect(t.service.handleEvent(nearExpiry, t.invocation)).rejects.toBeInstanceOf(UpstreamUnavailableError);
    expect(t.hubs.keyOf(`${SUB}/fine`)).toBe(t.keyVault.created[0]!.id);

    expect(t.jobs.task(`${SUB}/flaky`)).toMatchObject({ state: 'pending', attempts: 1 });
    // A redelivery inside the backoff leaves the hub alone (and is still transient)...
    await expect(t.service.handleEvent(nearExpiry, t.invocation)).rejects.toBeInstanceOf(UpstreamUnavailableError);
    expect(t.hubs.puts.filter((p) => p.hubId === `${SUB}/flaky`)).toHaveLength(1);
    // ...and the one after it finishes the job without a second version.
    t.clock.advance(31_000);
    const retry = await t.service.handleEvent(nearExpiry, t.invocation);
    expect(t.keyVault.created).toHaveLength(1);
    expect(retry.status).toBe('succeeded');
    expect(t.hubs.keyOf(`${SUB}/flaky`)).toBe(t.keyVault.created[0]!.id);
  });

  it('a hub whose earlier update is still running is retried later, not taken for current', async () => {
    const t = setup();
    const v1 = t.keyVault.addVersion(KEY);
    // A crashed invocation's PUT: ARM shows the requested key while the operation, which may yet fail, runs.
    const hub = t.hubs.add(`${SUB}/updating`, v1.id);
    (t.hubs.hubs.get(hub)!.body.properties as JsonObject).provisioningState = 'Updating';

    await expect(t.service.handleEvent(event('KeyNewVersionCreated', v1.id), t.invocation)).rejects.toBeInstanceOf(
      UpstreamUnavailableError,
    );

    expect(t.jobs.task(hub)).toMatchObject({ state: 'pending', attempts: 1, errorCode: 'UPSTREAM_UNAVAILABLE' });
    expect(t.hubs.puts).toHaveLength(0);
  });

  it('an invocation waiting on a crashed one takes its hubs over once their claim expires', async () => {
    const t = setup();
    const v1 = t.keyVault.addVersion(KEY);
    const v2 = t.keyVault.addVersion(KEY);
    const hub = t.hubs.add(`${SUB}/orphan`, v1.id);
    const job: RotationJob = {
      key: KEY,
      targetVersion: v2.version,
      targetId: v2.id,
      trigger: 'event',
      correlationId: 'crashed',
      openedAt: t.clock.now(),
    };
    const [task] = await t.jobs.open(job, [{ hubId: hub, hubName: 'orphan', from: [v1.id] }]);
    await t.jobs.claim(job, task!, new Date(t.clock.now().getTime() + 60_000));

    const handled = t.service.handleEvent(event('KeyNewVersionCreated', v2.id), t.invocation);
    setTimeout(() => t.clock.advance(60_001), 300);

    expect((await handled).status).toBe('succeeded');
    expect(t.hubs.keyOf(hub)).toBe(v2.id);
  });

  it('reports a hub whose update "succeeded" without applying the key', async () => {
    const t = setup();
    const v1 = t.keyVault.addVersion(KEY);
    const v2 = t.keyVault.addVersion(KEY);
    const hub = t.hubs.add(`${SUB}/sticky`, v1.id);
    t.hubs.ignoreKeyChangeFor.add(hub);
    const report = await t.service.handleEvent(event('KeyNewVersionCreated', v2.id), t.invocation);
    expect(report.hubs[0]).toMatchObject({ result: 'failed', errorCode: 'HUB_KEY_NOT_APPLIED' });
  });

  it('refuses an event from a vault outside the allow-list without calling anything', async () => {
    const t = setup();
    const report = await t.service.handleEvent(
      event('KeyNearExpiry', 'https://evil.vault.azure.net/keys/hub-cmk/0123456789abcdef'),
      t.invocation,
    );
    expect(report.status).toBe('refused');
    expect(report.errorCode).toBe('VAULT_NOT_ALLOWED');
    expect(t.keyVault.created).toHaveLength(0);
    expect(t.hubs.puts).toHaveLength(0);
    expect(t.audit.records[0]).toMatchObject({ result: 'refused', errorCode: 'VAULT_NOT_ALLOWED' });
  });

  it('records a malformed event as refused instead of throwing (Event Grid must not retry it)', async () => {
    const t = setup();
    const report = await t.service.handleEvent(
      { id: 'x', eventType: 'Microsoft.KeyVault.KeyNearExpiry', data: { Id: 'nope' } },
      t.invocation,
    );
    expect(report).toMatchObject({ status: 'refused', errorCode: 'INVALID_INPUT' });
    expect(t.audit.records[0]?.message).toMatch(/data\.Id/);
  });

  it('ignores other Key Vault event types', async () => {
    const t = setup();
    const report = await t.service.handleEvent(
      { ...event('KeyNearExpiry', `${VAULT}/keys/hub-cmk/abc`), eventType: 'Microsoft.KeyVault.SecretNearExpiry' },
      t.invocation,
    );
    expect(report.status).toBe('ignored');
    expect(t.audit.records).toHaveLength(0);
  });

  it('moves nothing when the newest version is unusable and reports why', async () => {
    const t = setup();
    const v1 = t.keyVault.addVersion(KEY, { keyOps: ['encrypt', 'decrypt'] });
    t.hubs.add(`${SUB}/hub`, `${VAULT}/keys/hub-cmk/oldversion`);
    const report = await t.service.handleEvent(event('KeyNewVersionCreated', v1.id), t.invocation);
    expect(report).toMatchObject({ status: 'failed', errorCode: 'KEY_UNUSABLE' });
    expect(report.message).toMatch(/wrapKey/);
    expect(t.hubs.puts).toHaveLength(0);
    expect(t.outcomes.sent.map((o) => o.type)).toEqual(['CmkRotator.RotationFailed']);
  });
});

describe('RotationService: operator requests', () => {
  it('a dry-run rotation plans the version and the hub moves but writes nothing', async () => {
    const t = setup();
    const v1 = t.keyVault.addVersion(KEY, { keyType: 'RSA-HSM', keySize: 4096 });
    t.hubs.add(`${SUB}/hub-1`, v1.id);
    t.hubs.add(`${SUB}/hub-2`, `${VAULT}/keys/other-cmk/zzz`);
    const report = await t.service.rotate(KEY, { dryRun: true }, t.invocation);
    expect(report.plannedVersion).toMatchObject({ keyType: 'RSA-HSM', keySize: 4096 });
    expect(report.hubs).toEqual([expect.objectContaining({ hubName: 'hub-1', result: 'planned', from: [v1.id] })]);
    expect(t.keyVault.created).toHaveLength(0);
    expect(t.hubs.puts).toHaveLength(0);
    expect(t.audit.records).toHaveLength(0);
    expect(t.outcomes.sent).toHaveLength(0);
  });

  it('rotate creates a version even when a live one exists (the operator asked), then moves hubs', async () => {
    const t = setup();
    const v1 = t.keyVault.addVersion(KEY);
    t.hubs.add(`${SUB}/hub-1`, v1.id);
    const report = await t.service.rotate(KEY, { dryRun: false, reason: 'compromise drill' }, t.invocation);
    expect(t.keyVault.created).toHaveLength(1);
    expect(report.hubs[0]).toMatchObject({ result: 'moved', to: t.keyVault.created[0]!.id });
    expect(t.audit.records.every((r) => r.trigger === 'manual-rotate' && r.reason === 'compromise drill')).toBe(true);
  });

  it('sync moves hubs to the latest usable version without creating one; dry run plans only', async () => {
    const t = setup();
    const v1 = t.keyVault.addVersion(KEY);
    const v2 = t.keyVault.addVersion(KEY);
    t.keyVault.addVersion(KEY, { expiresOn: new Date('2026-01-01T00:00:00Z') }); // newest but expired
    t.hubs.add(`${SUB}/hub-1`, v1.id);

    const dry = await t.service.sync(KEY, { dryRun: true }, t.invocation);
    expect(dry.hubs[0]).toMatchObject({ result: 'planned', to: v2.id });
    expect(t.hubs.puts).toHaveLength(0);

    const real = await t.service.sync(KEY, { dryRun: false }, t.invocation);
    expect(real.targetVersion).toBe(v2.id);
    expect(t.hubs.keyOf(`${SUB}/hub-1`)).toBe(v2.id);
    expect(t.keyVault.created).toHaveLength(0);
  });

  it('refuses keys of other vaults, and unknown keys are KEY_NOT_FOUND', async () => {
    const t = setup();
    await expect(
      t.service.sync({ vaultUrl: 'https://evil.vault.azure.net', name: 'k' }, { dryRun: false }, t.invocation),
    ).rejects.toMatchObject({
      code: 'VAULT_NOT_ALLOWED',
    });
    await expect(t.service.sync(OTHER_KEY, { dryRun: false }, t.invocation)).rejects.toMatchObject({
      code: 'KEY_NOT_FOUND',
    });
  });

  it('status lists versions newest first and marks each hub current or not', async () => {
    const t = setup();
    const v1 = t.keyVault.addVersion(KEY);
    const v2 = t.keyVault.addVersion(KEY, { expiresOn: new Date('2027-01-01T00:00:00Z') });
    t.hubs.add(`${SUB}/old`, v1.id);
    t.hubs.add(`${SUB}/new`, v2.id);
    const status = await t.service.status(KEY);
    expect(status.versions.map((v) => v.version)).toEqual([v2.version, v1.version]);
    expect(status.versions[0]?.expiresOn).toBe('2027-01-01T00:00:00.000Z');
    expect(status.latestUsableVersion).toBe(v2.id);
    expect(Object.fromEntries(status.hubs.map((h) => [h.hubName, h.current]))).toEqual({ old: false, new: true });
  });
});

describe('decideHub', () => {
  const versions = [
    { vaultUrl: VAULT, name: 'k', id: 'a', version: 'a', enabled: true, createdOn: new Date(1000) },
    { vaultUrl: VAULT, name: 'k', id: 'b', version: 'b', enabled: true, createdOn: new Date(2000) },
  ];
  it('moves older, leaves current and newer, skips versionless references', () => {
    expect(decideHub(['a'], 'b', versions).result).toBe('move');
    expect(decideHub(['B'], 'b', versions).result).toBe('already-current');
    expect(decideHub(['b'], 'a', versions).result).toBe('skipped');
    expect(decideHub([undefined], 'b', versions).result).toBe('skipped');
    expect(decideHub(['unknown-version'], 'b', versions).result).toBe('move');
    expect(decideHub(['a'], undefined, versions).result).toBe('move');
  });
});
