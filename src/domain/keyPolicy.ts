// Which key versions may protect a hub, which one is current, and what a new version looks like.
import type { KeyVersionDetails, KeyVersionSummary, NewKeyVersionSpec } from './ports';

const MIN_RSA_BITS = 2048;
const REQUIRED_OPS = ['wrapKey', 'unwrapKey'];
export const ROTATED_FROM_TAG = 'cmk-rotator-rotated-from';
/** The operator's request id on the version it created, so a retried request finds it instead of creating another. */
export const REQUEST_TAG = 'cmk-rotator-request-id';

/** Within validity and enabled: the checks that need only a version's properties. */
export function isLive(v: KeyVersionSummary, now: Date): boolean {
  return (
    v.enabled &&
    (!v.expiresOn || v.expiresOn.getTime() > now.getTime()) &&
    (!v.notBefore || v.notBefore.getTime() <= now.getTime())
  );
}

/** Every reason this version must not become a hub's key; empty when it may. */
export function unusableReasons(v: KeyVersionDetails, now: Date): string[] {
  const reasons: string[] = [];
  if (!v.enabled) reasons.push('it is disabled');
  if (v.expiresOn && v.expiresOn.getTime() <= now.getTime()) reasons.push(`it expired at ${v.expiresOn.toISOString()}`);
  if (v.notBefore && v.notBefore.getTime() > now.getTime())
    reasons.push(`it is not valid before ${v.notBefore.toISOString()}`);
  for (const op of REQUIRED_OPS) if (!v.keyOps.includes(op)) reasons.push(`its key_ops do not allow ${op}`);
  if (v.keyType !== 'RSA' && v.keyType !== 'RSA-HSM') reasons.push(`its key type ${v.keyType} is not RSA`);
  else if ((v.keySize ?? 0) < MIN_RSA_BITS)
    reasons.push(`its RSA size ${v.keySize ?? 'unknown'} is below ${MIN_RSA_BITS} bits`);
  return reasons;
}

/**
 * Newest first. Versions are random strings: creation time orders them, and within one second (Key Vault's
 * resolution) the vault's current version is the newest.
 */
export function newestFirst<T extends KeyVersionSummary>(versions: readonly T[]): T[] {
  return [...versions].sort(
    (a, b) =>
      b.createdOn.getTime() - a.createdOn.getTime() ||
      Number(b.latest ?? false) - Number(a.latest ?? false) ||
      b.version.localeCompare(a.version),
  );
}

/** -1, 0, 1 as `a` is older than, the same as, or newer than `b`; undefined when either is unknown. */
export function compareVersions(versions: readonly KeyVersionSummary[], a: string, b: string): number | undefined {
  const find = (v: string) => versions.find((x) => x.version.toLowerCase() === v.toLowerCase());
  const va = find(a);
  const vb = find(b);
  if (!va || !vb) return undefined;
  if (va === vb) return 0;
  return newestFirst([va, vb])[0] === va ? 1 : -1;
}

const DAY_MS = 86_400_000;
/** Key Vault raises KeyNearExpiry this long before expiry when the rotation policy has no Notify action. */
const DEFAULT_NOTIFY_BEFORE = 'P30D';
/** Slack for clocks and for Key Vault's own schedule (it checks expiries periodically, not to the second). */
const EVENT_SLACK_MS = DAY_MS;

/**
 * Whether Key Vault could truly have raised this event now: a KeyExpired for a version that has expired, a
 * KeyNearExpiry for a version inside its notify window. A forged or stale event must not create a version.
 */
export function eventIsDue(
  type: 'KeyNearExpiry' | 'KeyExpired',
  version: Pick<KeyVersionSummary, 'expiresOn'>,
  notifyBeforeExpiry: string | undefined,
  now: Date,
): { due: true } | { due: false; why: string } {
  const expiresOn = version.expiresOn;
  if (!expiresOn) return { due: false, why: 'the version has no expiry, so Key Vault raises no expiry events for it' };
  if (type === 'KeyExpired') {
    return expiresOn.getTime() <= now.getTime() + EVENT_SLACK_MS
      ? { due: true }
      : { due: false, why: `the version expires ${expiresOn.toISOString()}, not yet` };
  }
  const notify = notifyBeforeExpiry ?? DEFAULT_NOTIFY_BEFORE;
  const opens = notifyWindowOpens(expiresOn, notifyBeforeExpiry);
  return opens.getTime() <= now.getTime() + EVENT_SLACK_MS
    ? { due: true }
    : {
        due: false,
        why: `the version expires ${expiresOn.toISOString()} and its notify window (${notify}) opens ${opens.toISOString()}`,
      };
}

/** When Key Vault raises KeyNearExpiry for a version expiring at `expiresOn` (its policy's Notify, else 30 days). */
export function notifyWindowOpens(expiresOn: Date, notifyBeforeExpiry: string | undefined): Date {
  return (
    subtractIsoDuration(expiresOn, notifyBeforeExpiry ?? DEFAULT_NOTIFY_BEFORE) ??
    new Date(expiresOn.getTime() - 30 * DAY_MS)
  );
}

/** `end` minus an ISO 8601 duration: the start that the duration after it would reach `end` (approximately, by days). */
function subtractIsoDuration(end: Date, duration: string): Date | undefined {
  const span = addIsoDuration(end, duration);
  return span ? new Date(end.getTime() - (span.getTime() - end.getTime())) : undefined;
}

/** A live version newer than `version`, if any (then nothing needs to be created for it). */
export function newerLiveThan(
  versions: readonly KeyVersionSummary[],
  version: string,
  now: Date,
): KeyVersionSummary | undefined {
  return versions.find((v) => isLive(v, now) && compareVersions(versions, v.version, version) === 1);
}

const DURATION = /^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$/;

/** Adds an ISO 8601 duration (`P90D`, `P1Y6M`, `PT12H`) to a date; undefined when the text is not one. */
export function addIsoDuration(start: Date, duration: string): Date | undefined {
  const m = DURATION.exec(duration.trim().toUpperCase());
  if (!m || duration.trim().toUpperCase() === 'P' || duration.trim().toUpperCase().endsWith('T')) return undefined;
  const n = (i: number) => Number(m[i] ?? 0);
  const result = new Date(start.getTime());
  // Years and months first, clamping the day to the target month (Jan 31 + P1M = Feb 28/29), as XSD and .NET do.
  const year = result.getUTCFullYear() + n(1);
  const month = result.getUTCMonth() + n(2);
  const daysInTargetMonth = new Date(Date.UTC(year, month + 1, 0)).getUTCDate();
  result.setUTCFullYear(year, month, Math.min(result.getUTCDate(), daysInTargetMonth));
  result.setUTCDate(result.getUTCDate() + 7 * n(3) + n(4));
  result.setTime(result.getTime() + ((n(5) * 60 + n(6)) * 60 + n(7)) * 1000);
  return result.getTime() > start.getTime() ? result : undefined;
}

/**
 * The version that replaces `current`: same type, at least its size (and never below 2048), wrap/unwrap allowed,
 * and an expiry (from the rotation policy, else the default validity) so the next rotation is triggered in turn.
 */
export function newVersionSpec(
  current: KeyVersionDetails,
  policyExpiry: string | undefined,
  defaultValidityDays: number,
  now: Date,
  requestId?: string,
): NewKeyVersionSpec {
  const { [REQUEST_TAG]: _previousRequest, ...tags } = current.tags;
  const expiresOn =
    (policyExpiry && addIsoDuration(now, policyExpiry)) || new Date(now.getTime() + defaultValidityDays * 86_400_000);
  return {
    keyType: current.keyType === 'RSA-HSM' ? 'RSA-HSM' : 'RSA',
    keySize: Math.max(current.keySize ?? MIN_RSA_BITS, MIN_RSA_BITS),
    keyOps: [...new Set([...current.keyOps, ...REQUIRED_OPS])],
    expiresOn,
    tags: { ...tags, [ROTATED_FROM_TAG]: current.version, ...(requestId ? { [REQUEST_TAG]: requestId } : {}) },
  };
}
