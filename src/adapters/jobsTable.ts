// Rotation jobs in Azure Table Storage. One row per job and one per hub task, in the key's partition; every
// change to a task is conditional on the ETag read, so two invocations never both work on one hub.
import { isRestError } from '@azure/core-rest-pipeline';
import type { TableClient, TableEntityResult, TransactionAction } from '@azure/data-tables';
import { chunks } from '../domain/concurrency';
import { UpstreamRejectedError } from '../domain/errors';
import { keyUrl } from '../domain/keyId';
import type { HubTask, JobStore, RotationJob } from '../domain/ports';
import { partitionFor } from './auditTable';
import { tableReady } from './tables';
import { guard } from './azureErrors';
import { TableUpdateBatcher } from './tableBatcher';

export const JOBS_TABLE = 'RotationJobs';

type JobEntity = {
  partitionKey: string;
  rowKey: string;
  vaultUrl: string;
  keyName: string;
  targetVersion: string;
  targetId: string;
  trigger: string;
  correlationId: string;
  openedAt: Date;
  createdVersion?: string;
  eventId?: string;
};

type TaskEntity = {
  partitionKey: string;
  rowKey: string;
  targetVersion: string;
  hubId: string;
  hubName: string;
  state: string;
  attempts: number;
  from: string;
  claimedUntil?: Date;
  notBefore?: Date;
  errorCode?: string;
  reason?: string;
};

const jobRow = (job: RotationJob) => `job|${job.targetVersion.toLowerCase()}`;
const taskPrefix = (job: RotationJob) => `task|${job.targetVersion.toLowerCase()}|`;
const taskRow = (job: RotationJob, hubId: string) => `${taskPrefix(job)}${encodeURIComponent(hubId.toLowerCase())}`;
const quote = (s: string) => `'${s.replace(/'/g, "''")}'`;

const isStatus = (error: unknown, status: number) => isRestError(error) && error.statusCode === status;
const etagOf = (etag: string | undefined) => (etag ? { etag } : {});

export class JobsTableAdapter implements JobStore {
  private readonly ensureTable: () => Promise<void>;
  /** Claims and results of many hubs at once travel in shared transactions. */
  private readonly changes: TableUpdateBatcher;

  constructor(private readonly table: TableClient) {
    this.ensureTable = tableReady(table, 'the jobs table');
    this.changes = new TableUpdateBatcher(table);
  }

  async open(job: RotationJob, hubs: Pick<HubTask, 'hubId' | 'hubName' | 'from'>[]): Promise<HubTask[]> {
    await this.ensureTable();
    const partitionKey = partitionFor(job.key);
    return guard('the jobs table', async () => {
      const newJob = await this.createIfAbsent({
        partitionKey,
        rowKey: jobRow(job),
        vaultUrl: job.key.vaultUrl,
        keyName: job.key.name,
        targetVersion: job.targetVersion,
        targetId: job.targetId,
        trigger: job.trigger,
        correlationId: job.correlationId,
        openedAt: job.openedAt,
        ...(job.createdVersion ? { createdVersion: job.createdVersion } : {}),
        ...(job.eventId ? { eventId: job.eventId } : {}),
      });
      // A job this call opened has no tasks yet: they are only ever added after its row.
      const existing = newJob ? [] : await this.tasks(job);
      const known = new Set(existing.map((t) => t.hubId.toLowerCase()));
      const missing: TaskEntity[] = hubs
        .filter((h) => !known.has(h.hubId.toLowerCase()))
        .map((h) => ({
          partitionKey,
          rowKey: taskRow(job, h.hubId),
          targetVersion: job.targetVersion,
          hubId: h.hubId,
          hubName: h.hubName,
          state: 'pending',
          attempts: 0,
          from: JSON.stringify(h.from),
        }));
      // The tasks this invocation created are known with their ETags; after a collision with another invocation
      // opening the same job, the table says what the tasks are.
      const created = await Promise.all(chunks(missing, 100).map((batch) => this.createTasks(batch)));
      if (created.some((tasks) => tasks === undefined)) return this.tasks(job);
      const tasks = [...existing, ...created.flatMap((t) => t ?? [])];
      return tasks.sort((a, b) => (taskRow(job, a.hubId) < taskRow(job, b.hubId) ? -1 : 1));
    });
  }

  /** One transaction of new tasks; undefined when their ETags are not known (another invocation made some). */
  private async createTasks(batch: TaskEntity[]): Promise<HubTask[] | undefined> {
    try {
      const response = await this.table.submitTransaction(batch.map((e): TransactionAction => ['create', e]));
      const tasks = batch.map((entity, i) => {
        const etag = response.subResponses[i]?.etag;
        return etag ? toTask({ ...entity, etag }) : undefined;
      });
      return tasks.every((t) => t !== undefined) ? tasks : undefined;
    } catch (error) {
      // Another invocation opened the same job at the same moment: add row by row, keeping theirs.
      if (!isStatus(error, 409) && !(error instanceof Error && error.name === 'TableTransactionError')) throw error;
      for (const entity of batch) await this.createIfAbsent(entity);
      return undefined;
    }
  }

  async claim(job: RotationJob, task: HubTask, until: Date): Promise<HubTask | undefined> {
    const outcome = await guard('the jobs table', () =>
      this.changes.update(
        { partitionKey: partitionFor(job.key), rowKey: taskRow(job, task.hubId), claimedUntil: until },
        'Merge',
        task.etag ?? '*',
      ),
    );
    return 'refused' in outcome ? undefined : { ...task, claimedUntil: until, ...etagOf(outcome.etag) };
  }

  async save(job: RotationJob, task: HubTask): Promise<void> {
    const entity: TaskEntity = {
      partitionKey: partitionFor(job.key),
      rowKey: taskRow(job, task.hubId),
      targetVersion: job.targetVersion,
      hubId: task.hubId,
      hubName: task.hubName,
      state: task.state,
      attempts: task.attempts,
      from: JSON.stringify(task.from),
      ...(task.claimedUntil ? { claimedUntil: task.claimedUntil } : {}),
      ...(task.notBefore ? { notBefore: task.notBefore } : {}),
      ...(task.errorCode ? { errorCode: task.errorCode } : {}),
      ...(task.reason ? { reason: task.reason } : {}),
    };
    const outcome = await guard('the jobs table', () => this.changes.update(entity, 'Replace', task.etag ?? '*'));
    // Refused with 412: our claim expired and another invocation took the task over; its write wins.
    if ('refused' in outcome && outcome.refused === 404) {
      throw new UpstreamRejectedError(
        'UPSTREAM_REJECTED',
        `The task of hub ${task.hubId} is gone from the jobs table.`,
      );
    }
  }

  async unfinished(): Promise<RotationJob[]> {
    await this.ensureTable();
    return guard('the jobs table', async () => {
      const jobs = new Map<string, { partitionKey: string; rowKey: string }>();
      for await (const task of this.table.listEntities<TaskEntity>({
        queryOptions: { filter: `state eq 'pending'`, select: ['PartitionKey', 'targetVersion'] },
      })) {
        const rowKey = `job|${String(task.targetVersion).toLowerCase()}`;
        jobs.set(`${task.partitionKey}/${rowKey}`, { partitionKey: task.partitionKey, rowKey });
      }
      const result: RotationJob[] = [];
      for (const { partitionKey, rowKey } of jobs.values()) {
        try {
          result.push(toJob(await this.table.getEntity<JobEntity>(partitionKey, rowKey)));
        } catch (error) {
          if (!isStatus(error, 404)) throw error;
        }
      }
      return result;
    });
  }

  private async tasks(job: RotationJob): Promise<HubTask[]> {
    const prefix = taskPrefix(job);
    const tasks: HubTask[] = [];
    for await (const e of this.table.listEntities<TaskEntity>({
      queryOptions: {
        filter: `PartitionKey eq ${quote(partitionFor(job.key))} and RowKey ge ${quote(prefix)} and RowKey lt ${quote(`${prefix}~`)}`,
      },
    })) {
      tasks.push(toTask(e));
    }
    return tasks;
  }

  /** True when this call created the row, false when it existed. */
  private async createIfAbsent(entity: JobEntity | TaskEntity): Promise<boolean> {
    try {
      await this.table.createEntity(entity);
      return true;
    } catch (error) {
      if (!isStatus(error, 409)) throw error;
      return false;
    }
  }
}

function toTask(e: TableEntityResult<TaskEntity>): HubTask {
  return {
    hubId: e.hubId,
    hubName: e.hubName,
    state: e.state as HubTask['state'],
    attempts: Number(e.attempts ?? 0),
    from: JSON.parse(e.from || '[]') as string[],
    ...(e.claimedUntil ? { claimedUntil: new Date(e.claimedUntil) } : {}),
    ...(e.notBefore ? { notBefore: new Date(e.notBefore) } : {}),
    ...(e.errorCode ? { errorCode: e.errorCode } : {}),
    ...(e.reason ? { reason: e.reason } : {}),
    ...(e.etag ? { etag: e.etag } : {}),
  };
}

function toJob(e: TableEntityResult<JobEntity>): RotationJob {
  const key = { vaultUrl: e.vaultUrl, name: e.keyName };
  return {
    key,
    targetVersion: e.targetVersion,
    targetId: e.targetId || `${keyUrl(key)}/${e.targetVersion}`,
    trigger: e.trigger as RotationJob['trigger'],
    correlationId: e.correlationId,
    openedAt: new Date(e.openedAt),
    ...(e.createdVersion ? { createdVersion: e.createdVersion } : {}),
    ...(e.eventId ? { eventId: e.eventId } : {}),
  };
}
