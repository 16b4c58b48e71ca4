// What the dashboard and GET /api/keys show: each hub's standing, each key's health, and the list of managed keys.
import { describe, expect, it } from 'vitest';
import { hubStanding, keyHealth } from '../../src/domain/keyHealth';
import type { HubStanding } from '../../src/domain/keyHealth';
import type { KeyVersionSummary } from '../../src/domain/ports';
import { permanentHubFault } from '../fakes';
import { KEY, VAULT, fakeRotator, hubId } from '../fakes/rotator';

const NOW = new Date('2026-06-01T00:00:00Z');
const DAY = 86_400_000;
const days = (n: number) => new Date(NOW.getTime() + n * DAY);
const version = (v: string, extra: Partial<KeyVersionSummary> = {}): KeyVersionSummary => ({
  ...KEY,
  version: v,
  id: `${VAULT}/keys/hub-cmk/${v}`,
  enabled: true,
  createdOn: days(-10),
  ...extra,
});
const counts = (c: Partial<Record<HubStanding, number>> = {}) => ({
  current: 0,
  behind: 0,
  unusable: 0,
  failed: 0,
  ...c,
});

describe('hub standing', () => {
  const old = version('old');
  const current = version('cur');
  const versions = [
    current,
    old,
    version('off', { enabled: false }),
    version('gone', { expiresOn: days(-1) }),
    version('soon', { notBefore: days(1) }),
  ];

  it.each([
    ['on the current version', [current.id], undefined, 'current'],
    ['on an older live version', [old.id], undefined, 'behind'],
    ['on an older version whose move failed', [old.id], 'failed', 'failed'],
    ['on the current version after a failed attempt', [current.id], 'failed', 'current'],
    ['on a disabled version', [`${VAULT}/keys/hub-cmk/off`], undefined, 'unusable'],
    ['on an expired version', [`${VAULT}/keys/hub-cmk/gone`], undefined, 'unusable'],
    ['on a version not valid yet', [`${VAULT}/keys/hub-cmk/soon`], undefined, 'unusable'],
    ['on a version the vault does not have', [`${VAULT}/keys/hub-cmk/deleted`], undefined, 'unusable'],
    ['with one of two references unusable', [current.id, `${VAULT}/keys/hub-cmk/off`], undefined, 'unusable'],
    ['with a versionless reference', [`${VAULT}/keys/hub-cmk`], undefined, 'behind'],
  ] as const)('a hub %s is %s', (_, ids, state, expected) => {
    expect(hubStanding(ids, current, versions, state ? { state } : undefined, NOW)).toBe(expected);
  });

  it('is behind, not current, when the key has no usable version', () => {
    expect(hubStanding([old.id], undefined, versions, undefined, NOW)).toBe('behind');
  });
});

describe('key health', () => {
  const farExpiry = { expiresOn: days(200) };

  it('is green with every hub current and expiry outside the notify window', () => {
    expect(
      keyHealth({ hubs: counts({ current: 3 }), current: farExpiry, notifyBeforeExpiry: undefined, now: NOW }),
    ).toEqual({ level: 'green', reasons: [] });
  });

  it('is amber for hubs behind, or for a current version inside its notify window (policy or 30 days)', () => {
    expect(
      keyHealth({ hubs: counts({ behind: 2 }), current: farExpiry, notifyBeforeExpiry: undefined, now: NOW }),
    ).toEqual({
      level: 'amber',
      reasons: ['2 hubs behind the current version'],
    });
    const in20Days = { expiresOn: days(20) };
    expect(keyHealth({ hubs: counts(), current: in20Days, notifyBeforeExpiry: undefined, now: NOW }).level).toBe(
      'amber',
    );
    expect(keyHealth({ hubs: counts(), current: in20Days, notifyBeforeExpiry: 'P10D', now: NOW }).level).toBe('green');
    expect(
      keyHealth({ hubs: counts(), current: { expiresOn: days(50) }, notifyBeforeExpiry: 'P60D', now: NOW }).level,
    ).toBe('amber');
  });

  it('is red for hubs on unusable versions, failed hubs, or no usable version, listing every reason', () => {
    expect(
      keyHealth({
        hubs: counts({ unusable: 1, failed: 2, behind: 1 }),
        current: farExpiry,
        notifyBeforeExpiry: undefined,
        now: NOW,
      }),
    ).toEqual({
      level: 'red',
      reasons: ['1 hub on a version that cannot be used', '2 hubs failed to move', '1 hub behind the current version'],
    });
    expect(keyHealth({ hubs: counts(), current: undefined, notifyBeforeExpiry: undefined, now: NOW })).toMatchObject({
      level: 'red',
      reasons: [expect.stringContaining('no version is usable')],
    });
  });

  it('is red while the key is revoked, saying so first', () => {
    expect(
      keyHealth({
        hubs: counts({ unusable: 1 }),
        current: undefined,
        notifyBeforeExpiry: undefined,
        revoked: true,
        now: NOW,
      }),
    ).toEqual({
      level: 'red',
      reasons: [
        'the key is revoked: it is not rotated until it is restored',
        '1 hub on a version that cannot be used',
        'no version is usable (all disabled, expired or not yet valid)',
      ],
    });
  });

  it('is not amber for a version without expiry', () => {
    expect(keyHealth({ hubs: counts(), current: {}, notifyBeforeExpiry: undefined, now: NOW }).level).toBe('green');
  });
});

describe('GET /api/keys', () => {
  it('lists keys hubs use and keys with a rotation policy, with health, hubs per standing and the next rotation', async () => {
    const t = fakeRotator();
    const expiresOn = new Date(t.clock.now().getTime() + 100 * DAY);
    const v1 = t.keyVault.addVersion(KEY, { expiresOn });
    const v2 = t.keyVault.addVersion(KEY, { expiresOn });
    t.hubs.add(hubId('current'), v2.id);
    t.hubs.add(hubId('behind'), v1.id);
    const policyOnly = { vaultUrl: VAULT, name: 'policy-only' };
    t.keyVault.addVersion(policyOnly);
    t.keyVault.policies.set(`${VAULT}/keys/policy-only`, { expiresIn: 'P90D', createdOn: new Date(0) });
    // A key with the vault's default policy (no creation date) and no hub is not the rotator's business.
    t.keyVault.addVersion({ vaultUrl: VAULT, name: 'unused' });
    t.keyVault.policies.set(`${VAULT}/keys/unused`, { notifyBeforeExpiry: 'P30D' });
    t.keyVault.policies.set(`${VAULT}/keys/hub-cmk`, { notifyBeforeExpiry: 'P10D' });
    t.hubs.add(hubId('foreign'), 'https://other.vault.azure.net/keys/k/0123456789abcdef0123456789abcdef');

    const policyReads: string[] = [];
    const readPolicy = t.keyVault.getRotationPolicy.bind(t.keyVault);
    t.keyVault.getRotationPolicy = (key) => {
      policyReads.push(key.name);
      return readPolicy(key);
    };

    const list = await t.rotator.keys();

    // Each key's policy is read once: the listing's read serves its description too.
    expect(policyReads.sort()).toEqual(['hub-cmk', 'policy-only', 'unused']);
    expect(list.keys.map((k) => k.name)).toEqual(['hub-cmk', 'policy-only']);
    const [key, policy] = list.keys;
    expect(key).toMatchObject({
      keyId: `${VAULT}/keys/hub-cmk`,
      latestUsableVersion: v2.id,
      hubs: { current: 1, behind: 1, unusable: 0, failed: 0 },
      health: { level: 'amber', reasons: ['1 hub behind the current version'] },
      notifyBeforeExpiry: 'P10D',
      nextRotation: new Date(expiresOn.getTime() - 10 * DAY).toISOString(),
      rotationPolicy: false,
    });
    expect(key?.versions.map((v) => v.version)).toEqual([v2.version, v1.version]);
    expect(policy).toMatchObject({ rotationPolicy: true, hubs: { current: 0 }, health: { level: 'green' } });
    expect(list.unmanaged).toEqual([{ keyId: 'https://other.vault.azure.net/keys/k', hubs: 1 }]);
    expect(list.problems).toEqual([]);
  });

  it('shows the last rotation, moves and failures, and turns red when a hub failed', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    t.hubs.add(hubId('good'), v1.id);
    const bad = t.hubs.add(hubId('bad'), v1.id);
    t.hubs.faults.push(permanentHubFault(bad));
    const report = await t.rotator.rotate(KEY, { dryRun: false }, t.invocation);
    await t.drain();

    const [key] = (await t.rotator.keys()).keys;
    expect(key).toMatchObject({
      hubs: { current: 1, failed: 1 },
      health: { level: 'red', reasons: ['1 hub failed to move'] },
      lastRotation: { version: report.createdVersion?.split('/').pop(), trigger: 'manual-rotate' },
      job: { jobId: report.jobId, done: true, progress: { moved: 1, failed: 1 } },
    });
    const status = await t.rotator.status(KEY);
    const byName = Object.fromEntries(status.hubs.map((h) => [h.hubName, h]));
    expect(byName.good).toMatchObject({
      standing: 'current',
      subscriptionId: '00000000-0000-0000-0000-000000000001',
      resourceGroup: 'rg',
      move: { result: 'moved', finishedAt: expect.any(String), durationMs: expect.any(Number) },
    });
    expect(byName.bad).toMatchObject({
      standing: 'failed',
      move: { result: 'failed', errorCode: 'HUB_UPDATE_FAILED', reason: expect.stringContaining(bad) },
    });
  });

  it('lists a key that cannot be read under problems and still lists the others', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    t.hubs.add(hubId('a'), v1.id);
    t.hubs.add(hubId('b'), `${VAULT}/keys/vanished/0123456789abcdef0123456789abcdef`);
    const list = await t.rotator.keys();
    expect(list.keys.map((k) => k.name)).toEqual(['hub-cmk']);
    expect(list.problems).toEqual([
      { keyId: `${VAULT}/keys/vanished`, error: { code: 'KEY_NOT_FOUND', message: expect.any(String) } },
    ]);
  });
});
