// How long a hub's long-running operations run and what Retry-After the emulator answers while they do: one
// emulator-wide default, overridable per hub (a fleet where some hubs take minutes to update and others seconds).
import * as z from 'zod';
import { parseInput } from './faults';

const timingSchema = z.strictObject({
  /** How long a PUT or DELETE on the hub stays InProgress. */
  operationMs: z
    .number()
    .int()
    .min(0)
    .max(24 * 3600_000)
    .optional(),
  /** Retry-After (seconds) on the accepted PUT/DELETE and on the operation status while it runs. */
  retryAfterSeconds: z.number().int().min(0).max(3600).optional(),
});
export type OperationTimingInput = z.input<typeof timingSchema>;

export interface EffectiveTiming {
  operationMs: number;
  retryAfterSeconds: number;
  /** Whether the hub has its own setting (else the emulator-wide one applies). */
  perHub: boolean;
}

/**
 * Without a configured Retry-After, poll about four times per operation (at least every second, at most every
 * minute): close to what ARM operations advertise, and a client that honours it sees the end soon after it comes.
 */
const derivedRetryAfter = (operationMs: number): number => Math.min(60, Math.max(1, Math.ceil(operationMs / 4000)));

export class OperationTimings {
  private defaults: { operationMs: number; retryAfterSeconds?: number };
  private readonly perHub = new Map<string, OperationTimingInput>();

  constructor(private readonly initial: { operationMs: number; retryAfterSeconds?: number }) {
    this.defaults = { ...initial };
  }

  setDefaults(input: unknown): void {
    const timing = parseInput(timingSchema, input);
    this.defaults = {
      operationMs: timing.operationMs ?? this.defaults.operationMs,
      ...(timing.retryAfterSeconds !== undefined
        ? { retryAfterSeconds: timing.retryAfterSeconds }
        : this.defaults.retryAfterSeconds !== undefined
          ? { retryAfterSeconds: this.defaults.retryAfterSeconds }
          : {}),
    };
  }

  /** `null` forgets the hub's own timing. */
  setHub(hubKey: string, input: unknown): void {
    if (input === null) {
      this.perHub.delete(hubKey);
      return;
    }
    this.perHub.set(hubKey, parseInput(timingSchema, input));
  }

  of(hubKey?: string): EffectiveTiming {
    const own = hubKey === undefined ? undefined : this.perHub.get(hubKey);
    const operationMs = own?.operationMs ?? this.defaults.operationMs;
    const retryAfterSeconds =
      own?.retryAfterSeconds ?? this.defaults.retryAfterSeconds ?? derivedRetryAfter(operationMs);
    return { operationMs, retryAfterSeconds, perHub: own !== undefined };
  }

  /**
   * Retry-After for an operation with `remainingMs` to run: the configured value, but never past the operation's
   * end (a client told to wait longer would see the result late), and at least 1 s while it runs unless 0 is set.
   */
  retryAfter(hubKey: string, remainingMs: number): number {
    const configured = this.of(hubKey).retryAfterSeconds;
    if (configured === 0) return 0;
    return Math.max(1, Math.min(configured, Math.ceil(remainingMs / 1000)));
  }

  reset(): void {
    this.perHub.clear();
    this.defaults = { ...this.initial };
  }
}
