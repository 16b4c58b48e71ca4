// What operators read: a key's versions and hubs (with the progress of its open job), a job's progress, and the
// audit history.
import { JobNotFoundError, KeyUnusableError } from '../domain/errors';
import { isFinal, progressOf } from '../domain/hubStep';
import type { HubReport, HubResult } from '../domain/hubStep';
import { identifiersForKey } from '../domain/hubs';
import { jobIdOf, parseJobId } from '../domain/jobId';
import { keyUrl } from '../domain/keyId';
import type { KeyName } from '../domain/keyId';
import { isLive, newestFirst } from '../domain/keyPolicy';
import type { AuditPage, RotationJob } from '../domain/ports';
import { assertAllowed, hubsUsing, latestUsable } from './context';
import type { Dependencies } from './context';
import { taskReport } from './propagate';
import { activeRevocation } from './revoke';

export interface KeyStatus {
  keyId: string;
  latestUsableVersion?: string;
  versions: {
    id: string;
    version: string;
    enabled: boolean;
    createdOn: string;
    notBefore?: string;
    expiresOn?: string;
    live: boolean;
  }[];
  hubs: { hubId: string; hubName: string; keyIdentifiers: string[]; current: boolean }[];
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

export async function keyStatus(deps: Dependencies, key: KeyName): Promise<KeyStatus> {
  assertAllowed(deps, key);
  const now = deps.clock.now();
  const versions = newestFirst(await deps.keyVault.listVersions(key));
  const target = await latestUsable(deps, key, versions).catch((e: unknown) => {
    if (e instanceof KeyUnusableError) return undefined;
    throw e;
  });
  const hubs = await hubsUsing(deps, key);
  const job = target && (await deps.jobs.find(key, target.version));
  const revocation = await activeRevocation(deps, key);
  return {
    keyId: keyUrl(key),
    ...(target ? { latestUsableVersion: target.id } : {}),
    versions: versions.map((v) => ({
      id: v.id,
      version: v.version,
      enabled: v.enabled,
      createdOn: v.createdOn.toISOString(),
      ...(v.notBefore ? { notBefore: v.notBefore.toISOString() } : {}),
      ...(v.expiresOn ? { expiresOn: v.expiresOn.toISOString() } : {}),
      live: isLive(v, now),
    })),
    hubs: hubs.map((h) => {
      const ids = identifiersForKey(h.body, key);
      return {
        hubId: h.id,
        hubName: h.name,
        keyIdentifiers: ids,
        current: !!target && ids.every((id) => id.toLowerCase() === target.id.toLowerCase()),
      };
    }),
    ...(job ? { job: (await jobProgressOf(deps, job)).summary } : {}),
    ...(revocation
      ? { revoked: { revokedAt: revocation.revokedAt.toISOString(), versions: revocation.versions } }
      : {}),
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
  return {
    summary: {
      jobId: jobIdOf(job.key, job.targetVersion),
      keyId: keyUrl(job.key),
      targetVersion: job.targetId,
      trigger: job.trigger,
      openedAt: job.openedAt.toISOString(),
      ...(job.createdVersion ? { createdVersion: job.createdVersion } : {}),
      done: tasks.every(isFinal),
      progress: progressOf(tasks, now),
    },
    hubs: tasks.map((t) => taskReport(t, job.targetId, now)),
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
