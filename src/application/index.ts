// The use cases, bound to their dependencies: what the function registrations call.
import type { KeyName } from '../domain/keyId';
import type { HubStepMessage } from '../domain/ports';
import type { Dependencies, Invocation } from './context';
import { handleEvent } from './handleEvent';
import { HubSteps } from './hubSteps';
import { listKeys } from './keys';
import { reconcile } from './reconcile';
import { retire } from './retire';
import type { RetireOptions } from './retire';
import { impact, restore, revoke } from './revoke';
import { rotate } from './rotate';
import { history, jobProgress, keyStatus } from './status';
import { sync } from './sync';

export type { Dependencies, Invocation, RotationReport, RotationSettings } from './context';
export type { ReconcileReport } from './reconcile';
export type { KeyList, KeyOverview } from './keys';
export type { HubView, JobProgress, KeyStatus } from './status';
export type { RetireReport, VersionDecision } from './retire';
export type { ImpactReport, RestoreReport, RevokeReport } from './revoke';

export function createRotator(deps: Dependencies) {
  const steps = new HubSteps(deps);
  return {
    handleEvent: (event: unknown, invocation: Invocation) => handleEvent(deps, event, invocation),
    rotate: (key: KeyName, options: { dryRun: boolean; reason?: string; requestId?: string }, invocation: Invocation) =>
      rotate(deps, key, options, invocation),
    sync: (key: KeyName, options: { dryRun: boolean }, invocation: Invocation) => sync(deps, key, options, invocation),
    reconcile: (invocation: Invocation) => reconcile(deps, invocation),
    keys: () => listKeys(deps),
    status: (key: KeyName) => keyStatus(deps, key),
    history: (key: KeyName, limit: number, continuationToken?: string) => history(deps, key, limit, continuationToken),
    job: (jobId: string) => jobProgress(deps, jobId),
    retire: (key: KeyName, options: Pick<RetireOptions, 'dryRun' | 'graceDays'>, invocation: Invocation) =>
      retire(deps, key, options, invocation),
    impact: (key: KeyName, version?: string) => impact(deps, key, version),
    revoke: (key: KeyName, options: { dryRun: boolean; version?: string; confirm?: string }, invocation: Invocation) =>
      revoke(deps, key, options, invocation),
    restore: (key: KeyName, options: { dryRun: boolean; confirm?: string }, invocation: Invocation) =>
      restore(deps, key, options, invocation),
    advanceHub: (message: HubStepMessage, invocation: Invocation) => steps.advance(message, invocation),
    failPoisonedStep: (message: HubStepMessage, invocation: Invocation) => steps.failPoisoned(message, invocation),
  };
}

export type Rotator = ReturnType<typeof createRotator>;
