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
import {
  DelayGroups,
  afterFailure,
  boundedWaitMs,
  decideHub,
  isFinal,
  isSettled,
  stepDisposition,
} from '../domain/hubStep';
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
import type { AuditRecord, HubStepMessage, HubTask, KeyVersionSummary, RotationJob } from '../domain/ports';
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

  /**
   * Takes the steps a message asks for, for each hub whose step is still due. Throws only when the ledger or the
   * queue cannot be used (the host then retries the message, and after maxDequeueCount it goes to the poison queue).
   */
  async advance(message: HubStepMessage, invocation: Invocation): Promise<void> {
    const { jobs, clock, steps, settings } = this.deps;
    const job = await this.job(message);
    const fields = { key: keyLabel(message.key), version: message.targetVersion };
    if (!job) return invocation.log.warn('step.orphaned', { ...fields, reason: 'no such job in the ledger' });
    const tasks = new Map(
      (
        await jobs.tasksOf(
          job,
          message.hubs.map((h) => h.hubId),
        )
      ).map((t) => [t.hubId, t]),
    );
    const now = clock.now();
    const due: HubTask[] = [];
    const later = new DelayGroups();
    const unrecorded: HubTask[] = [];
    for (const { hubId, step } of message.hubs) {
      const task = tasks.get(hubId);
      if (!task) {
        invocation.log.warn('step.orphaned', { ...fields, hub: hubId, reason: 'no such task in the ledger' });
        continue;
      }
      const disposition = stepDisposition(task, step, now);
      if (disposition.kind === 'run') due.push(task);
      else if (disposition.kind === 'record') unrecorded.push(task);
      else if (disposition.kind === 'later') later.add(disposition.delayMs, { hubId, step });
      else invocation.log.info('step.skipped', { ...fields, hub: hubId, step, reason: disposition.why });
    }
    await Promise.all(unrecorded.map((task) => this.record(job, task, invocation)));
    await Promise.all(later.messages(message).map(({ message: m, delayMs }) => steps.send([m], delayMs)));
    if (!due.length) return;

    // The next step of every due hub is queued before any is taken: if this instance dies, it is the watchdog.
    const watchdogMessage = { ...message, hubs: due.map((t) => ({ hubId: t.hubId, step: t.step + 1 })) };
    // The lease ends no earlier than the watchdog is due: a watchdog seen while the lease still runs is dropped.
    const leaseUntil = new Date(clock.now().getTime() + settings.stepLeaseMs);
    const [watchdog] = await steps.send([watchdogMessage], settings.stepLeaseMs);
    const claimed = await Promise.all(
      due.map((task) => jobs.update(job, { ...task, step: task.step + 1, leaseUntil })),
    );
    const next = new DelayGroups();
    await Promise.all(
      claimed.map(async (task, i) => {
        if (!task) {
          const hub = due[i]!.hubId;
          return invocation.log.info('step.skipped', { ...fields, hub, reason: 'another instance took the step' });
        }
        const taken = await this.take(job, task, invocation);
        if (taken) next.add(taken.delayMs, { hubId: task.hubId, step: taken.task.step });
      }),
    );
    // The other groups get their own messages first; only then does the watchdog become the largest group's (so a
    // failure in between leaves every hub a message: the watchdog still names them all).
    const [first, ...rest] = next.messages(message);
    await Promise.all(rest.map(({ message: m, delayMs }) => steps.send([m], delayMs)));
    if (!watchdog) {
      if (first) await steps.send([first.message], first.delayMs);
    } else if (!first) {
      await steps.cancel(watchdog);
    } else if (!(await steps.reschedule(watchdog, first.message, first.delayMs))) {
      await steps.send([first.message], first.delayMs);
    }
  }

  /**
   * One claimed hub's step: its work, then the task's new state (unless the lease ran out and another step took
   * over). Resolves with the saved task and when its next step is due, or undefined when it has none.
   */
  private async take(
    job: RotationJob,
    claimed: HubTask,
    invocation: Invocation,
  ): Promise<{ task: HubTask; delayMs: number } | undefined> {
    const { jobs, clock, settings } = this.deps;
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
    const finished = isFinal(result.changes);
    const saved = await jobs.update(job, {
      ...rest,
      ...result.changes,
      ...(finished ? { finishedAt: clock.now(), recorded: false } : {}),
    });
    const fields = { key: keyLabel(job.key), version: job.targetVersion, hub: claimed.hubId, step: claimed.step };
    if (!saved) {
      invocation.log.warn('step.lost', { ...fields, reason: 'the lease ran out and another step took over' });
      return undefined;
    }
    if (finished) {
      await this.record(job, saved, invocation);
      return undefined;
    }
    invocation.log.info('step.taken', {
      ...fields,
      state: saved.state,
      // Stryker disable next-line StringLiteral: every unfinished step result says what it waits for (unreachable)
      waiting: saved.waiting ?? 'queued',
      nextInMs: result.delayMs,
    });
    return { task: saved, delayMs: result.delayMs };
  }

  /**
   * A message that kept failing (the host moved it to the poison queue): its hubs are failed and reported, unless
   * their tasks moved on meanwhile.
   */
  async failPoisoned(message: HubStepMessage, invocation: Invocation): Promise<void> {
    const job = await this.job(message);
    const tasks = job
      ? await this.deps.jobs.tasksOf(
          job,
          message.hubs.map((h) => h.hubId),
        )
      : // Stryker disable next-line ArrayDeclaration: without a job every hub is ignored before its task is read
        [];
    for (const { hubId, step } of message.hubs) {
      const task = tasks.find((t) => t.hubId === hubId);
      if (!job || !task || task.step !== step || isFinal(task)) {
        invocation.log.info('step.poison-ignored', { key: keyLabel(message.key), hub: hubId, step });
        continue;
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
    if (task.operationUrl) {
      const operation = await hubs.operationState(task.operationUrl);
      if (operation.status === 'running') return this.waiting(clock.now(), operation.retryAfterMs, {});
      if (operation.status === 'failed') {
        // The hub rolled back. A failure ARM reports as internal or temporary is worth a new read and PUT (after a
        // backoff, counted); any other (e.g. the hub cannot use the key) is final.
        const text = `ARM reported the update of hub ${task.hubId} as failed${operation.error ? `: ${operation.error.replace(/\.+$/, '')}` : ''}.`;
        // Stryker disable next-line StringLiteral: no transient code matches any fallback text for a missing error
        const error = TRANSIENT_OPERATION_ERRORS.test(operation.error ?? '')
          ? new UpstreamUnavailableError(text)
          : new UpstreamRejectedError('HUB_UPDATE_FAILED', text);
        const retry = afterFailure({ ...task, state: 'pending' }, error, clock.now(), this.deps.settings);
        return { ...retry, changes: { ...retry.changes, operationUrl: undefined, updateStartedAt: undefined } };
      }
    }
    const hub = await hubs.get(task.hubId);
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
    const duration = task.updateStartedAt ? { durationMs: clock.now().getTime() - task.updateStartedAt.getTime() } : {};
    return { changes: { state: 'moved', ...duration }, delayMs: 0 };
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
      ...(task.errorCode ? { errorCode: task.errorCode as NonNullable<AuditRecord['errorCode']> } : {}),
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
