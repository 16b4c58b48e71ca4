// The reconciler (hourly timer, or POST /api/reconcile): every key the hubs use (in allowed vaults) is checked for a
// missed near-expiry (rotate) and for hubs not on the latest usable version (move); jobs whose steps went quiet get
// their steps again. Safe beside event handling: creation is under the key's lease, and a step runs once whichever
// of its messages comes first.
import { errorCode, safeMessage } from '../domain/errors';
import { hubsBehind, missedRotation } from '../domain/drift';
import type { DriftFinding } from '../domain/drift';
import { keyIdentifiersOf } from '../domain/hubs';
import { keyLabel, keyUrl, tryParseKeyId } from '../domain/keyId';
import type { KeyName } from '../domain/keyId';
import type { HubDocument } from '../domain/ports';
import { auditRecord, latestUsable, publish, recordFailure } from './context';
import type { Dependencies, Invocation, RotationReport } from './context';
import { propagate, startSteps } from './propagate';
import { retire } from './retire';
import { activeRevocation } from './revoke';
import { rotateUnlessNewer } from './rotate';

export type { DriftFinding } from '../domain/drift';

export interface ReconcileReport {
  correlationId: string;
  keysScanned: number;
  drift: DriftFinding[];
  rotations: RotationReport[];
  /** Jobs whose quiet steps were started again. */
  resumedJobs: number;
  /** Revoked keys, left alone until they are restored. */
  revokedKeys: string[];
  /** With ROTATOR_RETIRE_AFTER_DAYS: the versions the reconciler disabled, by key. */
  retired: { keyId: string; versions: string[] }[];
  failures: { keyId: string; errorCode: string; message: string }[];
}

export async function reconcile(deps: Dependencies, invocation: Invocation): Promise<ReconcileReport> {
  const report: ReconcileReport = {
    correlationId: invocation.correlationId,
    keysScanned: 0,
    drift: [],
    rotations: [],
    resumedJobs: 0,
    revokedKeys: [],
    retired: [],
    failures: [],
  };
  const allHubs = await deps.hubs.listAll();
  const keys = new Map<string, KeyName>();
  for (const hub of allHubs) {
    for (const id of keyIdentifiersOf(hub.body)) {
      const parsed = tryParseKeyId(id);
      // Stryker disable next-line ConditionalExpression,StringLiteral: an unparsable identifier (a string) has no vaultUrl, so the allow-list below skips it too
      if (typeof parsed === 'string') continue;
      if (!deps.settings.allowedVaults.includes(parsed.vaultUrl)) continue;
      keys.set(keyLabel(parsed), { vaultUrl: parsed.vaultUrl, name: parsed.name });
    }
  }
  report.keysScanned = keys.size;
  /** Keys with nothing to rotate or move: the ones whose superseded versions may be retired. */
  const settled: KeyName[] = [];
  for (const key of keys.values()) {
    try {
      // A revoked key is the owner's emergency brake: no rotation, no moves, until it is restored.
      if (await activeRevocation(deps, key)) {
        report.revokedKeys.push(keyUrl(key));
        continue;
      }
      const rotation = await reconcileKey(deps, key, allHubs, report.drift, invocation);
      if (rotation) report.rotations.push(rotation);
      else settled.push(key);
    } catch (error) {
      report.failures.push({ keyId: keyUrl(key), errorCode: errorCode(error), message: safeMessage(error) });
      await recordFailure(deps, error, invocation, Date.now(), { trigger: 'reconcile', keyId: keyUrl(key) });
    }
  }
  if (deps.settings.retireAfterDays !== undefined && settled.length) {
    await retireSettled(deps, settled, deps.settings.retireAfterDays, report, invocation);
  }
  for (const job of await deps.jobs.unfinished()) {
    if (!deps.settings.allowedVaults.includes(job.key.vaultUrl)) continue;
    // A revoked key's open job waits for the restore: its hubs cannot unwrap their data to move.
    if (report.revokedKeys.includes(keyUrl(job.key))) continue;
    try {
      await startSteps(deps, job, await deps.jobs.tasks(job), new Set(), true);
      report.resumedJobs++;
    } catch (error) {
      report.failures.push({ keyId: keyUrl(job.key), errorCode: errorCode(error), message: safeMessage(error) });
    }
  }
  if (report.drift.length) {
    const context = { trigger: 'reconcile' as const };
    await deps.audit.append(
      report.drift.map((d) =>
        auditRecord(deps, invocation, context, {
          keyId: d.keyId,
          result: 'drift',
          message: `${d.kind}: ${d.detail}`,
          ...(d.hubId ? { hubId: d.hubId } : {}),
        }),
      ),
    );
    await publish(
      deps,
      invocation,
      report.drift.map((d) => ({
        type: 'CmkRotator.DriftDetected',
        subject: d.hubId ?? d.keyId,
        data: { ...d, correlationId: invocation.correlationId },
      })),
    );
  }
  invocation.log.info('reconcile.done', {
    keysScanned: report.keysScanned,
    drift: report.drift.length,
    rotations: report.rotations.length,
    resumedJobs: report.resumedJobs,
    revokedKeys: report.revokedKeys.length,
    retired: report.retired.reduce((n, r) => n + r.versions.length, 0),
    failures: report.failures.length,
  });
  return report;
}

/**
 * Automatic retirement (ROTATOR_RETIRE_AFTER_DAYS) with the operator route's checks, against one fresh listing of
 * the hubs: the listing this run started with is older than the moves it may have started since.
 */
async function retireSettled(
  deps: Dependencies,
  keys: readonly KeyName[],
  graceDays: number,
  report: ReconcileReport,
  invocation: Invocation,
): Promise<void> {
  const hubs = await deps.hubs.listAll();
  for (const key of keys) {
    try {
      const retired = await retire(deps, key, { dryRun: false, graceDays, trigger: 'reconcile', hubs }, invocation);
      if (retired.retired.length) report.retired.push({ keyId: keyUrl(key), versions: retired.retired });
    } catch (error) {
      report.failures.push({ keyId: keyUrl(key), errorCode: errorCode(error), message: safeMessage(error) });
    }
  }
}

async function reconcileKey(
  deps: Dependencies,
  key: KeyName,
  allHubs: readonly HubDocument[],
  drift: DriftFinding[],
  invocation: Invocation,
): Promise<RotationReport | undefined> {
  const now = deps.clock.now();
  const versions = await deps.keyVault.listVersions(key);
  const context = { trigger: 'reconcile' as const, dryRun: false, retryFailed: true };
  const missed = missedRotation(key, versions, now, deps.settings.nearExpiryDays);
  if (missed) {
    drift.push(missed.finding);
    const decision = 'the reconciler found a missed near-expiry';
    return rotateUnlessNewer(deps, key, missed.fromVersion, { ...context, decision }, invocation);
  }
  const target = await latestUsable(deps, key, versions);
  const behind = hubsBehind(key, allHubs, versions, target, now);
  if (!behind.length) return undefined;
  drift.push(...behind);
  return propagate(deps, key, versions, { ...context, decision: 'the reconciler found hubs behind' }, invocation);
}
