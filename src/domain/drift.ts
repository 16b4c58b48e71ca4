// Drift: what the reconciler finds wrong with a key and the hubs that use it. Pure: the caller reads the vault and
// the hubs, these functions decide.
import { identifiersForKey } from './hubs';
import { keyUrl, versionOf } from './keyId';
import type { KeyName } from './keyId';
import { compareVersions, isLive, newestFirst } from './keyPolicy';
import type { HubDocument, KeyVersionSummary } from './ports';

export interface DriftFinding {
  keyId: string;
  hubId?: string;
  kind: 'hub-behind' | 'hub-on-unusable-version' | 'key-near-expiry' | 'no-usable-version' | 'version-unusable';
  detail: string;
}

const DAY_MS = 86_400_000;

/**
 * A key needs a new version when no version is live, or the newest live one expires within `nearExpiryDays`
 * (its KeyNearExpiry was missed). Returns the finding and the version to rotate from, or undefined.
 */
export function missedRotation(
  key: KeyName,
  versions: readonly KeyVersionSummary[],
  now: Date,
  nearExpiryDays: number,
): { finding: DriftFinding; fromVersion: string } | undefined {
  const ordered = newestFirst(versions);
  const newestLive = ordered.find((v) => isLive(v, now));
  const horizon = now.getTime() + nearExpiryDays * DAY_MS;
  if (newestLive && (!newestLive.expiresOn || newestLive.expiresOn.getTime() > horizon)) return undefined;
  const from = newestLive ?? ordered[0];
  if (!from) return undefined;
  return {
    fromVersion: from.version,
    finding: {
      keyId: keyUrl(key),
      kind: newestLive ? 'key-near-expiry' : 'no-usable-version',
      detail: newestLive
        ? `version ${newestLive.version} expires ${newestLive.expiresOn!.toISOString()} and nothing newer exists`
        : 'no enabled, unexpired version exists',
    },
  };
}

/**
 * Hubs that reference `key` at a version older than `target`: behind, or on a version that is missing, disabled or
 * out of its validity window. A hub on a newer version than the target is left alone (never downgraded).
 */
export function hubsBehind(
  key: KeyName,
  hubs: readonly HubDocument[],
  versions: readonly KeyVersionSummary[],
  target: KeyVersionSummary,
  now: Date,
): DriftFinding[] {
  const findings: DriftFinding[] = [];
  for (const hub of hubs) {
    for (const id of identifiersForKey(hub.body, key)) {
      const version = versionOf(id);
      if (!version || version.toLowerCase() === target.version.toLowerCase()) continue;
      if (compareVersions(versions, version, target.version) === 1) continue;
      const known = versions.find((v) => v.version.toLowerCase() === version.toLowerCase());
      const unusable = !known
        ? 'missing'
        : !isLive(known, now)
          ? known.enabled
            ? 'expired or not yet valid'
            : 'disabled'
          : undefined;
      findings.push({
        keyId: keyUrl(key),
        hubId: hub.id,
        kind: unusable ? 'hub-on-unusable-version' : 'hub-behind',
        detail: unusable
          ? `the hub references version ${version}, which is ${unusable}`
          : `the hub references version ${version}; the latest usable is ${target.version}`,
      });
    }
  }
  return findings;
}
