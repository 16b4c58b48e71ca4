// The pure lifecycle decisions: which versions may be retired, which hubs a disabled version or key cuts off, what a
// revocation disables, and the typed confirmation.
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/domain/errors';
import { assertConfirmed, hubsOfKey, impactOf, retireDecisions, versionsToRevoke } from '../../src/domain/lifecycle';
import type { HubKeyUse, RetireDecision } from '../../src/domain/lifecycle';
import type { KeyVersionSummary } from '../../src/domain/ports';
import { hubBody } from '../fakes';

const NOW = new Date('2026-06-15T12:00:00Z');
const DAY = 86_400_000;
const VAULT = 'https://contoso.vault.azure.net';
const KEY = { vaultUrl: VAULT, name: 'iot-cmk' };
const idOf = (version: string) => `${VAULT}/keys/iot-cmk/${version}`;

/** A version created `daysAgo` days before NOW. */
function version(name: string, daysAgo: number, overrides: Partial<KeyVersionSummary> = {}): KeyVersionSummary {
  return {
    ...KEY,
    id: idOf(name),
    version: name,
    enabled: true,
    createdOn: new Date(NOW.getTime() - daysAgo * DAY),
    ...overrides,
  };
}

const hubOn = (name: string, ...versions: string[]): HubKeyUse => ({
  hubId: `/subscriptions/s/resourceGroups/rg/providers/Microsoft.Devices/IotHubs/${name}`,
  hubName: name,
  keyIdentifiers: versions.map((v) => (v ? idOf(v) : `${VAULT}/keys/iot-cmk`)),
  provisioningState: 'Succeeded',
});

const usableSet = (...names: string[]) => new Set(names);
/** Decisions by version: `disable`, or the reason it is kept. */
const byVersion = (decisions: RetireDecision[]) =>
  Object.fromEntries(decisions.map((d) => [d.version.version, d.decision === 'disable' ? 'disable' : d.reason]));

describe('retireDecisions', () => {
  const v1 = version('v1', 200);
  const v2 = version('v2', 100);
  const v3 = version('v3', 30);

  it('disables only enabled, superseded, unreferenced versions whose successor is past the grace period', () => {
    const decisions = retireDecisions([v1, v2, v3], usableSet('v1', 'v2', 'v3'), [hubOn('a', 'v3')], 7, NOW);
    expect(byVersion(decisions)).toEqual({ v3: 'newest-usable', v2: 'disable', v1: 'disable' });
    // Newest first, every version answered.
    expect(decisions.map((d) => d.version.version)).toEqual(['v3', 'v2', 'v1']);
  });

  it('never touches the newest usable version, even with no hub on it and a zero grace period', () => {
    expect(byVersion(retireDecisions([v1, v2], usableSet('v1', 'v2'), [], 0, NOW))).toEqual({
      v2: 'newest-usable',
      v1: 'disable',
    });
  });

  it('keeps a version a hub references, naming the hubs and how many', () => {
    const decisions = retireDecisions(
      [v1, v2, v3],
      usableSet('v1', 'v2', 'v3'),
      [hubOn('a', 'v3'), hubOn('b', 'v1'), hubOn('c', 'v1')],
      7,
      NOW,
    );
    const kept = decisions.find((d) => d.version.version === 'v1');
    expect(kept).toMatchObject({ decision: 'keep', reason: 'referenced', detail: 'referenced by 2 hubs' });
    expect(kept?.decision === 'keep' && kept.hubIds?.map((id) => id.split('/').pop())).toEqual(['b', 'c']);
    expect(byVersion(decisions).v2).toBe('disable');
  });

  it('a versionless reference holds the vault’s current version', () => {
    const current = version('v3', 30, { latest: true });
    const decisions = retireDecisions([v1, current], usableSet('v1'), [hubOn('a', '')], 0, NOW);
    // v3 is not usable here (so v1 is the newest usable), yet the versionless hub uses it.
    expect(byVersion(decisions)).toEqual({ v3: 'referenced', v1: 'newest-usable' });
  });

  it('respects the grace period: a successor usable for less than graceDays keeps the old version', () => {
    const recent = version('v3', 3);
    const decisions = retireDecisions([v2, recent], usableSet('v2', 'v3'), [], 7, NOW);
    expect(decisions[1]).toMatchObject({ decision: 'keep', reason: 'within-grace' });
    expect(decisions[1]?.decision === 'keep' && decisions[1].detail).toContain('retirable from 2026-06-19T12:00:00');
    expect(byVersion(retireDecisions([v2, recent], usableSet('v2', 'v3'), [], 3, NOW)).v2).toBe('disable');
  });

  it('counts the grace period from a successor’s not-before when that is later than its creation', () => {
    const notYetLong = version('v3', 30, { notBefore: new Date(NOW.getTime() - 2 * DAY) });
    expect(byVersion(retireDecisions([v2, notYetLong], usableSet('v2', 'v3'), [], 7, NOW)).v2).toBe('within-grace');
  });

  it('keeps a version when no newer usable version exists (the newer ones are unusable)', () => {
    const weak = version('v3', 30);
    // v2 is the newest usable; v1 is older than it: v1 may go, v2 stays, v3 (unusable, newer) has no newer usable.
    expect(byVersion(retireDecisions([v1, v2, weak], usableSet('v1', 'v2'), [], 7, NOW))).toEqual({
      v3: 'no-newer-usable',
      v2: 'newest-usable',
      v1: 'disable',
    });
  });

  it('reports disabled versions as already disabled and never decides to disable them again', () => {
    const off = version('v1', 200, { enabled: false });
    expect(byVersion(retireDecisions([off, v2, v3], usableSet('v2', 'v3'), [], 7, NOW))).toEqual({
      v3: 'newest-usable',
      v2: 'disable',
      v1: 'already-disabled',
    });
  });

  it('retires nothing while a hub of the key is being updated (its previous version is not visible)', () => {
    const updating = { ...hubOn('a', 'v3'), provisioningState: 'Updating' };
    const decisions = retireDecisions([v1, v2, v3], usableSet('v1', 'v2', 'v3'), [updating], 7, NOW);
    expect(byVersion(decisions)).toEqual({ v3: 'newest-usable', v2: 'hub-updating', v1: 'hub-updating' });
  });
});

describe('impactOf', () => {
  const versions = [version('v1', 100), version('v2', 10, { latest: true })];
  const hubs = [hubOn('on-v1', 'v1'), hubOn('on-v2', 'v2'), hubOn('also-v1', 'v1'), hubOn('versionless', '')];
  const names = (list: { hubName: string }[]) => list.map((h) => h.hubName);

  it('for a version: exactly the hubs that reference it would fail; the rest of the key’s hubs would not', () => {
    const { affected, unaffected } = impactOf(hubs, versions, 'V1');
    expect(names(affected)).toEqual(['on-v1', 'also-v1']);
    expect(affected[0]).toMatchObject({ keyIdentifier: idOf('v1'), wouldFail: true, provisioningState: 'Succeeded' });
    expect(names(unaffected)).toEqual(['on-v2', 'versionless']);
    expect(unaffected.every((h) => !h.wouldFail)).toBe(true);
  });

  it('a versionless hub depends on the current version', () => {
    expect(names(impactOf(hubs, versions, 'v2').affected)).toEqual(['on-v2', 'versionless']);
  });

  it('for the whole key: every hub of the key would fail', () => {
    expect(names(impactOf(hubs, versions).affected)).toEqual(names(hubs));
  });

  it('a version no hub uses reports an empty list', () => {
    expect(impactOf([hubOn('on-v2', 'v2')], [...versions, version('v0', 300)], 'v0').affected).toEqual([]);
  });

  it('hubsOfKey reads each hub’s identifiers, provisioning state and state, leaving out hubs of other keys', () => {
    const inaccessible = hubBody('h1', idOf('v1'));
    Object.assign(inaccessible.properties as object, { provisioningState: 'Succeeded', state: 'Inaccessible' });
    const docs = [
      { id: 'h1', name: 'h1', body: inaccessible },
      { id: 'h2', name: 'h2', body: hubBody('h2', `${VAULT}/keys/other-cmk/abc`) },
    ];
    expect(hubsOfKey(docs, KEY)).toEqual([
      {
        hubId: 'h1',
        hubName: 'h1',
        keyIdentifiers: [idOf('v1')],
        provisioningState: 'Succeeded',
        state: 'Inaccessible',
      },
    ]);
  });
});

describe('versionsToRevoke and the confirmation', () => {
  const versions = [version('v1', 100, { enabled: false }), version('v2', 50), version('v3', 10)];

  it('a key: every enabled version, newest first; a version: that one (if enabled)', () => {
    expect(versionsToRevoke(versions).map((v) => v.version)).toEqual(['v3', 'v2']);
    expect(versionsToRevoke(versions, 'v2').map((v) => v.version)).toEqual(['v2']);
    expect(versionsToRevoke(versions, 'v1')).toEqual([]);
  });

  it('needs the key’s exact name, and says so on the confirm field', () => {
    expect(() => assertConfirmed(KEY, 'iot-cmk')).not.toThrow();
    for (const wrong of [undefined, 'other-cmk', 'IOT-CMK', '']) {
      let error: unknown;
      try {
        assertConfirmed(KEY, wrong);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).problems).toEqual([
        { field: 'confirm', message: expect.stringContaining('"iot-cmk"') },
      ]);
    }
  });
});
