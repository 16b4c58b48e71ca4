// Retiring superseded versions: disabling (never deleting) the versions no hub needs any more, on an operator's
// request (POST /api/keys/retire) or, with ROTATOR_RETIRE_AFTER_DAYS, by the reconciler. Every check is made against
// the vault and ARM as they are now, and repeated under the key's lease before anything is disabled.
import { keyLabel, keyUrl } from '../domain/keyId';
import type { KeyName } from '../domain/keyId';
import { hubsOfKey, retireDecisions } from '../domain/lifecycle';
import type { KeepReason, RetireDecision } from '../domain/lifecycle';
import { isLive, unusableReasons } from '../domain/keyPolicy';
import type { HubDocument, KeyVersionSummary, Trigger } from '../domain/ports';
import { assertAllowed, auditRecord, planAndApply, publish } from './context';
import type { Dependencies, Invocation } from './context';

export interface VersionDecision {
  id: string;
  version: string;
  enabled: boolean;
  createdOn: string;
  /** `disable`: a dry run would disable it; `disabled`: this run did; `keep`: it stays, for `reason`. */
  decision: 'disable' | 'disabled' | 'keep';
  reason?: KeepReason;
  detail?: string;
  /** The hubs that hold the version (reason `referenced`) or are being updated (reason `hub-updating`). */
  hubIds?: string[];
}

export interface RetireReport {
  keyId: string;
  trigger: Trigger;
  dryRun: boolean;
  graceDays: number;
  /** Every version of the key, newest first, with its decision. */
  versions: VersionDecision[];
  /** The versions disabled by this run (or, in a dry run, that it would disable). */
  retired: string[];
  correlationId: string;
}

export interface RetireOptions {
  dryRun: boolean;
  graceDays?: number;
  trigger?: Extract<Trigger, 'manual-retire' | 'reconcile'>;
  /** Hubs the caller has just read (the reconciler); otherwise they are listed now. */
  hubs?: readonly HubDocument[];
}

export async function retire(
  deps: Dependencies,
  key: KeyName,
  options: RetireOptions,
  invocation: Invocation,
): Promise<RetireReport> {
  assertAllowed(deps, key);
  const graceDays = options.graceDays ?? deps.settings.retireGraceDays;
  const trigger = options.trigger ?? 'manual-retire';
  return planAndApply(deps, key, options.dryRun, {
    plan: async () => {
      const versions = await deps.keyVault.listVersions(key);
      const hubs = hubsOfKey(options.hubs ?? (await deps.hubs.listAll()), key);
      const usable = await usableVersions(deps, key, versions);
      return retireDecisions(versions, usable, hubs, graceDays, deps.clock.now());
    },
    apply: async (decisions, lease) => {
      for (const d of decisions) {
        if (d.decision !== 'disable') continue;
        lease.assertHeld();
        await deps.keyVault.setEnabled(key, d.version.version, false);
        await recordRetired(deps, key, d.version, { trigger, graceDays }, invocation);
      }
    },
    answer: (decisions, applied): RetireReport => ({
      keyId: keyUrl(key),
      trigger,
      dryRun: options.dryRun,
      graceDays,
      versions: decisions.map((d) => decisionView(d, applied)),
      retired: decisions.filter((d) => d.decision === 'disable').map((d) => d.version.version),
      correlationId: invocation.correlationId,
    }),
  });
}

/** The live versions that pass every safety rule: only these count as "newest usable" and "newer usable". */
async function usableVersions(
  deps: Dependencies,
  key: KeyName,
  versions: readonly KeyVersionSummary[],
): Promise<Set<string>> {
  const now = deps.clock.now();
  const usable = new Set<string>();
  for (const v of versions.filter((x) => isLive(x, now))) {
    const details = await deps.keyVault.getVersion(key, v.version);
    if (unusableReasons(details, now).length === 0) usable.add(v.version.toLowerCase());
  }
  return usable;
}

/** A decision as answered: once applied, a `disable` is `disabled`. */
function decisionView(d: RetireDecision, applied: boolean): VersionDecision {
  const v = d.version;
  const base = { id: v.id, version: v.version, enabled: v.enabled, createdOn: v.createdOn.toISOString() };
  if (d.decision === 'disable') {
    return applied ? { ...base, enabled: false, decision: 'disabled' } : { ...base, decision: 'disable' };
  }
  return { ...base, decision: 'keep', reason: d.reason, detail: d.detail, ...(d.hubIds ? { hubIds: d.hubIds } : {}) };
}

async function recordRetired(
  deps: Dependencies,
  key: KeyName,
  version: KeyVersionSummary,
  context: { trigger: Trigger; graceDays: number },
  invocation: Invocation,
): Promise<void> {
  const message = `version ${version.version} disabled: superseded for at least ${context.graceDays} day(s) and referenced by no hub`;
  invocation.log.info('version.retired', { key: keyLabel(key), version: version.version });
  const record = auditRecord(
    deps,
    invocation,
    { trigger: context.trigger },
    { keyId: keyUrl(key), result: 'retired', fromVersion: version.version, message },
  );
  await deps.audit.append([record]);
  await publish(deps, invocation, [
    {
      id: record.id,
      type: 'CmkRotator.VersionRetired',
      subject: version.id,
      data: {
        keyId: keyUrl(key),
        version: version.version,
        trigger: context.trigger,
        graceDays: context.graceDays,
        correlationId: invocation.correlationId,
      },
    },
  ]);
}
