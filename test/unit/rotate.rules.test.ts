// What a rotation leaves behind for operators: the decision it reports, the key.rotated log line, the audit record
// and KeyRotated outcome (one id per created version, so a repeat replaces them), and which version hubs move to.
import { describe, expect, it, vi } from 'vitest';
import { REQUEST_TAG, ROTATED_FROM_TAG } from '../../src/domain/keyPolicy';
import type { KeyVersionSummary } from '../../src/domain/ports';
import { KEY, VAULT, fakeRotator, hubId, keyVaultEvent } from '../fakes/rotator';

const DAY = 86_400_000;
const NOW = new Date('2026-06-01T00:00:00Z').getTime();
const LABEL = 'contoso.vault.azure.net/hub-cmk';
const KEY_URL = `${VAULT}/keys/hub-cmk`;

describe('an operator’s rotation', () => {
  it('reports the decision, with the operator’s reason when given', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    t.hubs.add(hubId('hub'), v1.id);
    const plain = await t.rotator.rotate(KEY, { dryRun: false }, t.invocation);
    expect(plain.decision).toBe('rotation requested');
    const drill = await t.rotator.rotate(KEY, { dryRun: false, reason: 'compromise drill' }, t.invocation);
    expect(drill.decision).toBe('rotation requested: compromise drill');
  });

  it('logs key.rotated, and writes the audit record and KeyRotated outcome under the version’s id', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    t.hubs.add(hubId('hub'), v1.id);
    await t.rotator.rotate(KEY, { dryRun: false, reason: 'drill' }, t.invocation);
    const created = t.keyVault.created[0]!;
    const id = `contoso.vault.azure.net|hub-cmk|rotated|${created.version}`;
    expect(t.log.lines.filter((l) => l.event === 'key.rotated')).toEqual([
      {
        level: 'info',
        event: 'key.rotated',
        fields: {
          key: LABEL,
          fromVersion: v1.version,
          version: created.version,
          expiresOn: created.expiresOn!.toISOString(),
        },
      },
    ]);
    expect(t.audit.records.filter((r) => r.result === 'rotated')).toStrictEqual([
      {
        id,
        time: created.createdOn,
        trigger: 'manual-rotate',
        correlationId: 'inv-1',
        reason: 'drill',
        keyId: KEY_URL,
        result: 'rotated',
        toVersion: created.version,
        fromVersion: v1.version,
      },
    ]);
    expect(t.outcomes.sent.filter((o) => o.type === 'CmkRotator.KeyRotated')).toStrictEqual([
      {
        id,
        type: 'CmkRotator.KeyRotated',
        subject: created.id,
        data: {
          key: LABEL,
          keyId: created.id,
          version: created.version,
          fromVersion: v1.version,
          expiresOn: created.expiresOn!.toISOString(),
          correlationId: 'inv-1',
        },
      },
    ]);
  });

  it('a failure is recorded as the operator’s rotation', async () => {
    const t = fakeRotator();
    await expect(t.rotator.rotate(KEY, { dryRun: false }, t.invocation)).rejects.toMatchObject({
      code: 'KEY_NOT_FOUND',
    });
    expect(t.audit.records).toEqual([expect.objectContaining({ result: 'failed', trigger: 'manual-rotate' })]);
  });

  it('a retried request repairs the record of the version it created: same id (lower case), no from-version when untagged', async () => {
    const t = fakeRotator();
    // The first attempt created this version (with the request's tag) and died before its audit record; a newer,
    // disabled version without tags came later.
    const earlier = t.keyVault.addVersion(KEY, { version: 'ABCDEF'.padEnd(32, '0'), tags: { [REQUEST_TAG]: 'req-1' } });
    t.keyVault.addVersion(KEY, { enabled: false, tags: undefined as unknown as Record<string, string> });
    t.hubs.add(hubId('hub'), `${KEY_URL}/${'0'.repeat(32)}`);
    const report = await t.rotator.rotate(KEY, { dryRun: false, requestId: 'req-1' }, t.invocation);
    expect(t.keyVault.created).toHaveLength(0);
    expect(report.decision).toMatch(
      new RegExp(`^rotation requested \\(request req-1 already created version ${earlier.version}\\)`),
    );
    const id = `contoso.vault.azure.net|hub-cmk|rotated|${earlier.version.toLowerCase()}`;
    expect(t.audit.records.filter((r) => r.result === 'rotated')).toEqual([
      expect.objectContaining({ id, time: earlier.createdOn, toVersion: earlier.version }),
    ]);
    expect(t.audit.records.find((r) => r.result === 'rotated')).not.toHaveProperty('fromVersion');
    const outcome = t.outcomes.sent.find((o) => o.type === 'CmkRotator.KeyRotated')!;
    expect(outcome.id).toBe(id);
    expect(outcome.data).not.toHaveProperty('fromVersion');
    expect(outcome.data).not.toHaveProperty('expiresOn');
  });

  it('a retried request finds the earlier version by its tag and names where it came from', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    t.hubs.add(hubId('hub'), v1.id);
    t.keyVault.addVersion(KEY, { tags: { [REQUEST_TAG]: 'req-1', [ROTATED_FROM_TAG]: v1.version } });
    await t.rotator.rotate(KEY, { dryRun: false, requestId: 'req-1' }, t.invocation);
    expect(t.audit.records.find((r) => r.result === 'rotated')?.fromVersion).toBe(v1.version);
    expect(t.outcomes.sent.find((o) => o.type === 'CmkRotator.KeyRotated')?.data.fromVersion).toBe(v1.version);
  });

  it('plans the hubs’ move to the created version, even one Key Vault lists in the same second as the previous', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY, { version: 'f'.repeat(32), latest: true });
    const hub = t.hubs.add(hubId('hub'), v1.id);
    vi.spyOn(t.keyVault, 'createVersion').mockImplementation((key, spec) =>
      Promise.resolve(
        t.keyVault.addVersion(key, {
          version: 'a'.repeat(32),
          createdOn: v1.createdOn,
          expiresOn: spec.expiresOn,
          tags: spec.tags,
        }),
      ),
    );
    const report = await t.rotator.rotate(KEY, { dryRun: false }, t.invocation);
    expect(report.targetVersion).toBe(`${KEY_URL}/${'a'.repeat(32)}`);
    expect(report.hubs).toEqual([expect.objectContaining({ hubId: hub, result: 'queued', to: report.targetVersion })]);
  });
});

describe('a rotation Key Vault asked for', () => {
  it('creates nothing when a newer version appeared meanwhile (checked again under the key’s lease)', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY, { expiresOn: new Date(NOW + 10 * DAY) });
    t.hubs.add(hubId('hub'), v1.id);
    const list = t.keyVault.listVersions.bind(t.keyVault);
    let v2: KeyVersionSummary | undefined;
    vi.spyOn(t.keyVault, 'listVersions').mockImplementation(async (key) => {
      const seen = await list(key);
      // Another instance creates a version right after the event's first look.
      v2 ??= t.keyVault.addVersion(KEY);
      return seen;
    });
    const report = await t.rotator.handleEvent(keyVaultEvent('KeyNearExpiry', v1.id), t.invocation);
    expect(t.keyVault.created).toHaveLength(0);
    expect(report.decision).toBe(`a newer version ${v2!.version} already exists`);
    expect(report.targetVersion).toBe(v2!.id);
  });
});
