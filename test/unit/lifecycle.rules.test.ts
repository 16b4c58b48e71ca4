// The key lifecycle's records and answers, as operators and alert rules read them: impact per version, what a
// revocation and a restore log, audit and publish, and the retire decisions' words.
import { describe, expect, it } from 'vitest';
import { hubsOfKey, impactOf, retireDecisions, usesVersion } from '../../src/domain/lifecycle';
import type { KeyVersionSummary } from '../../src/domain/ports';
import { KEY, VAULT, fakeRotator, hubId } from '../fakes/rotator';

const KEY_ID = `${VAULT}/keys/hub-cmk`;
const DAY = 86_400_000;

function twoVersions() {
  const t = fakeRotator();
  const v1 = t.keyVault.addVersion(KEY);
  const v2 = t.keyVault.addVersion(KEY);
  t.hubs.add(hubId('old'), v1.id);
  t.hubs.add(hubId('new'), v2.id, {
    properties: { state: 'Active', encryption: { keyVaultProperties: [{ keyIdentifier: v2.id }] } },
  });
  return { t, v1, v2 };
}

describe('impact', () => {
  it('names the hubs of one version (as the vault spells it), or of the whole key', async () => {
    const { t, v1, v2 } = twoVersions();
    const one = await t.rotator.impact(KEY, v2.version.toUpperCase());
    expect(one).toEqual({
      keyId: KEY_ID,
      version: v2.version,
      hubs: [{ hubId: hubId('new'), hubName: 'new', keyIdentifier: v2.id, wouldFail: true, state: 'Active' }],
      unaffected: [{ hubId: hubId('old'), hubName: 'old', keyIdentifier: v1.id, wouldFail: false }],
    });
    const whole = await t.rotator.impact(KEY);
    expect(whole).not.toHaveProperty('version');
    expect(whole.hubs.map((h) => h.hubName)).toEqual(['old', 'new']);
  });

  it('is a 404 for a version the key does not have', async () => {
    const { t } = twoVersions();
    const missing = 'ffffffffffffffffffffffffffffffff';
    await expect(t.rotator.impact(KEY, missing)).rejects.toMatchObject({
      code: 'KEY_NOT_FOUND',
      message: `key ${KEY_ID}/${missing} was not found in Key Vault.`,
    });
  });

  it('counts a hub as affected when any of its references uses the version', () => {
    const v = { ...KEY, version: 'aa', id: `${KEY_ID}/aa`, enabled: true, createdOn: new Date(0) } as KeyVersionSummary;
    const hub = { hubId: 'h', hubName: 'h', keyIdentifiers: [`${KEY_ID}/bb`, `${KEY_ID}/aa`] };
    expect(usesVersion(hub, v)).toBe(true);
    expect(impactOf([hub], [v], 'aa').affected[0]?.keyIdentifier).toBe(`${KEY_ID}/aa`);
    expect(
      hubsOfKey(
        [
          {
            id: 'h',
            name: 'h',
            body: { properties: { state: 3, encryption: { keyVaultProperties: [{ keyIdentifier: `${KEY_ID}/aa` }] } } },
          },
        ],
        KEY,
      ),
    ).toEqual([{ hubId: 'h', hubName: 'h', keyIdentifiers: [`${KEY_ID}/aa`] }]);
  });
});

describe('revoke and restore: logs, audit records and outcomes', () => {
  it('a revocation of the key says what it disabled and who loses access, everywhere', async () => {
    const { t, v1, v2 } = twoVersions();
    const dry = await t.rotator.revoke(KEY, { dryRun: true }, t.invocation);
    expect(dry).toMatchObject({ status: 'planned', next: 'to revoke, send "dryRun": false and "confirm": "hub-cmk"' });
    const done = await t.rotator.revoke(KEY, { dryRun: false, confirm: 'hub-cmk' }, t.invocation);
    expect(done).not.toHaveProperty('next');
    expect((await t.rotator.status(KEY)).health.reasons[0]).toBe(
      'the key is revoked: it is not rotated until it is restored',
    );
    expect(t.log.lines).toContainEqual({
      level: 'warn',
      event: 'key.revoked',
      fields: { key: 'contoso.vault.azure.net/hub-cmk', versions: `${v2.version},${v1.version}`, hubs: 2 },
    });
    expect(t.audit.records.at(-1)).toMatchObject({
      trigger: 'manual-revoke',
      result: 'revoked',
      keyId: KEY_ID,
      message: `the key revoked: disabled version(s) ${v2.version}, ${v1.version}; 2 hub(s) lose access`,
    });
    expect(t.outcomes.sent.at(-1)).toMatchObject({
      type: 'CmkRotator.KeyRevoked',
      subject: KEY_ID,
      data: {
        versions: [v2.version, v1.version],
        hubs: [
          { hubName: 'old', keyIdentifier: v1.id },
          { hubName: 'new', keyIdentifier: v2.id },
        ],
      },
    });
  });

  it('a revocation of one version names it, and one of a key with nothing enabled says so', async () => {
    const { t, v1 } = twoVersions();
    await t.rotator.revoke(KEY, { dryRun: false, confirm: 'hub-cmk', version: v1.version }, t.invocation);
    expect(t.audit.records.at(-1)?.message).toBe(
      `version ${v1.version} revoked: disabled version(s) ${v1.version}; 1 hub(s) lose access`,
    );
    const other = fakeRotator();
    other.keyVault.addVersion(KEY, { enabled: false });
    await other.rotator.revoke(KEY, { dryRun: false, confirm: 'hub-cmk' }, other.invocation);
    expect(other.audit.records.at(-1)?.message).toBe(
      'the key revoked: disabled no version (none was enabled); 0 hub(s) lose access',
    );
  });

  it('refuses a real revocation without the key’s name before it reads anything', async () => {
    const { t } = twoVersions();
    await expect(t.rotator.revoke(KEY, { dryRun: false }, t.invocation)).rejects.toMatchObject({
      code: 'INVALID_INPUT',
    });
    expect(t.audit.records).toEqual([]);
  });

  it('a restore says what it re-enabled and which hubs read their data again; a second one has nothing to do', async () => {
    const { t, v1 } = twoVersions();
    t.hubs.add(hubId('elsewhere'), `${VAULT}/keys/other/0123456789abcdef0123456789abcdef`);
    await t.rotator.revoke(KEY, { dryRun: false, confirm: 'hub-cmk', version: v1.version }, t.invocation);
    const revokedAt = t.clock.now().toISOString();
    t.clock.advance(1000);
    const restored = await t.rotator.restore(KEY, { dryRun: false, confirm: 'hub-cmk' }, t.invocation);
    expect(restored).toMatchObject({ status: 'restored', versions: [v1.version], revokedAt });
    expect(restored.hubs).toEqual([{ hubId: hubId('old'), hubName: 'old', keyIdentifier: v1.id, wouldFail: false }]);
    expect(t.log.lines).toContainEqual({
      level: 'warn',
      event: 'key.restored',
      fields: { key: 'contoso.vault.azure.net/hub-cmk', versions: v1.version, hubs: 1 },
    });
    expect(t.audit.records.at(-1)).toMatchObject({
      trigger: 'manual-restore',
      result: 'restored',
      message: `revocation of ${revokedAt} restored: re-enabled version(s) ${v1.version}; 1 hub(s) read their data again`,
    });
    expect(t.outcomes.sent.at(-1)?.type).toBe('CmkRotator.KeyRestored');
    await expect(t.rotator.restore(KEY, { dryRun: true }, t.invocation)).rejects.toMatchObject({
      code: 'NOT_REVOKED',
      message: `Key ${KEY_ID} has nothing to restore: its last revocation was restored at ${t.clock.now().toISOString()}.`,
    });
  });
});

describe('retire decisions in words', () => {
  const NOW = new Date('2026-06-01T00:00:00Z');
  const version = (v: string, daysAgo: number, extra: Partial<KeyVersionSummary> = {}): KeyVersionSummary => ({
    ...KEY,
    version: v,
    id: `${KEY_ID}/${v}`,
    enabled: true,
    createdOn: new Date(NOW.getTime() - daysAgo * DAY),
    ...extra,
  });

  it('keeps with a reason each operator can read', () => {
    const [newest, middle, old, off, referenced] = [
      version('e', 1),
      version('d', 3),
      version('c', 20),
      version('b', 30, { enabled: false }),
      version('a', 40),
    ];
    const hubs = [
      { hubId: 'h1', hubName: 'h1', keyIdentifiers: [`${KEY_ID}/a`] },
      { hubId: 'h2', hubName: 'h2', keyIdentifiers: [`${KEY_ID}/a`] },
    ];
    const usable = new Set(['e', 'd', 'c', 'a']);
    const decisions = retireDecisions([newest, middle, old, off, referenced], usable, hubs, 7, NOW);
    expect(decisions.map((d) => [d.version.version, d.decision, 'detail' in d ? d.detail : ''])).toEqual([
      ['e', 'keep', 'the newest usable version'],
      [
        'd',
        'keep',
        `within the 7-day grace period (a newer version is usable since ${new Date(NOW.getTime() - DAY).toISOString()}; retirable from ${new Date(NOW.getTime() + 6 * DAY).toISOString()})`,
      ],
      // The grace counts from the first newer version that became usable (d, 3 days ago): still within.
      [
        'c',
        'keep',
        `within the 7-day grace period (a newer version is usable since ${new Date(NOW.getTime() - 3 * DAY).toISOString()}; retirable from ${new Date(NOW.getTime() + 4 * DAY).toISOString()})`,
      ],
      ['b', 'keep', 'already disabled'],
      ['a', 'keep', 'referenced by 2 hubs'],
    ]);
    const single = retireDecisions([newest, referenced], usable, hubs.slice(0, 1), 7, NOW);
    expect(single[1]).toMatchObject({ reason: 'referenced', detail: 'referenced by 1 hub', hubIds: ['h1'] });
  });

  it('keeps everything while a hub is updating, naming the hubs, and says when nothing newer is usable', () => {
    const updating = [{ hubId: 'u', hubName: 'u', keyIdentifiers: [`${KEY_ID}/x`], provisioningState: 'Updating' }];
    const decisions = retireDecisions([version('e', 30), version('d', 40)], new Set(['e', 'd']), updating, 7, NOW);
    expect(decisions[1]).toEqual({
      version: expect.objectContaining({ version: 'd' }),
      decision: 'keep',
      reason: 'hub-updating',
      detail: '1 hub(s) of the key are being updated; their previous version is not known until they settle',
      hubIds: ['u'],
    });
    const none = retireDecisions([version('e', 30, { enabled: true }), version('d', 40)], new Set(['d']), [], 7, NOW);
    expect(none[0]).toMatchObject({ reason: 'no-newer-usable', detail: 'no newer usable version exists' });
  });
});
