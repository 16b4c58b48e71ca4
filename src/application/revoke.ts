// The owner's emergency brake and its release: which hubs a disabled version or key cuts off (impact), disabling
// them with a preview and a typed confirmation (revoke), and re-enabling exactly what the last revocation disabled
// (restore). The revocation is recorded in the ledger before anything is disabled, so a revoke that fails half-way
// can still be restored, and a revoked key stays out of automatic rotation until it is.
import { KeyNotFoundError, NotRevokedError } from '../domain/errors';
import { keyLabel, keyUrl, versionedKeyUrl } from '../domain/keyId';
import type { KeyName } from '../domain/keyId';
import { assertConfirmed, hubsOfKey, impactOf, usesVersion, versionsToRevoke } from '../domain/lifecycle';
import type { HubImpact } from '../domain/lifecycle';
import { newestFirst } from '../domain/keyPolicy';
import type { KeyVersionSummary, Revocation } from '../domain/ports';
import { assertAllowed, auditRecord, planAndApply, publish } from './context';
import type { Dependencies, Invocation } from './context';

export interface ImpactReport {
  keyId: string;
  /** The version asked about; absent when the question was the whole key. */
  version?: string;
  /** Hubs that would lose access to their data. Empty for a version no hub uses. */
  hubs: HubImpact[];
  /** Hubs of the key that would keep working (they use another version). */
  unaffected: HubImpact[];
}

export interface RevokeReport {
  keyId: string;
  dryRun: boolean;
  version?: string;
  status: 'planned' | 'revoked';
  /** The versions disabled (or, in a dry run, to disable). */
  versions: string[];
  /** The hubs that lose access to their data. */
  hubs: HubImpact[];
  /** In a dry run: what a real revocation must send. */
  next?: string;
  correlationId: string;
}

export interface RestoreReport {
  keyId: string;
  dryRun: boolean;
  status: 'planned' | 'restored';
  /** The versions re-enabled (or, in a dry run, to re-enable): exactly those the last revocation disabled. */
  versions: string[];
  /** The hubs on those versions, which read their data again. */
  hubs: HubImpact[];
  revokedAt: string;
  correlationId: string;
}

/** The key's revocation that was not restored yet, if any: such a key is not rotated automatically. */
export async function activeRevocation(deps: Dependencies, key: KeyName): Promise<Revocation | undefined> {
  const last = await deps.revocations.last(key);
  return last && !last.restoredAt ? last : undefined;
}

/** GET /api/keys/impact: read live, writes nothing. */
export async function impact(deps: Dependencies, key: KeyName, version?: string): Promise<ImpactReport> {
  assertAllowed(deps, key);
  const versions = await deps.keyVault.listVersions(key);
  const named = version === undefined ? undefined : findVersion(key, versions, version);
  const { affected, unaffected } = await hubImpact(deps, key, versions, named);
  return { keyId: keyUrl(key), ...(named ? { version: named } : {}), hubs: affected, unaffected };
}

export async function revoke(
  deps: Dependencies,
  key: KeyName,
  options: { dryRun: boolean; version?: string; confirm?: string },
  invocation: Invocation,
): Promise<RevokeReport> {
  assertAllowed(deps, key);
  // Refused before anything is read or written: a real revocation must be confirmed.
  if (!options.dryRun) assertConfirmed(key, options.confirm);
  return planAndApply(deps, key, options.dryRun, {
    plan: async () => {
      const versions = await deps.keyVault.listVersions(key);
      const version = options.version === undefined ? undefined : findVersion(key, versions, options.version);
      const { affected } = await hubImpact(deps, key, versions, version);
      return { version, toDisable: versionsToRevoke(versions, version).map((v) => v.version), affected };
    },
    apply: async ({ version, toDisable, affected }, lease) => {
      // An earlier revocation not restored yet keeps its versions: one restore brings back everything revoked.
      const earlier = await activeRevocation(deps, key);
      await deps.revocations.record({
        key,
        versions: [...new Set([...(earlier?.versions ?? []), ...toDisable])],
        ...(version ? { version } : {}),
        revokedAt: deps.clock.now(),
        correlationId: invocation.correlationId,
      });
      for (const v of toDisable) {
        lease.assertHeld();
        await deps.keyVault.setEnabled(key, v, false);
      }
      invocation.log.warn('key.revoked', { key: keyLabel(key), versions: toDisable.join(','), hubs: affected.length });
      await recordChange(deps, invocation, key, {
        result: 'revoked',
        type: 'CmkRotator.KeyRevoked',
        versions: toDisable,
        hubs: affected,
        message: `${version ? `version ${version}` : 'the key'} revoked: disabled ${describeVersions(toDisable)}; ${affected.length} hub(s) lose access`,
      });
    },
    answer: ({ version, toDisable, affected }, applied): RevokeReport => ({
      keyId: keyUrl(key),
      dryRun: options.dryRun,
      ...(version ? { version } : {}),
      status: applied ? 'revoked' : 'planned',
      versions: toDisable,
      hubs: affected,
      ...(applied ? {} : { next: `to revoke, send "dryRun": false and "confirm": "${key.name}"` }),
      correlationId: invocation.correlationId,
    }),
  });
}

export async function restore(
  deps: Dependencies,
  key: KeyName,
  options: { dryRun: boolean; confirm?: string },
  invocation: Invocation,
): Promise<RestoreReport> {
  assertAllowed(deps, key);
  if (!options.dryRun) assertConfirmed(key, options.confirm);
  return planAndApply(deps, key, options.dryRun, {
    plan: async () => {
      const last = await deps.revocations.last(key);
      if (!last || last.restoredAt) throw new NotRevokedError(keyUrl(key), last?.restoredAt);
      const versions = await deps.keyVault.listVersions(key);
      // Versions deleted since the revocation cannot be enabled; the rest are exactly what it disabled.
      const restoring = newestFirst(
        versions.filter((v) => last.versions.some((r) => r.toLowerCase() === v.version.toLowerCase())),
      );
      const hubs = hubsOfKey(await deps.hubs.listAll(), key).filter((h) => restoring.some((v) => usesVersion(h, v)));
      return { last, versions: restoring.map((v) => v.version), hubs: impactOf(hubs, versions).affected };
    },
    apply: async ({ last, versions, hubs }, lease) => {
      for (const v of versions) {
        lease.assertHeld();
        await deps.keyVault.setEnabled(key, v, true);
      }
      await deps.revocations.record({ ...last, restoredAt: deps.clock.now() });
      invocation.log.warn('key.restored', { key: keyLabel(key), versions: versions.join(','), hubs: hubs.length });
      await recordChange(deps, invocation, key, {
        result: 'restored',
        type: 'CmkRotator.KeyRestored',
        versions,
        hubs,
        message: `revocation of ${last.revokedAt.toISOString()} restored: re-enabled ${describeVersions(versions)}; ${hubs.length} hub(s) read their data again`,
      });
    },
    answer: ({ last, versions, hubs }, applied): RestoreReport => ({
      keyId: keyUrl(key),
      dryRun: options.dryRun,
      status: applied ? 'restored' : 'planned',
      versions,
      // Once the versions are enabled, none of these hubs fails any more.
      hubs: hubs.map((h) => ({ ...h, wouldFail: false })),
      revokedAt: last.revokedAt.toISOString(),
      correlationId: invocation.correlationId,
    }),
  });
}

/** The hubs of the key read live, and what disabling `version` (or the key) would do to each. */
async function hubImpact(deps: Dependencies, key: KeyName, versions: readonly KeyVersionSummary[], version?: string) {
  return impactOf(hubsOfKey(await deps.hubs.listAll(), key), versions, version);
}

/** The version as the vault spells it; KeyNotFoundError (404) when the key has no such version. */
function findVersion(key: KeyName, versions: readonly KeyVersionSummary[], version: string): string {
  const found = versions.find((v) => v.version.toLowerCase() === version.toLowerCase());
  if (!found) throw new KeyNotFoundError(`key ${versionedKeyUrl(key, version)}`);
  return found.version;
}

const describeVersions = (versions: readonly string[]) =>
  versions.length ? `version(s) ${versions.join(', ')}` : 'no version (none was enabled)';

/** The audit record and the outcome event of a revocation or a restore. */
async function recordChange(
  deps: Dependencies,
  invocation: Invocation,
  key: KeyName,
  change: {
    result: 'revoked' | 'restored';
    type: 'CmkRotator.KeyRevoked' | 'CmkRotator.KeyRestored';
    versions: string[];
    hubs: HubImpact[];
    message: string;
  },
): Promise<void> {
  const trigger = change.result === 'revoked' ? 'manual-revoke' : 'manual-restore';
  const record = auditRecord(
    deps,
    invocation,
    { trigger },
    { keyId: keyUrl(key), result: change.result, message: change.message },
  );
  await deps.audit.append([record]);
  await publish(deps, invocation, [
    {
      id: record.id,
      type: change.type,
      subject: keyUrl(key),
      data: {
        keyId: keyUrl(key),
        versions: change.versions,
        hubs: change.hubs.map((h) => ({ hubId: h.hubId, hubName: h.hubName, keyIdentifier: h.keyIdentifier })),
        correlationId: invocation.correlationId,
      },
    },
  ]);
}
