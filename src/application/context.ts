// What every use case shares: its dependencies, who asked, the report it answers with, and the bookkeeping (audit
// records, outcome events, failures) that every path writes the same way.
import { randomUUID } from 'node:crypto';
import {
  KeyUnusableError,
  RotatorError,
  UpstreamUnavailableError,
  VaultNotAllowedError,
  errorCode,
  isTransient,
  safeMessage,
} from '../domain/errors';
import { isFinalResult } from '../domain/hubStep';
import type { HubReport } from '../domain/hubStep';
import type { StepTiming } from '../domain/hubStep';
import { identifiersForKey } from '../domain/hubs';
import { keyUrl } from '../domain/keyId';
import type { KeyName } from '../domain/keyId';
import { isLive, newestFirst, unusableReasons } from '../domain/keyPolicy';
import type {
  AuditLog,
  AuditRecord,
  Clock,
  HeldLease,
  HubDocument,
  HubRepository,
  JobStore,
  KeyLock,
  KeyVault,
  KeyVersionDetails,
  KeyVersionSummary,
  Logger,
  Outcome,
  OutcomePublisher,
  RevocationLedger,
  StepQueue,
  Trigger,
} from '../domain/ports';

export interface RotationSettings extends StepTiming {
  /** Normalised vault URLs (`https://<host>`). */
  allowedVaults: readonly string[];
  defaultKeyValidityDays: number;
  /** How often one step re-reads and re-writes a hub after a 412 before it counts as a transient failure. */
  maxEtagAttempts: number;
  /** How long one step owns a hub; when its instance dies, the step's watchdog message takes over after this. */
  stepLeaseMs: number;
  /** The reconciler rotates a key whose newest live version expires within this many days. */
  nearExpiryDays: number;
  /** POST /api/keys/retire disables a version only once a newer usable one has been usable this long (days). */
  retireGraceDays: number;
  /** When set, the reconciler retires versions itself, with this grace period (days). */
  retireAfterDays?: number;
}

export interface Dependencies {
  keyVault: KeyVault;
  hubs: HubRepository;
  audit: AuditLog;
  outcomes: OutcomePublisher;
  jobs: JobStore;
  revocations: RevocationLedger;
  steps: StepQueue;
  lock: KeyLock;
  clock: Clock;
  settings: RotationSettings;
}

/** Who asked, for logs and audit records. */
export interface Invocation {
  correlationId: string;
  log: Logger;
}

export interface RotationReport {
  keyId: string;
  trigger: Trigger;
  dryRun: boolean;
  /** Why this was done, in words. */
  decision: string;
  /** The job moving the hubs (GET /api/jobs/{jobId}); absent in a dry run or when nothing was planned. */
  jobId?: string;
  /** The version created by this run. */
  createdVersion?: string;
  /** In a dry run of a rotation: the version that would be created. */
  plannedVersion?: { keyType: string; keySize: number; keyOps: string[]; expiresOn: string };
  /** The version hubs move to. */
  targetVersion?: string;
  hubs: HubReport[];
  status: 'succeeded' | 'in-progress' | 'partially-failed' | 'failed' | 'refused' | 'ignored' | 'planned';
  errorCode?: string;
  message?: string;
  correlationId: string;
}

/** What a run is doing, for its audit records and report. */
export interface RunContext {
  trigger: Trigger;
  dryRun: boolean;
  decision: string;
  eventId?: string;
  eventType?: string;
  reason?: string;
  created?: KeyVersionDetails;
  /** Operators and the reconciler also retry hubs that failed; events only finish what is open. */
  retryFailed?: boolean;
}

export function assertAllowed(deps: Dependencies, key: KeyName): void {
  if (!deps.settings.allowedVaults.includes(key.vaultUrl)) throw new VaultNotAllowedError(key.vaultUrl);
}

/** The newest version that passes every safety rule; throws KeyUnusableError when none does. */
export async function latestUsable(
  deps: Dependencies,
  key: KeyName,
  versions: readonly KeyVersionSummary[],
): Promise<KeyVersionDetails> {
  const now = deps.clock.now();
  const rejected: string[] = [];
  for (const candidate of newestFirst(versions).filter((v) => isLive(v, now))) {
    const details = await deps.keyVault.getVersion(key, candidate.version);
    const reasons = unusableReasons(details, now);
    if (reasons.length === 0) return details;
    rejected.push(`${candidate.version}: ${reasons.join(', ')}`);
  }
  const newest = newestFirst(versions)[0];
  throw new KeyUnusableError(
    newest ? newest.id : keyUrl(key),
    rejected.length ? rejected : ['no enabled, unexpired version exists'],
  );
}

/**
 * A change planned from what is read now. A dry run answers the plan and takes no lease (it writes nothing, not even
 * a lock row); a real run plans again under the key's lease and applies that plan, so what it changes is current.
 */
export async function planAndApply<P, R>(
  deps: Dependencies,
  key: KeyName,
  dryRun: boolean,
  steps: {
    plan: () => Promise<P>;
    apply: (plan: P, lease: HeldLease) => Promise<void>;
    answer: (plan: P, applied: boolean) => R;
  },
): Promise<R> {
  if (dryRun) return steps.answer(await steps.plan(), false);
  return deps.lock.runExclusive(key, async (lease) => {
    const plan = await steps.plan();
    await steps.apply(plan, lease);
    return steps.answer(plan, true);
  });
}

export async function hubsUsing(deps: Dependencies, key: KeyName): Promise<HubDocument[]> {
  return (await deps.hubs.listAll()).filter((hub) => identifiersForKey(hub.body, key).length > 0);
}

export function auditRecord(
  deps: Dependencies,
  invocation: Invocation,
  context: Pick<RunContext, 'trigger' | 'eventId' | 'eventType' | 'reason'>,
  fields: Pick<AuditRecord, 'keyId' | 'result'> & Partial<AuditRecord>,
): AuditRecord {
  return {
    id: randomUUID(),
    time: deps.clock.now(),
    trigger: context.trigger,
    correlationId: invocation.correlationId,
    ...(context.eventId ? { eventId: context.eventId } : {}),
    ...(context.eventType ? { eventType: context.eventType } : {}),
    ...(context.reason ? { reason: context.reason } : {}),
    ...fields,
  };
}

/** Outcome events are notifications: failing to send one is logged, it does not undo or fail the work. */
export async function publish(deps: Dependencies, invocation: Invocation, outcomes: Outcome[]): Promise<void> {
  if (!outcomes.length) return;
  try {
    await deps.outcomes.publish(outcomes);
  } catch (error) {
    invocation.log.error('outcomes.failed', {
      errorCode: errorCode(error),
      message: safeMessage(error),
      count: outcomes.length,
    });
  }
}

/** Records a failure of a whole run (audit, outcome, log) and returns the report that says so. */
export async function recordFailure(
  deps: Dependencies,
  error: unknown,
  invocation: Invocation,
  started: number,
  fields: Pick<AuditRecord, 'trigger' | 'keyId'> & Partial<AuditRecord>,
): Promise<RotationReport> {
  const code = errorCode(error);
  const message = safeMessage(error);
  const transient = isTransient(error);
  const refused = error instanceof RotatorError && (code === 'INVALID_INPUT' || code === 'VAULT_NOT_ALLOWED');
  const fieldsToLog = { key: fields.keyId, errorCode: code, message, transient };
  if (transient) invocation.log.warn('rotation.failed', fieldsToLog);
  else invocation.log.error('rotation.failed', fieldsToLog);
  const record = auditRecord(
    deps,
    invocation,
    { trigger: fields.trigger },
    {
      ...fields,
      result: refused ? 'refused' : transient ? 'retrying' : 'failed',
      errorCode: code,
      message,
      durationMs: Date.now() - started,
    },
  );
  try {
    await deps.audit.append([record]);
  } catch (auditError) {
    invocation.log.error('audit.failed', { errorCode: errorCode(auditError), message: safeMessage(auditError) });
    // A permanent failure must leave a trace: if it cannot be recorded, let the caller try again.
    if (!transient) throw new UpstreamUnavailableError('The audit log could not record a failure.', auditError);
  }
  if (!refused && !transient) {
    await publish(deps, invocation, [
      {
        type: 'CmkRotator.RotationFailed',
        subject: fields.keyId || 'unknown',
        data: { ...record, time: record.time.toISOString() },
      },
    ]);
  }
  return emptyReport(fields.keyId, fields.trigger, invocation, refused ? 'refused' : 'failed', message, code);
}

export function emptyReport(
  keyId: string,
  trigger: Trigger,
  invocation: Invocation,
  status: RotationReport['status'],
  message: string,
  code?: string,
): RotationReport {
  return {
    keyId,
    trigger,
    dryRun: false,
    decision: message,
    hubs: [],
    status,
    message,
    ...(code ? { errorCode: code } : {}),
    correlationId: invocation.correlationId,
  };
}

/** The status of a run from its hubs' results. */
export function statusOf(hubs: readonly HubReport[], dryRun: boolean): RotationReport['status'] {
  if (dryRun) return 'planned';
  const failed = hubs.filter((r) => r.result === 'failed').length;
  const open = hubs.some((r) => !isFinalResult(r.result));
  if (failed && failed === hubs.length) return 'failed';
  if (open) return 'in-progress';
  return failed ? 'partially-failed' : 'succeeded';
}
