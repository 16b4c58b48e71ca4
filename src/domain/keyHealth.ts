// How a key and its hubs stand, as the dashboard and GET /api/keys show them: each hub current, behind, on an
// unusable version or failed, and the key green, amber or red with the reasons.
import { versionOf } from './keyId';
import { isLive, notifyWindowOpens } from './keyPolicy';
import type { HubTask, KeyVersionSummary } from './ports';

/**
 * `unusable`: the hub references a version that cannot unwrap its data now (disabled, expired, not yet valid, gone);
 * `failed`: the last job gave up on the hub; `behind`: on an older usable version (or its move is under way).
 */
export type HubStanding = 'current' | 'behind' | 'unusable' | 'failed';

export const HUB_STANDINGS: readonly HubStanding[] = ['current', 'behind', 'unusable', 'failed'];

export function hubStanding(
  identifiers: readonly string[],
  target: Pick<KeyVersionSummary, 'id'> | undefined,
  versions: readonly KeyVersionSummary[],
  task: Pick<HubTask, 'state'> | undefined,
  now: Date,
): HubStanding {
  const live = (identifier: string) => {
    const version = versionOf(identifier)?.toLowerCase();
    // A versionless reference follows the key (not how IoT Hub CMK is set up, but not broken either).
    if (!version) return true;
    const found = versions.find((v) => v.version.toLowerCase() === version);
    return !!found && isLive(found, now);
  };
  if (!identifiers.every(live)) return 'unusable';
  if (target && identifiers.every((id) => id.toLowerCase() === target.id.toLowerCase())) return 'current';
  return task?.state === 'failed' ? 'failed' : 'behind';
}

export type HealthLevel = 'green' | 'amber' | 'red';

export interface KeyHealth {
  level: HealthLevel;
  /** In words, worst first; empty when green. */
  reasons: string[];
}

export interface KeyHealthInput {
  hubs: Record<HubStanding, number>;
  /** The newest usable version, undefined when the key has none. */
  current: Pick<KeyVersionSummary, 'expiresOn'> | undefined;
  /** The rotation policy's Notify (ISO 8601), undefined for Key Vault's default. */
  notifyBeforeExpiry: string | undefined;
  /** The key's revocation is not restored yet. */
  revoked?: boolean;
  now: Date;
}

/**
 * Red when data is at risk or a move gave up: a revoked key, hubs on unusable versions, failed hubs, no usable version. Amber when
 * something is due: hubs behind, or the current version inside its notify window. Green otherwise.
 */
export function keyHealth({ hubs, current, notifyBeforeExpiry, revoked, now }: KeyHealthInput): KeyHealth {
  const red: string[] = revoked ? ['the key is revoked: it is not rotated until it is restored'] : [];
  const amber: string[] = [];
  const plural = (n: number, what: string) => `${n} hub${n === 1 ? '' : 's'} ${what}`;
  if (hubs.unusable) red.push(plural(hubs.unusable, 'on a version that cannot be used'));
  if (hubs.failed) red.push(plural(hubs.failed, 'failed to move'));
  if (!current) red.push('no version is usable (all disabled, expired or not yet valid)');
  if (hubs.behind) amber.push(plural(hubs.behind, 'behind the current version'));
  const expiresOn = current?.expiresOn;
  if (expiresOn && notifyWindowOpens(expiresOn, notifyBeforeExpiry).getTime() <= now.getTime()) {
    amber.push(`the current version expires ${expiresOn.toISOString()}, inside its notify window`);
  }
  if (red.length) return { level: 'red', reasons: [...red, ...amber] };
  return amber.length ? { level: 'amber', reasons: amber } : { level: 'green', reasons: [] };
}
