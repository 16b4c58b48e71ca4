// What operators read: a key's versions and hubs (with the progress of its open job), a job's progress, and the
// audit history.
import { JobNotFoundError, KeyUnusableError } from '../domain/errors';
import { isFinal, progressOf, resultOf } from '../domain/hubStep';
import type { HubReport, HubResult } from '../domain/hubStep';
import { identifiersForKey, resourceGroupOf, subscriptionOf } from '../domain/hubs';
import { jobIdOf, parseJobId } from '../domain/jobId';
import { HUB_STANDINGS, hubStanding, keyHealth } from '../domain/keyHealth';
import type { HubStanding, KeyHealth } from '../domain/keyHealth';
import { keyUrl } from '../domain/keyId';
import type { KeyName } from '../domain/keyId';
import { isLive, newestFirst, notifyWindowOpens } from '../domain/keyPolicy';
import type { AuditPage, HubDocument, HubTask, RotationJob, RotationPolicy } from '../domain/ports';
import { assertAllowed, hubsUsing, latestUsable } from './context';
import type { Dependencies } from './context';
import { taskReport } from './propagate';
import { activeRevocation } from './revoke';

export interface VersionView {
  id: string;
  version: string;
  enabled: boolean;
  createdOn: string;
  notBefore?: string;
  expiresOn?: string;
  live: boolean;
}

export interface HubView {
  hubId: string;
  hubName: string;
  subscriptionId: string;
  resourceGroup: string;
  keyIdentifiers: string[];
  current: boolean;
  standing: HubStanding;
  /** The hub's part in the key's latest job: how its move ended (or stands), and when. */
  move?: { result: HubResult; finishedAt?: string; durationMs?: number; errorCode?: string; reason?: string };
}

export interface KeyStatus {
  keyId: string;
  latestUsableVersion?: string;
  health: KeyHealth;
  versions: VersionView[];
  hubs: HubView[];
  /** The rotation policy's Notify, or Key Vault's default of 30 days. */
  notifyBeforeExpiry: string;
  /** When Key Vault raises KeyNearExpiry for the current version: the next rotation. */
  nextRotation?: string;
  /** The last version this service created, from the audit log. */
  lastRotation?: { version?: string; time: string; trigger: string };
  /** The job moving hubs to the latest usable version, if one was opened. */
  job?: JobSummary;
  /** The key's revocation not restored yet: the versions it disabled (the key is not rotated automatically). */
  revoked?: { revokedAt: string; versions: string[] };
}

export interface JobSummary {
  jobId: string;
  keyId: string;
  targetVersion: string;
  trigger: string;
  openedAt: string;
  createdVersion?: string;
  done: boolean;
  /** Hubs by where their move stands: moved / in flight / waiting on throttling / retrying / failed / ... */
  progress: Record<HubResult, number>;
}

export interface JobProgress extends JobSummary {
  hubs: HubReport[];
}

/** GET /api/keys/status: the key's versions, every hub that uses it with its standing, and the open job. */
export async function keyStatus(deps: Dependencies, key: KeyName): Promise<KeyStatus> {
  assertAllowed(deps, key);
  return describeKey(deps, key, await hubsUsing(deps, key));
}

const DEFAULT_NOTIFY = 'P30D';
/** Enough of the audit log to find the last rotation of a key rotated daily for weeks. */
const AUDIT_LOOKBACK = 100;

/**
 * Everything known about a key and the hubs given (those that use it). `known` carries the rotation policy when the
 * caller read it already (undefined in it: the key has none), so it is not read again.
 */
export async function describeKey(
  deps: Dependencies,
  key: KeyName,
  hubs: readonly HubDocument[],
  known?: { policy: RotationPolicy | undefined },
): Promise<KeyStatus> {
  const now = deps.clock.now();
  const [versions, policy, audit] = await Promise.all([
    deps.keyVault.listVersions(key).then(newestFirst),
    known ? known.policy : deps.keyVault.getRotationPolicy(key),
    deps.audit.list(key, AUDIT_LOOKBACK),
  ]);
  const target = await latestUsable(deps, key, versions).catch((e: unknown) => {
    if (e instanceof KeyUnusableError) return undefined;
    throw e;
  });
  const job = target && (await deps.jobs.find(key, target.version));
  const tasks = job ? await deps.jobs.tasks(job) : [];
  const taskOf = new Map(tasks.map((t) => [t.hubId.toLowerCase(), t]));
  const hubViews = hubs.map((h): HubView => {
    const ids = identifiersForKey(h.body, key);
    const task = taskOf.get(h.id.toLowerCase());
    const standing = hubStanding(ids, target, versions, task, now);
    return {
      hubId: h.id,
      hubName: h.name,
      subscriptionId: subscriptionOf(h.id),
      resourceGroup: resourceGroupOf(h.id),
      keyIdentifiers: ids,
      current: standing === 'current',
      standing,
      ...(task ? { move: moveOf(task, now) } : {}),
    };
  });
  const counts = standingCounts(hubViews);
  const notifyBeforeExpiry = policy?.notifyBeforeExpiry ?? DEFAULT_NOTIFY;
  const rotated = audit.records.find((r) => r.result === 'rotated');
  const revocation = await activeRevocation(deps, key);
  return {
    keyId: keyUrl(key),
    ...(target ? { latestUsableVersion: target.id } : {}),
    health: keyHealth({ hubs: counts, current: target, notifyBeforeExpiry, revoked: !!revocation, now }),
    versions: versions.map((v) => ({
      id: v.id,
      version: v.version,
      enabled: v.enabled,
      createdOn: v.createdOn.toISOString(),
      ...(v.notBefore ? { notBefore: v.notBefore.toISOString() } : {}),
      ...(v.expiresOn ? { expiresOn: v.expiresOn.toISOString() } : {}),
      live: isLive(v, now),
    })),
    hubs: hubViews,
    notifyBeforeExpiry,
    ...(target?.expiresOn
      ? { nextRotation: notifyWindowOpens(target.expiresOn, notifyBeforeExpiry).toISOString() }
      : {}),
    ...(rotated
      ? {
          lastRotation: {
            ...(rotated.toVersion ? { version: rotated.toVersion } : {}),
            time: rotated.time.toISOString(),
            trigger: rotated.trigger,
          },
        }
      : {}),
    ...(job ? { job: summaryOf(job, tasks, now) } : {}),
    ...(revocation
      ? { revoked: { revokedAt: revocation.revokedAt.toISOString(), versions: revocation.versions } }
      : {}),
  };
}

/** Hubs per standing, every standing present. */
export function standingCounts(hubs: readonly Pick<HubView, 'standing'>[]): Record<HubStanding, number> {
  const counts = Object.fromEntries(HUB_STANDINGS.map((s) => [s, 0])) as Record<HubStanding, number>;
  for (const hub of hubs) counts[hub.standing]++;
  return counts;
}

function moveOf(task: HubTask, now: Date): NonNullable<HubView['move']> {
  return {
    result: resultOf(task, now),
    ...(task.finishedAt ? { finishedAt: task.finishedAt.toISOString() } : {}),
    ...(task.durationMs !== undefined ? { durationMs: task.durationMs } : {}),
    ...(task.errorCode ? { errorCode: task.errorCode } : {}),
    ...(task.reason ? { reason: task.reason } : {}),
  };
}

/** GET /api/jobs/{id}: a job and every hub's state. */
export async function jobProgress(deps: Dependencies, jobId: string): Promise<JobProgress> {
  const { key, targetVersion } = parseJobId(jobId);
  assertAllowed(deps, key);
  const job = await deps.jobs.find(key, targetVersion);
  if (!job) throw new JobNotFoundError(jobId);
  const { summary, hubs } = await jobProgressOf(deps, job);
  return { ...summary, hubs };
}

async function jobProgressOf(
  deps: Dependencies,
  job: RotationJob,
): Promise<{ summary: JobSummary; hubs: HubReport[] }> {
  const now = deps.clock.now();
  const tasks = await deps.jobs.tasks(job);
  return { summary: summaryOf(job, tasks, now), hubs: tasks.map((t) => taskReport(t, job.targetId, now)) };
}

function summaryOf(job: RotationJob, tasks: readonly HubTask[], now: Date): JobSummary {
  return {
    jobId: jobIdOf(job.key, job.targetVersion),
    keyId: keyUrl(job.key),
    targetVersion: job.targetId,
    trigger: job.trigger,
    openedAt: job.openedAt.toISOString(),
    ...(job.createdVersion ? { createdVersion: job.createdVersion } : {}),
    done: tasks.every(isFinal),
    progress: progressOf(tasks, now),
  };
}

export async function history(
  deps: Dependencies,
  key: KeyName,
  limit: number,
  continuationToken?: string,
): Promise<AuditPage> {
  assertAllowed(deps, key);
  return deps.audit.list(key, limit, continuationToken);
}
