// One Key Vault event from Event Grid: near-expiry and expiry rotate (once), a new version is propagated. Answered
// as soon as the move is planned. Throws only what is transient (Event Grid redelivers); the rest is recorded.
import { VaultNotAllowedError, isTransient } from '../domain/errors';
import { isIgnored, parseKeyVaultEvent } from '../domain/events';
import type { KeyVaultEvent } from '../domain/events';
import { keyLabel, keyUrl } from '../domain/keyId';
import { eventIsDue, newerLiveThan, unusableReasons } from '../domain/keyPolicy';
import type { KeyVersionDetails } from '../domain/ports';
import { assertAllowed, auditRecord, emptyReport, publish, recordFailure } from './context';
import type { Dependencies, Invocation, RotationReport } from './context';
import { propagate } from './propagate';
import { activeRevocation } from './revoke';
import { rotateUnlessNewer } from './rotate';

/** A foreign vault's events are refused one by one but audited at most this often per vault (per instance). */
const FOREIGN_VAULT_AUDIT_INTERVAL_MS = 10 * 60_000;
const foreignVaultsAudited = new WeakMap<Dependencies, Map<string, number>>();

export async function handleEvent(
  deps: Dependencies,
  rawEvent: unknown,
  invocation: Invocation,
): Promise<RotationReport> {
  const started = Date.now();
  let event: KeyVaultEvent | undefined;
  try {
    const parsed = parseKeyVaultEvent(rawEvent);
    if (isIgnored(parsed)) {
      invocation.log.info('event.ignored', { eventId: parsed.id, eventType: parsed.type, reason: parsed.ignored });
      return emptyReport('', 'event', invocation, 'ignored', parsed.ignored);
    }
    event = parsed;
    invocation.log.info('event.received', {
      eventId: event.id,
      eventType: event.type,
      key: keyLabel(event.key),
      version: event.version,
    });
    assertAllowed(deps, event.key);
    return await forEvent(deps, event, invocation);
  } catch (error) {
    if (error instanceof VaultNotAllowedError && event && !firstRefusalInAWhile(deps, event.key.vaultUrl)) {
      invocation.log.warn('event.refused', { eventId: event.id, key: keyLabel(event.key), errorCode: error.code });
      return emptyReport(keyUrl(event.key), 'event', invocation, 'refused', error.message, error.code);
    }
    const report = await recordFailure(deps, error, invocation, started, {
      trigger: 'event',
      keyId: event ? keyUrl(event.key) : '',
      ...(event ? { eventId: event.id, eventType: event.type, fromVersion: event.version } : {}),
    });
    if (isTransient(error)) throw error;
    return report;
  }
}

async function forEvent(deps: Dependencies, event: KeyVaultEvent, invocation: Invocation): Promise<RotationReport> {
  const context = { trigger: 'event' as const, dryRun: false, eventId: event.id, eventType: event.type };
  // The owner pulled the brake: nothing is created and no hub is moved for a revoked key until it is restored (a hub
  // on a disabled version cannot unwrap its data to move anyway); the reconciler catches up after the restore.
  const revoked = await activeRevocation(deps, event.key);
  if (revoked) {
    const message = `${event.type} for version ${event.version} ignored: the key was revoked at ${revoked.revokedAt.toISOString()} and is not rotated until it is restored`;
    invocation.log.warn('event.revoked-key', { eventId: event.id, key: keyLabel(event.key), version: event.version });
    return ignore(deps, event, context, message, invocation);
  }
  if (event.type === 'KeyNewVersionCreated') {
    await reportIfUnusable(deps, event, await deps.keyVault.getVersion(event.key, event.version), invocation);
    const versions = await deps.keyVault.listVersions(event.key);
    const decision = `version ${event.version} was created`;
    return propagate(deps, event.key, versions, { ...context, decision }, invocation);
  }
  // A repeated delivery (or one that arrives after autorotation) finds a newer version already: nothing to create,
  // so no lease and no checks, only the move.
  const versions = await deps.keyVault.listVersions(event.key);
  const newer = newerLiveThan(versions, event.version, deps.clock.now());
  if (newer) {
    const decision = `a newer version ${newer.version} already exists`;
    return propagate(deps, event.key, versions, { ...context, decision }, invocation);
  }
  // Key Vault's word is checked against Key Vault itself: a forged or stale event creates nothing.
  const named = await deps.keyVault.getVersion(event.key, event.version);
  const policy = await deps.keyVault.getRotationPolicy(event.key);
  const due = eventIsDue(event.type, named, policy?.notifyBeforeExpiry, deps.clock.now());
  if (!due.due) {
    const message = `${event.type} for version ${event.version} ignored: ${due.why}`;
    invocation.log.warn('event.not-due', {
      eventId: event.id,
      key: keyLabel(event.key),
      version: event.version,
      reason: due.why,
    });
    return ignore(deps, event, context, message, invocation);
  }
  const what = event.type === 'KeyExpired' ? 'expired' : 'is near expiry';
  return rotateUnlessNewer(
    deps,
    event.key,
    event.version,
    { ...context, decision: `version ${event.version} ${what}` },
    invocation,
  );
}

/** Records that the event was ignored, and why, and answers so. */
async function ignore(
  deps: Dependencies,
  event: KeyVaultEvent,
  context: { trigger: 'event'; eventId: string; eventType: string },
  message: string,
  invocation: Invocation,
): Promise<RotationReport> {
  await deps.audit.append([
    auditRecord(deps, invocation, context, {
      keyId: keyUrl(event.key),
      result: 'ignored',
      fromVersion: event.version,
      message,
    }),
  ]);
  return emptyReport(keyUrl(event.key), 'event', invocation, 'ignored', message);
}

/** Whether a refusal of this foreign vault's event should be audited now (at most once per interval). */
function firstRefusalInAWhile(deps: Dependencies, vaultUrl: string): boolean {
  let audited = foreignVaultsAudited.get(deps);
  if (!audited) foreignVaultsAudited.set(deps, (audited = new Map<string, number>()));
  const now = deps.clock.now().getTime();
  const last = audited.get(vaultUrl) ?? -Infinity;
  if (now - last < FOREIGN_VAULT_AUDIT_INTERVAL_MS) return false;
  audited.set(vaultUrl, now);
  return true;
}

/**
 * A new version hubs cannot use (disabled, outside its validity, without wrap/unwrap, too weak) is never picked up:
 * the hubs stay on their working version, and the operator is told, because the key's newest version will sit
 * unused until fixed.
 */
async function reportIfUnusable(
  deps: Dependencies,
  event: KeyVaultEvent,
  version: KeyVersionDetails,
  invocation: Invocation,
): Promise<void> {
  const reasons = unusableReasons(version, deps.clock.now());
  if (!reasons.length) return;
  const detail = `version ${version.version} cannot protect a hub (${reasons.join('; ')}); hubs stay on their current version until a usable one exists`;
  invocation.log.warn('version.unusable', { key: keyLabel(event.key), version: version.version, reason: detail });
  const context = { trigger: 'event' as const, eventId: event.id, eventType: event.type };
  await deps.audit.append([
    auditRecord(deps, invocation, context, {
      keyId: keyUrl(event.key),
      result: 'drift',
      toVersion: version.version,
      message: `version-unusable: ${detail}`,
    }),
  ]);
  await publish(deps, invocation, [
    {
      type: 'CmkRotator.VersionUnusable',
      subject: version.id,
      data: { keyId: keyUrl(event.key), version: version.version, reasons, correlationId: invocation.correlationId },
    },
  ]);
}
