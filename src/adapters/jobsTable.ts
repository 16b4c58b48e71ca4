// Rotation jobs in Azure Table Storage. One row per job and one per hub task, in the key's partition; every
// change to a task is conditional on the ETag read, so two invocations never both work on one hub.
import { isRestError } from '@azure/core-rest-pipeline';
import type { TableClient, TableEntityResult, TransactionAction } from '@azure/data-tables';
import { chunks } from '../domain/concurrency';
import { keyUrl } from '../domain/keyId';
import type { KeyName } from '../domain/keyId';
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
  planned?: boolean;
};

type TaskEntity = {
  partitionKey: string;
  rowKey: string;
  targetVersion: string;
  hubId: string;
  hubName: string;
  state: string;
  step: number;
  attempts: number;
  from: string;
  leaseUntil?: Date;
  notBefore?: Date;
  waiting?: string;
  operationUrl?: string;
  updateStartedAt?: Date;
  finishedAt?: Date;
  recorded?: boolean;
  durationMs?: number;
  errorCode?: string;
  reason?: string;
};

/** Open tasks, for the reconciler's look for quiet jobs. */
const OPEN_FILTER = `state eq 'pending' or state eq 'updating'`;

const jobRow = (job: RotationJob) => `job|${job.targetVersion.toLowerCase()}`;
const taskPrefix = (job: RotationJob) => `task|${job.targetVersion.toLowerCase()}|`;
const taskRow = (job: RotationJob, hubId: string) => `${taskPrefix(job)}${encodeURIComponent(hubId.toLowerCase())}`;
const quote = (s: string) => `'${s.replace(/'/g, "''")}'`;

/** Table Storage keeps strings up to 32K characters; a reason is a sentence, so this is only a bound. */
const MAX_REASON = 2_000;

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

  async open(
    job: RotationJob,
    hubs: Pick<HubTask, 'hubId' | 'hubName' | 'from'>[],
  ): Promise<{ tasks: HubTask[]; added: string[] }> {
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
      const existing = newJob ? [] : await this.listTasks(job);
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
          step: 0,
          attempts: 0,
          from: JSON.stringify(h.from),
        }));
      // The tasks this invocation created are known with their ETags; after a collision with another invocation
      // opening the same job, the table says what the tasks are.
      const created = await Promise.all(chunks(missing, 100).map((batch) => this.createTasks(batch)));
      const added = created.flatMap((c) => c.added);
      if (created.some((c) => c.tasks === undefined)) {
        // Another invocation added some of them at the same moment: the table says what the tasks are (with their
        // ETags), and only the rows this one created count as added.
        return { tasks: await this.listTasks(job), added };
      }
      const tasks = [...existing, ...created.flatMap((c) => c.tasks ?? [])].sort((a, b) =>
        taskRow(job, a.hubId) < taskRow(job, b.hubId) ? -1 : 1,
      );
      return { tasks, added };
    });
  }

  /**
   * One transaction of new tasks: the hubs this call added, and the tasks with their ETags (undefined when those
   * are not known: another invocation made some of the rows, so they were added one by one, keeping theirs).
   */
  private async createTasks(batch: TaskEntity[]): Promise<{ added: string[]; tasks: HubTask[] | undefined }> {
    try {
      const response = await this.table.submitTransaction(batch.map((e): TransactionAction => ['create', e]));
      const tasks = batch.map((entity, i) => {
        const etag = response.subResponses[i]?.etag;
        return etag ? toTask({ ...entity, etag }) : undefined;
      });
      return {
        added: batch.map((e) => e.hubId),
        tasks: tasks.every((t) => t !== undefined) ? tasks : undefined,
      };
    } catch (error) {
      if (!isStatus(error, 409) && !(error instanceof Error && error.name === 'TableTransactionError')) throw error;
      const added: string[] = [];
      for (const entity of batch) if (await this.createIfAbsent(entity)) added.push(entity.hubId);
      return { added, tasks: undefined };
    }
  }

  async markPlanned(job: RotationJob): Promise<void> {
    await guard('the jobs table', () =>
      this.table.updateEntity({ partitionKey: partitionFor(job.key), rowKey: jobRow(job), planned: true }, 'Merge'),
    );
  }

  async find(key: KeyName, targetVersion: string): Promise<RotationJob | undefined> {
    await this.ensureTable();
    const job = await guard('the jobs table', () =>
      this.getIfPresent<JobEntity>(partitionFor(key), `job|${targetVersion.toLowerCase()}`),
    );
    return job && toJob(job);
  }

  async tasksOf(job: RotationJob, hubIds: readonly string[]): Promise<HubTask[]> {
    await this.ensureTable();
    const partition = `PartitionKey eq ${quote(partitionFor(job.key))}`;
    // Table Storage takes at most 15 comparisons in a filter: one query per 14 hubs.
    return guard('the jobs table', async () =>
      (
        await Promise.all(
          chunks([...new Set(hubIds)], 14).map(async (ids) => {
            const rows = ids.map((id) => `RowKey eq ${quote(taskRow(job, id))}`).join(' or ');
            const tasks: HubTask[] = [];
            for await (const e of this.table.listEntities<TaskEntity>({
              queryOptions: { filter: `${partition} and (${rows})` },
            })) {
              tasks.push(toTask(e));
            }
            return tasks;
          }),
        )
      ).flat(),
    );
  }

  async tasks(job: RotationJob): Promise<HubTask[]> {
    await this.ensureTable();
    return guard('the jobs table', () => this.listTasks(job));
  }

  async update(job: RotationJob, task: HubTask): Promise<HubTask | undefined> {
    const entity: TaskEntity = {
      partitionKey: partitionFor(job.key),
      rowKey: taskRow(job, task.hubId),
      targetVersion: job.targetVersion,
      hubId: task.hubId,
      hubName: task.hubName,
      state: task.state,
      step: task.step,
      attempts: task.attempts,
      from: JSON.stringify(task.from),
      ...(task.leaseUntil ? { leaseUntil: task.leaseUntil } : {}),
      ...(task.notBefore ? { notBefore: task.notBefore } : {}),
      ...(task.waiting ? { waiting: task.waiting } : {}),
      ...(task.operationUrl ? { operationUrl: task.operationUrl } : {}),
      ...(task.updateStartedAt ? { updateStartedAt: task.updateStartedAt } : {}),
      ...(task.finishedAt ? { finishedAt: task.finishedAt } : {}),
      ...(task.recorded !== undefined ? { recorded: task.recorded } : {}),
      ...(task.durationMs !== undefined ? { durationMs: task.durationMs } : {}),
      ...(task.errorCode ? { errorCode: task.errorCode } : {}),
      ...(task.reason ? { reason: task.reason.slice(0, MAX_REASON) } : {}),
    };
    const outcome = await guard('the jobs table', () => this.changes.update(entity, 'Replace', task.etag ?? '*'));
    // Refused: another invocation changed the task first (412), or it is gone (404).
    return 'refused' in outcome ? undefined : { ...task, ...etagOf(outcome.etag) };
  }

  async unfinished(): Promise<RotationJob[]> {
    await this.ensureTable();
    return guard('the jobs table', async () => {
      const jobs = new Set<string>();
      for await (const task of this.table.listEntities<TaskEntity>({
        queryOptions: { filter: OPEN_FILTER, select: ['PartitionKey', 'targetVersion'] },
      })) {
        jobs.add(`${task.partitionKey}\n${String(task.targetVersion).toLowerCase()}`);
      }
      const result: RotationJob[] = [];
      for (const id of jobs) {
        const [partitionKey = '', version = ''] = id.split('\n');
        const job = await this.getIfPresent<JobEntity>(partitionKey, `job|${version}`);
        if (job) result.push(toJob(job));
      }
      return result.sort((a, b) => b.openedAt.getTime() - a.openedAt.getTime());
    });
  }

  async jobsOf(key: KeyName): Promise<RotationJob[]> {
    await this.ensureTable();
    return guard('the jobs table', async () => {
      const jobs: RotationJob[] = [];
      for await (const e of this.table.listEntities<JobEntity>({
        queryOptions: {
          filter: `PartitionKey eq ${quote(partitionFor(key))} and RowKey ge 'job|' and RowKey lt 'job|~'`,
        },
      })) {
        jobs.push(toJob(e));
      }
      return jobs.sort((a, b) => b.openedAt.getTime() - a.openedAt.getTime());
    });
  }

  private async listTasks(job: RotationJob): Promise<HubTask[]> {
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

  private async getIfPresent<T extends object>(
    partitionKey: string,
    rowKey: string,
  ): Promise<TableEntityResult<T> | undefined> {
    try {
      return await this.table.getEntity<T>(partitionKey, rowKey);
    } catch (error) {
      if (isStatus(error, 404)) return undefined;
      throw error;
    }
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
  const date = (v: Date | string | undefined) => (v ? new Date(v) : undefined);
  const optional = <K extends string, V>(key: K, value: V | undefined) =>
    (value === undefined || value === null || value === '' ? {} : { [key]: value }) as Partial<Record<K, V>>;
  return {
    hubId: e.hubId,
    hubName: e.hubName,
    state: e.state as HubTask['state'],
    step: Number(e.step ?? 0),
    attempts: Number(e.attempts ?? 0),
    from: JSON.parse(e.from || '[]') as string[],
    ...optional('leaseUntil', date(e.leaseUntil)),
    ...optional('notBefore', date(e.notBefore)),
    ...optional('waiting', e.waiting as HubTask['waiting']),
    ...optional('operationUrl', e.operationUrl),
    ...optional('updateStartedAt', date(e.updateStartedAt)),
    ...optional('finishedAt', date(e.finishedAt)),
    ...optional('recorded', e.recorded),
    ...optional('durationMs', e.durationMs === undefined ? undefined : Number(e.durationMs)),
    ...optional('errorCode', e.errorCode),
    ...optional('reason', e.reason),
    ...optional('updatedAt', date(e.timestamp)),
    ...optional('etag', e.etag),
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
    ...(e.planned ? { planned: true } : {}),
  };
}
