// Moving one hub to a key version: re-read, decide (never downgrade), write with If-Match, retry on 412, verify.
import { EtagConflictError, HubKeyNotAppliedError, RotatorError, UpstreamUnavailableError, errorCode } from './errors';
import { identifiersForKey, provisioningStateOf, versionsForKey, withKeyIdentifier } from './hubs';
import { keyLabel } from './keyId';
import type { KeyName } from './keyId';
import { compareVersions } from './keyPolicy';
import type { HubDocument, HubRepository, KeyVersionSummary, Logger } from './ports';

export type HubResult = 'moved' | 'already-current' | 'skipped' | 'failed' | 'retrying' | 'in-progress' | 'planned';

export interface HubReport {
  hubId: string;
  hubName: string;
  /** The identifiers the hub referenced before. */
  from: string[];
  /** The identifier it references now (or would, in a dry run). */
  to: string;
  result: HubResult;
  reason?: string;
  errorCode?: string;
  attempts?: number;
  durationMs: number;
}

/** The `to` of a dry-run rotation, whose version does not exist yet. */
export const PLANNED_VERSION = '(new version)';

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

export interface MoveRequest {
  /** The hub as discovered; in a dry run it is used as is, otherwise re-read first. */
  hub: HubDocument;
  key: KeyName;
  versions: readonly KeyVersionSummary[];
  /** Undefined: a planned rotation (dry run only). */
  target?: KeyVersionSummary;
  dryRun: boolean;
}

export async function moveHub(
  hubs: HubRepository,
  request: MoveRequest,
  maxEtagAttempts: number,
  log: Logger,
): Promise<HubReport> {
  const { key, versions, target, dryRun } = request;
  const started = Date.now();
  const to = target?.id ?? PLANNED_VERSION;
  let from = identifiersForKey(request.hub.body, key);
  const report = (result: HubResult, extra: Partial<HubReport> = {}): HubReport => {
    const r: HubReport = {
      hubId: request.hub.id,
      hubName: request.hub.name,
      from,
      to,
      result,
      ...extra,
      durationMs: Date.now() - started,
    };
    const fields = {
      key: keyLabel(key),
      hub: r.hubId,
      from: from.join(','),
      to,
      ...(extra.reason ? { reason: extra.reason } : {}),
      ...(extra.errorCode ? { errorCode: extra.errorCode } : {}),
      durationMs: r.durationMs,
    };
    if (result === 'failed') log.error(`hub.${result}`, fields);
    else log.info(`hub.${result}`, fields);
    return r;
  };
  try {
    for (let attempt = 1; ; attempt++) {
      const hub = dryRun ? request.hub : await hubs.get(request.hub.id);
      from = identifiersForKey(hub.body, key);
      if (!dryRun) assertNoOperationRunning(hub);
      const decision = decideHub(versionsForKey(hub.body, key), target?.version, versions);
      if (decision.result !== 'move') return report(decision.result, { reason: decision.reason });
      if (dryRun) return report('planned');
      try {
        const updated = await hubs.replace(hub, withKeyIdentifier(hub.body, key, to));
        const now = identifiersForKey(updated.body, key);
        if (!now.every((id) => id.toLowerCase() === to.toLowerCase())) {
          throw new HubKeyNotAppliedError(hub.id, to, now[0]);
        }
        return report('moved');
      } catch (error) {
        if (error instanceof EtagConflictError && attempt < maxEtagAttempts) continue;
        throw error;
      }
    }
  } catch (error) {
    return report('failed', { errorCode: errorCode(error), reason: safeMessage(error) });
  }
}

/** ARM's terminal provisioning states; in any other, an update (perhaps of a crashed invocation) is still running. */
const SETTLED_STATES = new Set(['succeeded', 'failed', 'canceled']);

/**
 * A hub whose update is still running shows the requested body, which may yet be rolled back: neither "already
 * current" nor safe to write over (ARM answers 409), so it is retried later.
 */
function assertNoOperationRunning(hub: HubDocument): void {
  const state = provisioningStateOf(hub.body);
  if (state !== undefined && !SETTLED_STATES.has(state.toLowerCase())) {
    throw new UpstreamUnavailableError(`Hub ${hub.id} is ${state}: an earlier update is still running.`);
  }
}

/** Error text for reports and logs: our own messages are written to be safe; anything else is reduced to its type. */
export function safeMessage(error: unknown): string {
  if (error instanceof RotatorError) return error.message;
  return error instanceof Error ? `${error.name}: unexpected failure` : 'unexpected failure';
}
