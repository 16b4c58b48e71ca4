// A hub's move, one short step per queue message: read the hub and send the PUT (one step: If-Match needs the
// read's ETag), wait for ARM's long-running operation (a step per look, each message delayed by ARM's
// Retry-After), and verify the hub references the target. The ledger task is the truth; messages only say "take
// step N". Before a step runs it enqueues the next step's message, due when the step's lease ends, and takes the
// lease with an ETag condition; when the step is done it brings that message forward to when the next step is due
// (or removes it). So a duplicate message does nothing, and a dead instance's hub is taken over one lease later,
// not after the queue's 10-minute visibility.
import {
  EtagConflictError,
  HubKeyNotAppliedError,
  UpstreamRejectedError,
  UpstreamUnavailableError,
  errorCode,
  safeMessage,
} from '../domain/errors';
import { afterFailure, boundedWaitMs, decideHub, isSettled, stepDisposition } from '../domain/hubStep';
import type { StepResult } from '../domain/hubStep';
import {
  hubBodyForWrite,
  identifiersForKey,
  provisioningStateOf,
  versionsForKey,
  withKeyIdentifier,
} from '../domain/hubs';
import { jobIdOf } from '../domain/jobId';
import { keyLabel, keyUrl, versionOf } from '../domain/keyId';
import type { KeyName } from '../domain/keyId';
import type {
  AuditRecord,
  HubDocument,
  HubStepMessage,
  HubTask,
  KeyVersionSummary,
  RotationJob,
} from '../domain/ports';
import { publish } from './context';
import type { Dependencies, Invocation } from './context';

/** Codes of failed operations that say nothing about the hub itself (ARM's own trouble). */
const TRANSIENT_OPERATION_ERRORS =
  /^(InternalServerError|ServiceUnavailable|GatewayTimeout|RequestTimeout|TooManyRequests|Conflict)\b/i;

/** How long the key's version list is reused between steps of one instance (a hub on an unknown version refreshes it). */
const VERSIONS_TTL_MS = 30_000;

/** Jobs whose rows this instance keeps (a job row never changes once its tasks exist). */
const JOB_CACHE_SIZE = 200;

export class HubSteps {
  private readonly versionCache = new Map<string, { at: number; versions: Promise<KeyVersionSummary[]> }>();
  private readonly jobCache = new Map<string, RotationJob>();

  constructor(private readonly deps: Dependencies) {}

  /** Takes the step a message asks for, if it is still due. Throws only when the ledger or queue cannot be used. */
  async advance(message: HubStepMessage, invocation: Invocation): Promise<void> {
    const { jobs, clock, steps, settings } = this.deps;
    const job = await this.job(message);
    const task = job && (await jobs.task(job, message.hubId));
    const fields = {
      key: keyLabel(message.key),
      version: message.targetVersion,
      hub: message.hubId,
      step: message.step,
    };
    if (!job || !task) {
      invocation.log.warn('step.orphaned', { ...fields, reason: 'no such job or task in the ledger' });
      return;
    }
    const disposition = stepDisposition(task, message.step, clock.now());
    if (disposition.kind === 'done') return invocation.log.info('step.skipped', { ...fields, reason: disposition.why });
    if (disposition.kind === 'record') return this.record(job, task, invocation);
    if (disposition.kind === 'later') {
      await steps.send([message], disposition.delayMs);
      return;
    }

    const next = { ...message, step: task.step + 1 };
    const [watchdog] = await steps.send([next], settings.stepLeaseMs);
    const claimed = await jobs.update(job, {
      ...task,
      step: next.step,
      leaseUntil: new Date(clock.now().getTime() + settings.stepLeaseMs),
    });
    if (!claimed) return invocation.log.info('step.skipped', { ...fields, reason: 'another instance took the step' });

    let result: StepResult;
    try {
      result =
        claimed.state === 'pending' ? await this.startUpdate(job, claimed) : await this.awaitUpdate(job, claimed);
    } catch (error) {
      result = afterFailure(claimed, error, clock.now(), settings);
    }
    // What an earlier step waited for or failed with does not outlive this one (a hub that moved after a transient
    // failure is reported moved, without the old error).
    const {
      leaseUntil: _released,
      notBefore: _waited,
      waiting: _was,
      errorCode: _previousCode,
      reason: _previousReason,
      ...rest
    } = claimed;
    const finished = ['moved', 'already-current', 'skipped', 'failed'].includes(result.changes.state);
    const saved = await jobs.update(job, {
      ...rest,
      ...result.changes,
      ...(finished ? { finishedAt: clock.now(), recorded: false } : {}),
    });
    if (!saved)
      return invocation.log.warn('step.lost', { ...fields, reason: 'the lease ran out and another step took over' });
    if (finished) {
      await this.record(job, saved, invocation);
      if (watchdog) await steps.cancel(watchdog);
      return;
    }
    invocation.log.info('step.taken', {
      ...fields,
      state: saved.state,
      waiting: saved.waiting ?? 'queued',
      nextInMs: result.delayMs,
    });
    const rescheduled = watchdog && (await steps.reschedule(watchdog, next, result.delayMs));
    if (!rescheduled) await steps.send([next], result.delayMs);
  }

  /**
   * A message that kept failing (the host moved it to the poison queue): the hub is failed and reported, unless its
   * task moved on meanwhile.
   */
  async failPoisoned(message: HubStepMessage, invocation: Invocation): Promise<void> {
    const job = await this.deps.jobs.find(message.key, message.targetVersion);
    const task = job && (await this.deps.jobs.task(job, message.hubId));
    if (
      !job ||
      !task ||
      task.step !== message.step ||
      ['moved', 'already-current', 'skipped', 'failed'].includes(task.state)
    ) {
      invocation.log.info('step.poison-ignored', {
        key: keyLabel(message.key),
        hub: message.hubId,
        step: message.step,
      });
      return;
    }
    const failed = await this.deps.jobs.update(job, {
      ...task,
      step: task.step + 1,
      state: 'failed',
      errorCode: task.errorCode ?? 'INTERNAL',
      reason: `its step kept failing and the host moved it to the poison queue${task.reason ? ` (last: ${task.reason})` : ''}`,
      finishedAt: this.deps.clock.now(),
      recorded: false,
    });
    if (failed) await this.record(job, failed, invocation);
  }

  private async job(message: HubStepMessage): Promise<RotationJob | undefined> {
    const id = jobIdOf(message.key, message.targetVersion);
    const cached = this.jobCache.get(id);
    if (cached) return cached;
    const job = await this.deps.jobs.find(message.key, message.targetVersion);
    if (job) {
      if (this.jobCache.size >= JOB_CACHE_SIZE) this.jobCache.delete(this.jobCache.keys().next().value!);
      this.jobCache.set(id, job);
    }
    return job;
  }

  /** Reads the hub, decides, and sends the PUT when the hub must move. */
  private async startUpdate(job: RotationJob, task: HubTask): Promise<StepResult> {
    const { hubs, settings, clock } = this.deps;
    for (let attempt = 1; ; attempt++) {
      const hub = await hubs.get(task.hubId);
      const ids = identifiersForKey(hub.body, job.key);
      if (!isSettled(provisioningStateOf(hub.body))) {
        // Our own PUT whose acceptance the ledger missed (the instance died right after it): wait for it.
        if (ids.length && ids.every((id) => id.toLowerCase() === job.targetId.toLowerCase())) {
          return this.waiting(clock.now(), undefined, {});
        }
        throw new UpstreamUnavailableError(`Hub ${hub.id} is being updated by another operation.`);
      }
      const versions = await this.versions(job.key, versionsForKey(hub.body, job.key));
      const decision = decideHub(versionsForKey(hub.body, job.key), job.targetVersion, versions);
      if (decision.result !== 'move') {
        return {
          changes: { state: decision.result, ...(decision.reason ? { reason: decision.reason } : {}) },
          delayMs: 0,
        };
      }
      try {
        const body = hubBodyForWrite(withKeyIdentifier(hub.body, job.key, job.targetId));
        const started = await hubs.beginReplace(hub, body);
        return this.waiting(clock.now(), started.retryAfterMs, {
          updateStartedAt: clock.now(),
          ...(started.operationUrl ? { operationUrl: started.operationUrl } : {}),
        });
      } catch (error) {
        if (error instanceof EtagConflictError && attempt < settings.maxEtagAttempts) continue;
        throw error;
      }
    }
  }

  /** One look at the running update; once it ended, verifies the hub. */
  private async awaitUpdate(job: RotationJob, task: HubTask): Promise<StepResult> {
    const { hubs, clock } = this.deps;
    let hub: HubDocument | undefined;
    if (task.operationUrl) {
      const operation = await hubs.operationState(task.operationUrl);
      if (operation.status === 'running') return this.waiting(clock.now(), operation.retryAfterMs, {});
      if (operation.status === 'failed') {
        // The hub rolled back. A failure ARM reports as internal or temporary is worth a new read and PUT (after a
        // backoff, counted); any other (e.g. the hub cannot use the key) is final.
        const text = `ARM reported the update of hub ${task.hubId} as failed${operation.error ? `: ${operation.error}` : ''}.`;
        const error = TRANSIENT_OPERATION_ERRORS.test(operation.error ?? '')
          ? new UpstreamUnavailableError(text)
          : new UpstreamRejectedError('HUB_UPDATE_FAILED', text);
        const retry = afterFailure({ ...task, state: 'pending' }, error, clock.now(), this.deps.settings);
        return { ...retry, changes: { ...retry.changes, operationUrl: undefined, updateStartedAt: undefined } };
      }
    } else {
      hub = await hubs.get(task.hubId);
      if (!isSettled(provisioningStateOf(hub.body))) return this.waiting(clock.now(), undefined, {});
    }
    hub ??= await hubs.get(task.hubId);
    const now = identifiersForKey(hub.body, job.key);
    if (!isSettled(provisioningStateOf(hub.body))) return this.waiting(clock.now(), undefined, {});
    if (!now.length || !now.every((id) => id.toLowerCase() === job.targetId.toLowerCase())) {
      if (!task.operationUrl) {
        // Our PUT whose acceptance the ledger missed was rolled back: read and write again (counted, backed off).
        const error = new UpstreamUnavailableError(`The update of hub ${hub.id} ended without the new key.`);
        const retry = afterFailure({ ...task, state: 'pending' }, error, clock.now(), this.deps.settings);
        return { ...retry, changes: { ...retry.changes, updateStartedAt: undefined } };
      }
      const error = new HubKeyNotAppliedError(hub.id, job.targetId, now[0]);
      return { changes: { state: 'failed', errorCode: error.code, reason: error.message }, delayMs: 0 };
    }
    const durationMs = task.updateStartedAt ? clock.now().getTime() - task.updateStartedAt.getTime() : undefined;
    return { changes: { state: 'moved', ...(durationMs !== undefined ? { durationMs } : {}) }, delayMs: 0 };
  }

  private waiting(now: Date, retryAfterMs: number | undefined, changes: Partial<HubTask>): StepResult {
    const delayMs = boundedWaitMs(retryAfterMs, this.deps.settings);
    return {
      changes: { ...changes, state: 'updating', waiting: 'operation', notBefore: new Date(now.getTime() + delayMs) },
      delayMs,
    };
  }

  /** The key's versions, fresh enough to order the hub's versions against the target (never downgrade a hub). */
  private async versions(key: KeyName, hubVersions: (string | undefined)[]): Promise<KeyVersionSummary[]> {
    const label = keyLabel(key);
    const now = this.deps.clock.now().getTime();
    let cached = this.versionCache.get(label);
    if (!cached || now - cached.at > VERSIONS_TTL_MS) {
      cached = { at: now, versions: this.deps.keyVault.listVersions(key) };
      this.versionCache.set(label, cached);
      cached.versions.catch(() => this.versionCache.delete(label));
    }
    const versions = await cached.versions;
    const known = (v: string | undefined) => !v || versions.some((x) => x.version.toLowerCase() === v.toLowerCase());
    if (hubVersions.every(known)) return versions;
    this.versionCache.delete(label);
    return this.versions(key, []);
  }

  /**
   * The final state's audit record and outcome, then the ledger's note that they are out. Both are idempotent (the
   * record's id and time come from the task), so a crash in between only repeats them.
   */
  private async record(job: RotationJob, task: HubTask, invocation: Invocation): Promise<void> {
    const { audit, jobs, clock } = this.deps;
    const finishedAt = task.finishedAt ?? clock.now();
    const fields = {
      key: keyLabel(job.key),
      hub: task.hubId,
      from: task.from.join(','),
      to: job.targetId,
      jobId: jobIdOf(job.key, job.targetVersion),
      ...(task.reason ? { reason: task.reason } : {}),
      ...(task.errorCode ? { errorCode: task.errorCode } : {}),
      ...(task.durationMs !== undefined ? { durationMs: task.durationMs } : {}),
    };
    if (task.state === 'failed') invocation.log.error(`hub.${task.state}`, fields);
    else invocation.log.info(`hub.${task.state}`, fields);
    const record: AuditRecord = {
      id: `${jobIdOf(job.key, job.targetVersion)}|${task.hubId.toLowerCase().replace(/[/\\#?]/g, '|')}`,
      time: finishedAt,
      keyId: keyUrl(job.key),
      trigger: job.trigger,
      correlationId: invocation.correlationId,
      hubId: task.hubId,
      result: task.state as AuditRecord['result'],
      fromVersion: task.from.map((id) => versionOf(id) ?? '').join(','),
      toVersion: job.targetVersion,
      ...(job.eventId ? { eventId: job.eventId } : {}),
      ...(task.reason ? { message: task.reason } : {}),
      ...(task.errorCode ? { errorCode: task.errorCode as AuditRecord['errorCode'] } : {}),
      ...(task.durationMs !== undefined ? { durationMs: task.durationMs } : {}),
    };
    await audit.append([record]);
    if (task.state === 'moved' || task.state === 'failed') {
      await publish(this.deps, invocation, [
        {
          id: record.id,
          type: task.state === 'moved' ? 'CmkRotator.HubKeyUpdated' : 'CmkRotator.HubKeyUpdateFailed',
          subject: task.hubId,
          data: {
            hubId: task.hubId,
            hubName: task.hubName,
            keyId: keyUrl(job.key),
            from: task.from,
            to: job.targetId,
            result: task.state,
            jobId: jobIdOf(job.key, job.targetVersion),
            attempts: task.attempts,
            ...(task.reason ? { reason: task.reason } : {}),
            ...(task.errorCode ? { errorCode: task.errorCode } : {}),
            ...(task.durationMs !== undefined ? { durationMs: task.durationMs } : {}),
            correlationId: invocation.correlationId,
          },
        },
      ]);
    }
    await jobs.update(job, { ...task, recorded: true }).catch((error: unknown) =>
      // The record is out; failing to note it only means it is repeated (idempotently) by the watchdog.
      invocation.log.warn('step.unnoted', {
        hub: task.hubId,
        errorCode: errorCode(error),
        message: safeMessage(error),
      }),
    );
  }
}
