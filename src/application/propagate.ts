// Planning a move of every hub that uses a key: decide the target, list the hubs, open the job in the ledger and
// put one step message per hub on the queue. Planning is quick (an Event Grid delivery is answered within seconds);
// the hubs then advance one short step at a time (hubSteps.ts), each step a queue message.
import { chunks } from '../domain/concurrency';
import { KeyUnusableError } from '../domain/errors';
import { HUBS_PER_MESSAGE, PLANNED_VERSION, decideHub, isFinal, resultOf } from '../domain/hubStep';
import type { HubReport } from '../domain/hubStep';
import { identifiersForKey, versionsForKey } from '../domain/hubs';
import { jobIdOf } from '../domain/jobId';
import { keyLabel, keyUrl } from '../domain/keyId';
import type { KeyName } from '../domain/keyId';
import { unusableReasons } from '../domain/keyPolicy';
import type { HubStepMessage, HubTask, KeyVersionSummary, NewKeyVersionSpec, RotationJob } from '../domain/ports';
import { assertAllowed, hubsUsing, latestUsable, statusOf } from './context';
import type { Dependencies, Invocation, RotationReport, RunContext } from './context';

/** Event Grid retries a failed delivery after 10 s at the earliest; a job opened more recently is still being planned. */
const PLANNING_GRACE_MS = 8_000;

/**
 * Moves every hub that uses `key` to its latest usable version (or, with `planned`, reports the moves a rotation
 * would make). A real run opens (or joins) the job for (key, target) and enqueues the hubs' first steps.
 */
export async function propagate(
  deps: Dependencies,
  key: KeyName,
  versions: KeyVersionSummary[],
  context: RunContext,
  invocation: Invocation,
  planned?: NewKeyVersionSpec,
): Promise<RotationReport> {
  assertAllowed(deps, key);
  const target = planned ? undefined : await latestUsable(deps, key, versions);
  if (target && context.created && target.version !== context.created.version) {
    throw new KeyUnusableError(context.created.id, unusableReasons(context.created, deps.clock.now()));
  }
  if (target && !context.dryRun && context.trigger === 'event') {
    // A repeated or second event for a version whose move is planned (Event Grid delivers at least once, and a
    // rotation raises KeyNewVersionCreated too) is answered at once: its steps are queued, the reconciler
    // restarts any that go quiet, and an operator's sync re-plans in full.
    // One opened moments ago is being planned by the delivery that opened it; if that one dies, its own
    // redelivery comes after Event Grid's first retry interval, past this grace, and plans in full.
    const existing = await deps.jobs.find(key, target.version);
    const beingPlanned = !!existing && deps.clock.now().getTime() - existing.openedAt.getTime() < PLANNING_GRACE_MS;
    if (existing?.planned || beingPlanned) {
      invocation.log.info('job.joined', {
        key: keyLabel(key),
        version: target.version,
        jobId: jobIdOf(key, target.version),
        planned: !!existing?.planned,
      });
      return {
        keyId: keyUrl(key),
        trigger: context.trigger,
        dryRun: false,
        decision: `${context.decision}; the move to ${target.version} is already ${existing?.planned ? 'planned' : 'being planned'}`,
        jobId: jobIdOf(key, target.version),
        targetVersion: target.id,
        hubs: [],
        status: 'in-progress',
        correlationId: invocation.correlationId,
      };
    }
  }
  const hubs = await hubsUsing(deps, key);
  const base = {
    keyId: keyUrl(key),
    trigger: context.trigger,
    dryRun: context.dryRun,
    decision: context.decision,
    ...(context.created ? { createdVersion: context.created.id } : {}),
    ...(target ? { targetVersion: target.id } : {}),
    correlationId: invocation.correlationId,
  };
  if (context.dryRun || !target) {
    const to = target?.id ?? PLANNED_VERSION;
    const reports = hubs.map((hub): HubReport => {
      const decision = decideHub(versionsForKey(hub.body, key), target?.version, versions);
      return {
        hubId: hub.id,
        hubName: hub.name,
        from: identifiersForKey(hub.body, key),
        to,
        result: decision.result === 'move' ? 'planned' : decision.result,
        ...(decision.reason ? { reason: decision.reason } : {}),
      };
    });
    return { ...base, hubs: reports, status: statusOf(reports, true) };
  }
  const job: RotationJob = {
    key,
    targetVersion: target.version,
    targetId: target.id,
    trigger: context.trigger,
    correlationId: invocation.correlationId,
    openedAt: deps.clock.now(),
    ...(context.created ? { createdVersion: context.created.version } : {}),
    ...(context.eventId ? { eventId: context.eventId } : {}),
  };
  if (!hubs.length) return { ...base, hubs: [], status: 'succeeded' };
  const { tasks, added } = await deps.jobs.open(
    job,
    hubs.map((h) => ({ hubId: h.id, hubName: h.name, from: identifiersForKey(h.body, key) })),
  );
  const current = await startSteps(deps, job, tasks, new Set(added), context.retryFailed ?? false);
  await deps.jobs.markPlanned(job);
  invocation.log.info('job.planned', {
    key: keyLabel(key),
    version: target.version,
    jobId: jobIdOf(key, target.version),
    hubs: current.length,
    started: added.length,
  });
  const reports = current.map((task) => taskReport(task, target.id, deps.clock.now()));
  return { ...base, jobId: jobIdOf(key, target.version), hubs: reports, status: statusOf(reports, false) };
}

/**
 * Enqueues the step that gets each task going: new tasks; failed ones when `retryFailed` (reset to start over);
 * and open ones whose messages seem lost (no step taken for two leases, no wait pending). A message too many is
 * harmless: a step runs once, whichever of its messages comes first.
 */
export async function startSteps(
  deps: Dependencies,
  job: RotationJob,
  tasks: HubTask[],
  added: ReadonlySet<string>,
  retryFailed: boolean,
): Promise<HubTask[]> {
  const now = deps.clock.now();
  const quiet = now.getTime() - 2 * deps.settings.stepLeaseMs;
  const starting: HubStepMessage['hubs'] = [];
  const current: HubTask[] = [];
  const message = (task: HubTask) => ({ hubId: task.hubId, step: task.step });
  for (const task of tasks) {
    if (added.has(task.hubId)) {
      starting.push(message(task));
    } else if (retryFailed && task.state === 'failed') {
      const reset = await deps.jobs.update(job, restarted(task));
      if (reset) starting.push(message(reset));
      current.push(reset ?? task);
      continue;
    } else if (!isFinal(task)) {
      const stalled =
        (!task.leaseUntil || task.leaseUntil.getTime() < quiet) &&
        (!task.updatedAt || task.updatedAt.getTime() < quiet) &&
        (!task.notBefore || task.notBefore.getTime() < quiet);
      if (stalled) starting.push(message(task));
    }
    current.push(task);
  }
  await deps.steps.send(
    chunks(starting, HUBS_PER_MESSAGE).map((hubs) => ({ key: job.key, targetVersion: job.targetVersion, hubs })),
    0,
  );
  return current;
}

/** A failed task made to start over: a new step, no attempts, nothing recorded yet. */
function restarted(task: HubTask): HubTask {
  const {
    notBefore: _n,
    waiting: _w,
    operationUrl: _o,
    updateStartedAt: _u,
    finishedAt: _f,
    recorded: _r,
    durationMs: _d,
    errorCode: _e,
    reason: _reason,
    leaseUntil: _l,
    ...rest
  } = task;
  return { ...rest, state: 'pending', attempts: 0, step: task.step + 1 };
}

export function taskReport(task: HubTask, to: string, now: Date): HubReport {
  return {
    hubId: task.hubId,
    hubName: task.hubName,
    from: task.from,
    to,
    result: resultOf(task, now),
    attempts: task.attempts,
    ...(task.reason ? { reason: task.reason } : {}),
    ...(task.errorCode ? { errorCode: task.errorCode } : {}),
    ...(!isFinal(task) && task.notBefore ? { nextStepAt: task.notBefore.toISOString() } : {}),
    ...(task.durationMs !== undefined ? { durationMs: task.durationMs } : {}),
  };
}
