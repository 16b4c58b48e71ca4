// The key lifecycle after rotation through the local host: retiring superseded versions, the impact of disabling a
// version or a key, revoking with a preview and a typed confirmation, and restoring — real SDK clients, real HTTPS,
// the IoT hubs' data really wrapped by the Key Vault versions (a hub on a disabled version cannot read it).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SUB_A, SUB_B, startHarness } from '../support/harness';
import type { Harness, HubRef } from '../support/harness';
import { auditOf, hub, keyIdOf, keyVaultEvent, versions } from '../support/fleet';
import type { RestoreReport, RetireReport, RevokeReport } from '../../src/application';

describe('key lifecycle through the local host', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ settings: { ROTATOR_RECONCILE_SCHEDULE: '0 0 0 1 1 *' } });
  }, 60_000);
  afterAll(async () => {
    await h?.close();
  });

  /** Creates `count` versions of a key (oldest first) and waits until their KeyNewVersionCreated are handled. */
  async function keyWithVersions(name: string, count: number): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < count; i++) ids.push((await h.createKey(name)).id!);
    await h.stack.eventGrid.idle();
    return ids;
  }

  const enabledOf = async (name: string) =>
    Object.fromEntries((await versions(h, name)).map((v) => [v.version!, v.enabled]));
  const stateOf = (ref: HubRef) => (h.stack.arm.getHub(ref)?.properties as { state?: string } | undefined)?.state;
  /** The routes answer JSON: typed as the report the test expects (an error answer carries only `error`). */
  const post = <T = { error?: { details?: unknown } }>(
    route: string,
    body: unknown,
  ): Promise<{ status: number; body: T }> => h.api('POST', `/api/keys/${route}`, body);
  const versionOf = (id: string) => id.split('/').pop()!;
  const outcomesOf = (type: string, name: string) =>
    h.outcomes().filter((o) => o.type === type && JSON.stringify(o.data).includes(`/keys/${name}`));

  it('retire never touches a referenced or the newest version, respects the grace period, and records what it disables', async () => {
    const [v1, v2, v3, v4] = await keyWithVersions('retire-cmk', 4);
    const onOld = hub(SUB_A, 'retire-old');
    const onNewest = hub(SUB_B, 'retire-new');
    await h.seedHub(onOld, v1!);
    await h.seedHub(onNewest, v4!);
    const keyId = keyIdOf('retire-cmk');
    const decisions = (body: RetireReport) =>
      Object.fromEntries(body.versions.map((v) => [v.version, v.reason ?? v.decision]));

    // The default grace period (7 days): the unreferenced versions were superseded seconds ago.
    const graced = await post<RetireReport>('retire', { keyId, dryRun: true });
    expect(graced.status).toBe(200);
    expect(decisions(graced.body)).toEqual({
      [versionOf(v4!)]: 'newest-usable',
      [versionOf(v3!)]: 'within-grace',
      [versionOf(v2!)]: 'within-grace',
      [versionOf(v1!)]: 'referenced',
    });
    const old = (graced.body.versions as { version: string; detail: string; hubIds: string[] }[]).find(
      (v) => v.version === versionOf(v1!),
    );
    expect(old).toMatchObject({ detail: 'referenced by 1 hub', hubIds: [expect.stringMatching(/\/retire-old$/)] });

    // Without a grace period a dry run names what it would disable, and disables nothing.
    const dry = await post<RetireReport>('retire', { keyId, dryRun: true, graceDays: 0 });
    expect(dry.body.retired.sort()).toEqual([versionOf(v2!), versionOf(v3!)].sort());
    expect(Object.values(await enabledOf('retire-cmk'))).toEqual([true, true, true, true]);

    const real = await post<RetireReport>('retire', { keyId, graceDays: 0 });
    expect(real.status).toBe(200);
    expect(decisions(real.body)).toEqual({
      [versionOf(v4!)]: 'newest-usable',
      [versionOf(v3!)]: 'disabled',
      [versionOf(v2!)]: 'disabled',
      [versionOf(v1!)]: 'referenced',
    });
    expect(await enabledOf('retire-cmk')).toEqual({
      [versionOf(v1!)]: true,
      [versionOf(v2!)]: false,
      [versionOf(v3!)]: false,
      [versionOf(v4!)]: true,
    });
    // Disabled, never deleted; both hubs still read their data.
    expect(await versions(h, 'retire-cmk')).toHaveLength(4);
    for (const ref of [onOld, onNewest]) expect(await h.stack.arm.checkHubData(ref)).toMatchObject({ readable: true });
    const retired = (await auditOf(h, 'retire-cmk')).filter((r) => r.result === 'retired');
    expect(retired.map((r) => r.fromVersion).sort()).toEqual([versionOf(v2!), versionOf(v3!)].sort());
    expect(
      outcomesOf('CmkRotator.VersionRetired', 'retire-cmk')
        .map((o) => o.subject)
        .sort(),
    ).toEqual([v2!, v3!].sort());

    // Again: nothing left to retire.
    const again = await post<RetireReport>('retire', { keyId, graceDays: 0 });
    expect(again.body.retired).toEqual([]);
    expect(decisions(again.body)[versionOf(v2!)]).toBe('already-disabled');
  }, 90_000);

  it('impact lists exactly the hubs that depend on a version or the key; revoke needs confirmation, disables, audits and publishes; restore brings the hubs back', async () => {
    const [v0, v1, v2] = await keyWithVersions('life-cmk', 3);
    const onV1 = hub(SUB_A, 'life-v1');
    const onV2 = hub(SUB_B, 'life-v2');
    const bystander = hub(SUB_A, 'life-bystander');
    await h.seedHub(onV1, v1!);
    await h.seedHub(onV2, v2!);
    const [otherKey] = await keyWithVersions('life-other-cmk', 1);
    await h.seedHub(bystander, otherKey!);
    const keyId = keyIdOf('life-cmk');
    const names = (list: { hubName: string }[]) => list.map((x) => x.hubName).sort();
    const impactOf = async (query: string) => {
      const answer = await h.api('GET', `/api/keys/impact?${query}`);
      expect(answer.status, JSON.stringify(answer.body)).toBe(200);
      return answer.body as { hubs: { hubName: string; keyIdentifier: string; wouldFail: boolean }[] };
    };

    // Impact, read live: a version (in the keyId or as `version`), the whole key, a version no hub uses.
    const ofV1 = await impactOf(`keyId=${encodeURIComponent(v1!)}`);
    expect(ofV1.hubs).toEqual([expect.objectContaining({ hubName: 'life-v1', keyIdentifier: v1, wouldFail: true })]);
    expect(names((await impactOf(`keyId=${encodeURIComponent(keyId)}&version=${versionOf(v2!)}`)).hubs)).toEqual([
      'life-v2',
    ]);
    expect(names((await impactOf(`keyId=${encodeURIComponent(keyId)}`)).hubs)).toEqual(['life-v1', 'life-v2']);
    expect((await impactOf(`keyId=${encodeURIComponent(v0!)}`)).hubs).toEqual([]);
    const unknown = await h.api('GET', `/api/keys/impact?keyId=${encodeURIComponent(`${keyId}/0123abcd`)}`);
    expect(unknown.status).toBe(404);

    // The preview (dryRun defaults to true): every enabled version, the hubs that go dark; nothing changes.
    const preview = await post<RevokeReport>('revoke', { keyId });
    expect(preview.status).toBe(200);
    expect(preview.body).toMatchObject({ status: 'planned', dryRun: true });
    expect(preview.body.versions.sort()).toEqual([v0, v1, v2].map((v) => versionOf(v!)).sort());
    expect(names(preview.body.hubs)).toEqual(['life-v1', 'life-v2']);
    // No confirmation, or the wrong one: 400 on `confirm`, nothing changes.
    for (const body of [
      { keyId, dryRun: false },
      { keyId, dryRun: false, confirm: 'life-other-cmk' },
    ]) {
      const refused = await post('revoke', body);
      expect(refused.status).toBe(400);
      expect(refused.body.error?.details).toEqual([{ field: 'confirm', message: expect.stringContaining('life-cmk') }]);
    }
    expect(Object.values(await enabledOf('life-cmk'))).toEqual([true, true, true]);
    expect((await auditOf(h, 'life-cmk')).filter((r) => r.result === 'revoked')).toEqual([]);
    expect(stateOf(onV1)).toBe('Active');

    const revoked = await post<RevokeReport>('revoke', { keyId, dryRun: false, confirm: 'life-cmk' });
    expect(revoked.status).toBe(200);
    expect(revoked.body).toMatchObject({ status: 'revoked' });
    expect(Object.values(await enabledOf('life-cmk'))).toEqual([false, false, false]);
    // The hubs lose their data and report it; the bystander on another key does not.
    for (const ref of [onV1, onV2]) {
      expect(await h.stack.arm.checkHubData(ref), ref.name).toMatchObject({
        readable: false,
        error: { code: 'KeyDisabled' },
      });
      expect(stateOf(ref), ref.name).toBe('Inaccessible');
    }
    expect(stateOf(bystander)).toBe('Active');
    expect(await h.stack.arm.checkHubData(bystander)).toMatchObject({ readable: true });
    expect((await auditOf(h, 'life-cmk')).filter((r) => r.result === 'revoked')).toEqual([
      expect.objectContaining({ trigger: 'manual-revoke', message: expect.stringContaining('2 hub(s) lose access') }),
    ]);
    const [revokedEvent, ...more] = outcomesOf('CmkRotator.KeyRevoked', 'life-cmk');
    expect(more).toEqual([]);
    expect(names((revokedEvent?.data as { hubs: { hubName: string }[] }).hubs)).toEqual(['life-v1', 'life-v2']);
    const status = await h.api('GET', `/api/keys/status?keyId=${encodeURIComponent(keyId)}`);
    expect((status.body as { revoked?: { versions: string[] } }).revoked?.versions).toHaveLength(3);
    // Impact now shows the state ARM reports.
    expect((await impactOf(`keyId=${encodeURIComponent(v1!)}`)).hubs).toEqual([
      expect.objectContaining({ hubName: 'life-v1', state: 'Inaccessible' }),
    ]);

    // A revoked key is not rotated: its KeyNearExpiry is recorded and ignored.
    expect(await h.deliver([keyVaultEvent('KeyNearExpiry', v2!)])).toBe(202);
    await h.until(
      async () => (await auditOf(h, 'life-cmk')).some((r) => r.result === 'ignored' && /revoked/.test(r.message ?? '')),
      'the ignored KeyNearExpiry in the audit log',
    );
    expect(await versions(h, 'life-cmk')).toHaveLength(3);

    // Restore: needs the name too; re-enables exactly what the revocation disabled; the hubs read their data again.
    expect((await post('restore', { keyId })).status).toBe(400);
    const restorePlan = await post<RestoreReport>('restore', { keyId, dryRun: true });
    expect(restorePlan.body).toMatchObject({ status: 'planned' });
    expect(names(restorePlan.body.hubs)).toEqual(['life-v1', 'life-v2']);
    expect(Object.values(await enabledOf('life-cmk'))).toEqual([false, false, false]);
    const restored = await post<RestoreReport>('restore', { keyId, confirm: 'life-cmk' });
    expect(restored.status).toBe(200);
    expect(restored.body.versions.sort()).toEqual([v0, v1, v2].map((v) => versionOf(v!)).sort());
    expect(Object.values(await enabledOf('life-cmk'))).toEqual([true, true, true]);
    for (const ref of [onV1, onV2]) {
      expect(await h.stack.arm.checkHubData(ref), ref.name).toMatchObject({ readable: true });
      expect(stateOf(ref), ref.name).toBe('Active');
    }
    expect((await auditOf(h, 'life-cmk')).filter((r) => r.result === 'restored')).toHaveLength(1);
    expect(outcomesOf('CmkRotator.KeyRestored', 'life-cmk')).toHaveLength(1);
    expect((await post('restore', { keyId, confirm: 'life-cmk' })).status).toBe(409);
  }, 120_000);

  it('revoking one version cuts off only its hubs; restore re-enables only that version', async () => {
    const [v1, v2] = await keyWithVersions('one-cmk', 2);
    const onV1 = hub(SUB_A, 'one-v1');
    const onV2 = hub(SUB_A, 'one-v2');
    await h.seedHub(onV1, v1!);
    await h.seedHub(onV2, v2!);
    const keyId = keyIdOf('one-cmk');

    const revoked = await post<RevokeReport>('revoke', {
      keyId,
      version: versionOf(v1!),
      dryRun: false,
      confirm: 'one-cmk',
    });
    expect(revoked.status).toBe(200);
    expect(revoked.body).toMatchObject({
      versions: [versionOf(v1!)],
      hubs: [expect.objectContaining({ hubName: 'one-v1' })],
    });
    expect(await enabledOf('one-cmk')).toEqual({ [versionOf(v1!)]: false, [versionOf(v2!)]: true });
    expect([stateOf(onV1), stateOf(onV2)]).toEqual(['Inaccessible', 'Active']);

    expect((await post('restore', { keyId, confirm: 'one-cmk' })).status).toBe(200);
    expect(await enabledOf('one-cmk')).toEqual({ [versionOf(v1!)]: true, [versionOf(v2!)]: true });
    expect([stateOf(onV1), stateOf(onV2)]).toEqual(['Active', 'Active']);
    expect(await h.stack.arm.checkHubData(onV1)).toMatchObject({ readable: true });
  }, 90_000);
});
