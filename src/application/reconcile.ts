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
import { rotateUnlessNewer } from './rotate';

export type { DriftFinding } from '../domain/drift';

export interface ReconcileReport {
  correlationId: string;
  keysScanned: number;
  drift: DriftFinding[];
  rotations: RotationReport[];
  /** Jobs whose quiet steps were started again. */
  resumedJobs: number;
  failures: { keyId: string; errorCode: string; message: string }[];
}

export async function reconcile(deps: Dependencies, invocation: Invocation): Promise<ReconcileReport> {
  const report: ReconcileReport = {
    correlationId: invocation.correlationId,
    keysScanned: 0,
    drift: [],
    rotations: [],
    resumedJobs: 0,
    failures: [],
  };
  const allHubs = await deps.hubs.listAll();
  const keys = new Map<string, KeyName>();
  for (const hub of allHubs) {
    for (const id of keyIdentifiersOf(hub.body)) {
      const parsed = tryParseKeyId(id);
      if (typeof parsed === 'string' || !deps.settings.allowedVaults.includes(parsed.vaultUrl)) continue;
      keys.set(keyLabel(parsed), { vaultUrl: parsed.vaultUrl, name: parsed.name });
    }
  }
  report.keysScanned = keys.size;
  for (const key of keys.values()) {
    try {
      const rotation = await reconcileKey(deps, key, allHubs, report.drift, invocation);
      if (rotation) report.rotations.push(rotation);
    } catch (error) {
      report.failures.push({ keyId: keyUrl(key), errorCode: errorCode(error), message: safeMessage(error) });
      await recordFailure(deps, error, invocation, Date.now(), { trigger: 'reconcile', keyId: keyUrl(key) });
    }
  }
  for (const job of await deps.jobs.unfinished()) {
    if (!deps.settings.allowedVaults.includes(job.key.vaultUrl)) continue;
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
    failures: report.failures.length,
  });
  return report;
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
