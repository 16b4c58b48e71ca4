// Fires timer-triggered functions on their schedules, one invocation at a time per function (the next occurrence is
// planned once the previous run has finished, so runs never overlap, as with the host's singleton timer lock).
import type { RpcTypedData } from './coreApi';
import type { CronSchedule } from './ncrontab';

export interface ScheduledTimer {
  functionName: string;
  schedule: CronSchedule;
  runOnStartup: boolean;
}

/** Runs the function with the given trigger value; must not reject (failures are the caller's to log). */
export type RunTimer = (functionName: string, timerInfo: RpcTypedData) => Promise<void>;

// setTimeout holds at most ~24.8 days; longer waits are re-armed in steps.
const maxTimeoutMs = 2 ** 31 - 1;

/** The host's `TimerInfo` as JSON (PascalCase; `@azure/functions` camel-cases it into the `Timer` object). */
export function timerInfo(status: { last: Date; next: Date } | undefined, isPastDue = false): RpcTypedData {
  return {
    json: JSON.stringify({
      Schedule: { AdjustForDST: true },
      ScheduleStatus: status && {
        Last: status.last.toISOString(),
        Next: status.next.toISOString(),
        LastUpdated: new Date().toISOString(),
      },
      IsPastDue: isPastDue,
    }),
  };
}

export function startTimers(timers: ScheduledTimer[], run: RunTimer): { stop(): Promise<void> } {
  const pending = new Map<string, NodeJS.Timeout>();
  const running = new Set<Promise<void>>();
  let stopped = false;

  const waitUntil = (timer: ScheduledTimer, due: Date, then: () => void): void => {
    const delay = due.getTime() - Date.now();
    pending.set(
      timer.functionName,
      setTimeout(
        () => (delay > maxTimeoutMs ? waitUntil(timer, due, then) : then()),
        Math.min(Math.max(delay, 0), maxTimeoutMs),
      ),
    );
  };

  const fire = (timer: ScheduledTimer, occurrence: Date, last: Date): void => {
    pending.delete(timer.functionName);
    if (stopped) return;
    const run$ = run(timer.functionName, timerInfo({ last, next: timer.schedule.next(occurrence) })).finally(() => {
      running.delete(run$);
      arm(timer, occurrence);
    });
    running.add(run$);
  };

  const arm = (timer: ScheduledTimer, last: Date): void => {
    if (stopped) return;
    const due = timer.schedule.next(new Date());
    waitUntil(timer, due, () => fire(timer, due, last));
  };

  const startedAt = new Date();
  for (const timer of timers) {
    if (timer.runOnStartup) fire(timer, startedAt, startedAt);
    else arm(timer, startedAt);
  }

  return {
    async stop() {
      stopped = true;
      for (const handle of pending.values()) clearTimeout(handle);
      pending.clear();
      await Promise.all(running);
    },
  };
}
