// The pure decisions of a hub's move, taken one short step at a time: what to do with a hub, whether a step message
// should run, how long to wait after ARM asked us to, and what a failure makes of the task.
import { ThrottledError, errorCode, isTransient, safeMessage } from './errors';
import { compareVersions } from './keyPolicy';
import { chunks } from './concurrency';
import type { HubStepMessage, HubTask, HubTaskState, HubTaskWait, KeyVersionSummary } from './ports';

/** How a hub stands in a report: a final state, `planned` (dry run), or where its move is. */
export type HubResult =
  'moved' | 'already-current' | 'skipped' | 'failed' | 'planned' | 'queued' | 'in-flight' | 'throttled' | 'retrying';

export interface HubReport {
  hubId: string;
  hubName: string;
  /** The identifiers the hub referenced before. */
  from: string[];
  /** The identifier it references now (or will, or would in a dry run). */
  to: string;
  result: HubResult;
  reason?: string;
  errorCode?: string;
  attempts?: number;
  /** When a move that is not final is due to be looked at next. */
  nextStepAt?: string;
  durationMs?: number;
}

/** The `to` of a dry-run rotation, whose version does not exist yet. */
export const PLANNED_VERSION = '(new version)';

export const FINAL_STATES: ReadonlySet<HubTaskState> = new Set(['moved', 'already-current', 'skipped', 'failed']);

export const isFinal = (task: Pick<HubTask, 'state'>): boolean => FINAL_STATES.has(task.state);

/** A report's result that will not change any more (the final task states). */
export const isFinalResult = (result: HubResult): boolean => (FINAL_STATES as ReadonlySet<string>).has(result);

/**
 * What to do with one hub, given the versions of the key it references now. `target` undefined means "a version
 * newer than all" (a planned rotation). Never downgrade: a hub already on a newer version is left alone.
 */
export function decideHub(
  hubVersions: readonly (string | undefined)[],
  target: string | undefined,
  versions: readonly KeyVersionSummary[],
): { result: 'move' | 'already-current' | 'skipped'; reason?: string } {
  if (hubVersions.length === 0) return { result: 'skipped', reason: 'the hub no longer references the key' };
  if (hubVersions.some((v) => v === undefined)) {
    return { result: 'skipped', reason: 'the hub references the key without a version (it follows the latest itself)' };
  }
  if (target === undefined) return { result: 'move' };
  if (hubVersions.every((v) => v!.toLowerCase() === target.toLowerCase())) return { result: 'already-current' };
  const newer = hubVersions.find((v) => compareVersions(versions, v!, target) === 1);
  if (newer) return { result: 'skipped', reason: `the hub already uses the newer version ${newer}` };
  return { result: 'move' };
}

/** ARM's terminal provisioning states; in any other, an update is still running on the hub. */
const SETTLED_STATES = new Set(['succeeded', 'failed', 'canceled']);

export function isSettled(provisioningState: string | undefined): boolean {
  return provisioningState === undefined || SETTLED_STATES.has(provisioningState.toLowerCase());
}

/**
 * Whether a step message runs. Step messages are delivered at least once and a task may have two in the queue (the
 * next step, and the watchdog sent before the step ran, which takes over if the step's instance dies), so:
 * - `run`: the message is for the task's current step and nobody is working on it;
 * - `record`: the task is final but its audit record and outcome may not be out (a crash in between);
 * - `done`: a final task, a message for another step (a duplicate, or overtaken), or a step another instance is
 *   working on under a live lease (its own watchdog covers it);
 * - `later`: the task must not be worked on before `notBefore` (ARM's Retry-After, a backoff).
 */
export function stepDisposition(
  task: HubTask,
  step: number,
  now: Date,
): { kind: 'run' } | { kind: 'record' } | { kind: 'done'; why: string } | { kind: 'later'; delayMs: number } {
  if (isFinal(task)) return task.recorded ? { kind: 'done', why: 'final' } : { kind: 'record' };
  if (step !== task.step) return { kind: 'done', why: `the task is at step ${task.step}` };
  if (task.leaseUntil && task.leaseUntil > now) return { kind: 'done', why: 'another instance is on this step' };
  if (task.notBefore && task.notBefore > now)
    return { kind: 'later', delayMs: task.notBefore.getTime() - now.getTime() };
  return { kind: 'run' };
}

export interface StepTiming {
  /** The first backoff after a transient failure; each later one is four times longer, at most an hour. */
  firstRetryDelayMs: number;
  /** Transient failures before a hub is marked failed. */
  maxHubAttempts: number;
  /** ARM's Retry-After for polls and throttling is honoured within these bounds. */
  minWaitMs: number;
  maxWaitMs: number;
}

/** Backoff before a hub's next attempt: four times longer each time, at most an hour. */
export function retryDelayMs(attempts: number, firstDelayMs: number): number {
  return Math.min(firstDelayMs * 4 ** Math.max(0, attempts - 1), 3_600_000);
}

/** ARM's Retry-After within sensible bounds (a missing one waits the least). */
export function boundedWaitMs(retryAfterMs: number | undefined, timing: StepTiming): number {
  return Math.min(timing.maxWaitMs, Math.max(timing.minWaitMs, retryAfterMs ?? timing.minWaitMs));
}

/** The task fields a step changes, and how long until its next step (none once final). */
export interface StepResult {
  changes: Partial<HubTask> & { state: HubTaskState };
  delayMs: number;
}

/**
 * What a failed step makes of the task. Throttling waits as long as ARM asked and costs no attempt; other transient
 * failures back off and count, and after `maxHubAttempts` the hub is failed; permanent failures fail it at once.
 */
export function afterFailure(task: HubTask, error: unknown, now: Date, timing: StepTiming): StepResult {
  const code = errorCode(error);
  const reason = safeMessage(error);
  if (error instanceof ThrottledError) {
    const delayMs = boundedWaitMs(error.retryAfterMs, timing);
    return {
      changes: { state: task.state, waiting: 'throttled', notBefore: new Date(now.getTime() + delayMs), reason },
      delayMs,
    };
  }
  const attempts = task.attempts + 1;
  if (isTransient(error) && attempts < timing.maxHubAttempts) {
    const delayMs = retryDelayMs(attempts, timing.firstRetryDelayMs);
    return {
      changes: {
        state: task.state,
        attempts,
        waiting: 'backoff',
        notBefore: new Date(now.getTime() + delayMs),
        errorCode: code,
        reason: `${reason} (attempt ${attempts} of ${timing.maxHubAttempts}; will retry)`,
      },
      delayMs,
    };
  }
  const after = isTransient(error) ? ` (gave up after ${attempts} attempts)` : '';
  return { changes: { state: 'failed', attempts, errorCode: code, reason: `${reason}${after}` }, delayMs: 0 };
}

/** How a task shows in a report. */
export function resultOf(task: HubTask, now: Date): HubResult {
  if (isFinal(task)) return task.state as HubResult;
  const waiting: HubTaskWait | undefined = task.notBefore && task.notBefore > now ? task.waiting : undefined;
  if (waiting === 'throttled') return 'throttled';
  if (waiting === 'backoff') return 'retrying';
  return task.state === 'updating' ? 'in-flight' : 'queued';
}

/** Counts of a job's tasks by how they show in a report. */
export function progressOf(tasks: readonly HubTask[], now: Date): Record<HubResult, number> {
  const counts: Record<HubResult, number> = {
    moved: 0,
    'already-current': 0,
    skipped: 0,
    failed: 0,
    planned: 0,
    queued: 0,
    'in-flight': 0,
    throttled: 0,
    retrying: 0,
  };
  for (const task of tasks) counts[resultOf(task, now)]++;
  return counts;
}

/** Hubs per step message: a group costs the queue one message and the ledger a few grouped reads and writes. */
export const HUBS_PER_MESSAGE = 32;

/** Hubs grouped by when their next step is due (whole seconds: the queue's resolution), largest group first. */
export class DelayGroups {
  private readonly groups = new Map<number, { hubId: string; step: number }[]>();

  add(delayMs: number, hub: { hubId: string; step: number }): void {
    const seconds = Math.max(0, Math.ceil(delayMs / 1000));
    const group = this.groups.get(seconds);
    if (group) group.push(hub);
    else this.groups.set(seconds, [hub]);
  }

  messages(like: HubStepMessage): { message: HubStepMessage; delayMs: number }[] {
    return [...this.groups.entries()]
      .sort(([, a], [, b]) => b.length - a.length)
      .flatMap(([seconds, hubs]) =>
        chunks(hubs, HUBS_PER_MESSAGE).map((group) => ({ message: { ...like, hubs: group }, delayMs: seconds * 1000 })),
      );
  }
}
