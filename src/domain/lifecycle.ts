// A key's life after rotation: which superseded versions may be retired (disabled), which hubs a disabled version or
// key would cut off, and what a revocation disables. Pure: the caller reads the vault and the hubs, these decide.
import { ValidationError } from './errors';
import { identifiersForKey, provisioningStateOf } from './hubs';
import { versionOf } from './keyId';
import type { KeyName } from './keyId';
import { compareVersions, newestFirst } from './keyPolicy';
import type { HubDocument, KeyVersionSummary } from './ports';

const DAY_MS = 86_400_000;

/** Why a version stays enabled. */
export type KeepReason =
  'already-disabled' | 'newest-usable' | 'referenced' | 'hub-updating' | 'no-newer-usable' | 'within-grace';

export type RetireDecision =
  | { version: KeyVersionSummary; decision: 'disable' }
  | { version: KeyVersionSummary; decision: 'keep'; reason: KeepReason; detail: string; hubIds?: string[] };

/** One hub's use of a key: where it points and whether its last update has settled. */
export interface HubKeyUse {
  hubId: string;
  hubName: string;
  /** The hub's identifiers for the key (versioned, or versionless for a hub that follows the current version). */
  keyIdentifiers: string[];
  provisioningState?: string;
  /** ARM's `properties.state` (`Active`, ...), as read. */
  state?: string;
}

/** The hubs that reference `key`, as read from ARM. */
export function hubsOfKey(hubs: readonly HubDocument[], key: KeyName): HubKeyUse[] {
  return hubs.flatMap((hub) => {
    const keyIdentifiers = identifiersForKey(hub.body, key);
    if (!keyIdentifiers.length) return [];
    const provisioningState = provisioningStateOf(hub.body);
    const properties = hub.body.properties as { state?: unknown } | undefined;
    return [
      {
        hubId: hub.id,
        hubName: hub.name,
        keyIdentifiers,
        ...(provisioningState ? { provisioningState } : {}),
        ...(typeof properties?.state === 'string' ? { state: properties.state } : {}),
      },
    ];
  });
}

/**
 * Whether the hub depends on `version`: it names it, or it names the key without a version (IoT Hub then uses the
 * key's current version, which Key Vault marks `latest`).
 */
export function usesVersion(hub: HubKeyUse, version: KeyVersionSummary): boolean {
  return hub.keyIdentifiers.some((id) => {
    const named = versionOf(id);
    return named ? named.toLowerCase() === version.version.toLowerCase() : version.latest === true;
  });
}

/** From when a version could protect a hub: its creation, or its not-before when that is later. */
function usableSince(v: KeyVersionSummary): number {
  return Math.max(v.createdOn.getTime(), v.notBefore?.getTime() ?? 0);
}

/**
 * Which versions may be disabled now. A version is disabled only if all hold: it is enabled; it is not the newest
 * usable version; no hub references it; no hub of the key has an update in flight (its previous version is not
 * visible while ARM runs the update, and the update unwraps with it); and a newer usable version has been usable
 * for at least `graceDays`. `usable` names the versions that pass every safety rule (see unusableReasons).
 */
export function retireDecisions(
  versions: readonly KeyVersionSummary[],
  usable: ReadonlySet<string>,
  hubs: readonly HubKeyUse[],
  graceDays: number,
  now: Date,
): RetireDecision[] {
  const ordered = newestFirst(versions);
  const isUsable = (v: KeyVersionSummary) => usable.has(v.version.toLowerCase());
  const newestUsable = ordered.find(isUsable);
  const updating = hubs.filter((h) => h.provisioningState !== undefined && h.provisioningState !== 'Succeeded');
  const graceMs = graceDays * DAY_MS;
  return ordered.map((version): RetireDecision => {
    const keep = (reason: KeepReason, detail: string, hubIds?: string[]): RetireDecision => ({
      version,
      decision: 'keep',
      reason,
      detail,
      ...(hubIds ? { hubIds } : {}),
    });
    if (!version.enabled) return keep('already-disabled', 'already disabled');
    if (version === newestUsable) return keep('newest-usable', 'the newest usable version');
    const referencing = hubs.filter((h) => usesVersion(h, version)).map((h) => h.hubId);
    if (referencing.length) {
      const n = referencing.length;
      return keep('referenced', `referenced by ${n} hub${n === 1 ? '' : 's'}`, referencing);
    }
    if (updating.length) {
      return keep(
        'hub-updating',
        `${updating.length} hub(s) of the key are being updated; their previous version is not known until they settle`,
        updating.map((h) => h.hubId),
      );
    }
    const newer = ordered.filter((v) => isUsable(v) && compareVersions(versions, v.version, version.version) === 1);
    if (!newer.length) return keep('no-newer-usable', 'no newer usable version exists');
    const since = Math.min(...newer.map(usableSince));
    if (now.getTime() - since < graceMs) {
      const until = new Date(since + graceMs).toISOString();
      return keep(
        'within-grace',
        `within the ${graceDays}-day grace period (a newer version is usable since ${new Date(since).toISOString()}; retirable from ${until})`,
      );
    }
    return { version, decision: 'disable' };
  });
}

/** A hub's exposure to disabling a version (or the whole key). */
export interface HubImpact {
  hubId: string;
  hubName: string;
  /** The identifier the hub uses for the key: the one that would fail, else its first. */
  keyIdentifier: string;
  wouldFail: boolean;
  provisioningState?: string;
  state?: string;
}

/**
 * What disabling `version` (or, without one, every version of the key) would do to the hubs of the key: those that
 * would lose access to their data, and those that would not (they use another version).
 */
export function impactOf(
  hubs: readonly HubKeyUse[],
  versions: readonly KeyVersionSummary[],
  version?: string,
): { affected: HubImpact[]; unaffected: HubImpact[] } {
  const target = version ? versions.find((v) => v.version.toLowerCase() === version.toLowerCase()) : undefined;
  const affected: HubImpact[] = [];
  const unaffected: HubImpact[] = [];
  for (const hub of hubs) {
    const failing = version
      ? hub.keyIdentifiers.find((id) => {
          const named = versionOf(id);
          return named ? named.toLowerCase() === version.toLowerCase() : target !== undefined && target.latest === true;
        })
      : hub.keyIdentifiers[0];
    const impact: HubImpact = {
      hubId: hub.hubId,
      hubName: hub.hubName,
      keyIdentifier: failing ?? hub.keyIdentifiers[0] ?? '',
      wouldFail: failing !== undefined,
      ...(hub.provisioningState ? { provisioningState: hub.provisioningState } : {}),
      ...(hub.state ? { state: hub.state } : {}),
    };
    (failing !== undefined ? affected : unaffected).push(impact);
  }
  return { affected, unaffected };
}

/** The versions a revocation disables: the named one, or every enabled version of the key. */
export function versionsToRevoke(versions: readonly KeyVersionSummary[], version?: string): KeyVersionSummary[] {
  const ordered = newestFirst(versions);
  const chosen = version ? ordered.filter((v) => v.version.toLowerCase() === version.toLowerCase()) : ordered;
  return chosen.filter((v) => v.enabled);
}

/** Why `confirm` does not confirm a change to `key` (undefined when it does): it must be the key's name. */
export function confirmationProblem(key: KeyName, confirm: string | undefined): string | undefined {
  if (confirm === key.name) return undefined;
  return confirm === undefined
    ? `is required for a real change: the key's name ("${key.name}")`
    : `must be the key's name ("${key.name}")`;
}

/**
 * A change that cuts hubs off needs the operator to type the key's name: anything else (absent, another key's name)
 * is refused before any change.
 */
export function assertConfirmed(key: KeyName, confirm: string | undefined): void {
  const problem = confirmationProblem(key, confirm);
  if (problem) throw new ValidationError([{ field: 'confirm', message: problem }]);
}
