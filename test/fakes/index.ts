// Hand-written in-memory fakes of the domain's ports, for testing decisions without any I/O.
import { randomBytes } from 'node:crypto';
import {
  EtagConflictError,
  KeyNotFoundError,
  UpstreamRejectedError,
  UpstreamUnavailableError,
} from '../../src/domain/errors';
import { keyUrl } from '../../src/domain/keyId';
import type { KeyName } from '../../src/domain/keyId';
import type {
  AuditLog,
  AuditPage,
  AuditRecord,
  HubDocument,
  HubRepository,
  HubTask,
  JobStore,
  JsonObject,
  KeyVault,
  KeyVersionDetails,
  KeyVersionSummary,
  Logger,
  NewKeyVersionSpec,
  Outcome,
  OutcomePublisher,
  Revocation,
  RevocationLedger,
  RotationJob,
  HubStepMessage,
  HubUpdateStarted,
  OperationState,
  RotationPolicy,
  StepQueue,
  StepReceipt,
} from '../../src/domain/ports';
import type { BucketState, BucketStore } from '../../src/adapters/armBudget';

export class FakeClock {
  constructor(public current = new Date('2026-06-01T00:00:00Z')) {}
  now = () => new Date(this.current.getTime());
  advance(ms: number) {
    this.current = new Date(this.current.getTime() + ms);
  }
}

export class FakeKeyVault implements KeyVault {
  readonly versions = new Map<string, KeyVersionDetails[]>();
  /** Rotation policies by key URL. */
  readonly policies = new Map<string, RotationPolicy>();
  created: KeyVersionDetails[] = [];
  /** Every enable/disable, in order. */
  readonly enabledChanges: { version: string; enabled: boolean }[] = [];
  /** Called inside createVersion before it returns: lets a test interleave work with a creation in flight. */
  onCreate?: () => Promise<void>;

  constructor(private readonly clock: FakeClock) {}

  addVersion(key: KeyName, overrides: Partial<KeyVersionDetails> = {}): KeyVersionDetails {
    const version = overrides.version ?? randomBytes(16).toString('hex');
    const list = this.versions.get(keyUrl(key)) ?? [];
    const v: KeyVersionDetails = {
      ...key,
      version,
      id: `${keyUrl(key)}/${version}`,
      enabled: true,
      // Each version a second after the previous one, so creation order is the order of addVersion calls.
      createdOn: new Date(this.clock.now().getTime() - 86_400_000 + list.length * 1000),
      keyType: 'RSA',
      keySize: 2048,
      keyOps: ['wrapKey', 'unwrapKey', 'encrypt', 'decrypt'],
      tags: {},
      ...overrides,
    };
    this.versions.set(keyUrl(key), [...list, v]);
    return v;
  }

  listVersions(key: KeyName): Promise<KeyVersionSummary[]> {
    const list = this.versions.get(keyUrl(key));
    if (!list?.length) return Promise.reject(new KeyNotFoundError(`key ${keyUrl(key)}`));
    return Promise.resolve(list.map((v) => ({ ...v })));
  }

  getVersion(key: KeyName, version?: string): Promise<KeyVersionDetails> {
    const list = this.versions.get(keyUrl(key)) ?? [];
    const found = version
      ? list.find((v) => v.version === version)
      : [...list].sort((a, b) => b.createdOn.getTime() - a.createdOn.getTime())[0];
    return found
      ? Promise.resolve({ ...found })
      : Promise.reject(new KeyNotFoundError(`key ${keyUrl(key)}/${version}`));
  }

  getRotationPolicy(key: KeyName): Promise<RotationPolicy | undefined> {
    const policy = this.policies.get(keyUrl(key));
    return Promise.resolve(policy && { ...policy });
  }

  /** The port's earlier shape (the policy's expiry only), kept while callers move to getRotationPolicy. */
  getPolicyExpiry(key: KeyName): Promise<string | undefined> {
    return Promise.resolve(this.policies.get(keyUrl(key))?.expiresIn);
  }

  listKeys(vaultUrl: string): Promise<KeyName[]> {
    const first = [...this.versions.values()].map((list) => list[0]);
    return Promise.resolve(first.flatMap((v) => (v?.vaultUrl === vaultUrl ? [{ vaultUrl, name: v.name }] : [])));
  }

  async createVersion(key: KeyName, spec: NewKeyVersionSpec): Promise<KeyVersionDetails> {
    const list = this.versions.get(keyUrl(key)) ?? [];
    const latest = Math.max(...list.map((v) => v.createdOn.getTime()), this.clock.now().getTime());
    const v = this.addVersion(key, {
      createdOn: new Date(latest + 1000),
      keyType: spec.keyType,
      keySize: spec.keySize,
      keyOps: spec.keyOps,
      expiresOn: spec.expiresOn,
      tags: spec.tags,
    });
    this.created.push(v);
    await this.onCreate?.();
    return v;
  }

  setEnabled(key: KeyName, version: string, enabled: boolean): Promise<void> {
    const found = (this.versions.get(keyUrl(key)) ?? []).find((v) => v.version === version);
    if (!found) return Promise.reject(new KeyNotFoundError(`key ${keyUrl(key)}/${version}`));
    found.enabled = enabled;
    this.enabledChanges.push({ version, enabled });
    return Promise.resolve();
  }
}

/** The revocation ledger in memory: each key's last revocation. */
export class FakeRevocations implements RevocationLedger {
  readonly byKey = new Map<string, Revocation>();

  record(revocation: Revocation): Promise<void> {
    this.byKey.set(keyUrl(revocation.key), structuredClone(revocation));
    return Promise.resolve();
  }

  last(key: KeyName): Promise<Revocation | undefined> {
    const found = this.byKey.get(keyUrl(key));
    return Promise.resolve(found && structuredClone(found));
  }
}

export function hubBody(id: string, keyIdentifier: string, extra: JsonObject = {}): JsonObject {
  return {
    id,
    name: id.split('/').pop(),
    type: 'Microsoft.Devices/IotHubs',
    location: 'westeurope',
    tags: { team: 'iot' },
    sku: { name: 'S1', capacity: 1 },
    identity: { type: 'UserAssigned', userAssignedIdentities: { '/subscriptions/s/rg/id': {} } },
    properties: {
      encryption: {
        keySource: 'Microsoft.KeyVault',
        keyVaultProperties: [{ keyIdentifier, identity: { userAssignedIdentity: '/subscriptions/s/rg/id' } }],
      },
      ipFilterRules: [{ filterName: 'office', action: 'Accept', ipMask: '10.0.0.0/8' }],
      futurePreviewField: { nested: [1, 2, 3] },
    },
    ...extra,
  };
}

type HubFault = (hub: HubDocument, body: JsonObject) => Error | undefined;

/**
 * ARM's IoT hubs in memory, with long-running updates: an accepted PUT shows the new body as `Updating` until the
 * fake clock passes `updateMs`; its operation then reports Succeeded (or Failed, rolling the hub back, when queued
 * in `failNextOperations`).
 */
export class FakeHubs implements HubRepository {
  readonly hubs = new Map<string, { etag: string; body: JsonObject }>();
  readonly puts: { hubId: string; ifMatch: string | undefined; body: JsonObject }[] = [];
  readonly gets: string[] = [];
  readonly operations = new Map<string, { hubId: string; doneAt: number; previous: JsonObject; fail?: string }>();
  /** Consulted on each PUT; returning an error makes that call fail with it. */
  faults: HubFault[] = [];
  /** Consulted on each GET and operation look; returning an error makes that call fail with it. */
  readFaults: ((hubId: string) => Error | undefined)[] = [];
  /** Simulates ARM's typed-client trap: report success but keep the old key. */
  ignoreKeyChangeFor = new Set<string>();
  /** Operations to fail next, with ARM's error text. */
  failNextOperations: string[] = [];
  updateMs = 60_000;
  /** Update durations of particular hubs (else `updateMs`). */
  readonly updateMsByHub = new Map<string, number>();
  retryAfterMs: number | undefined = 10_000;
  /** Every look at an operation: which hub's, and when (fake clock, epoch ms). */
  readonly looks: { hubId: string; at: number }[] = [];
  /** Calls of listAll (each a listing of every subscription's hubs). */
  listings = 0;
  private etags = 0;

  constructor(private readonly clock: { now(): Date }) {}

  add(id: string, keyIdentifier: string, extra: JsonObject = {}): string {
    this.hubs.set(id, { etag: this.nextEtag(), body: hubBody(id, keyIdentifier, extra) });
    return id;
  }

  /** Someone else writes the hub (its etag changes). */
  touch(id: string): void {
    const hub = this.hubs.get(id);
    if (hub) hub.etag = this.nextEtag();
  }

  listAll(): Promise<HubDocument[]> {
    this.settle();
    this.listings++;
    return Promise.resolve([...this.hubs.keys()].map((id) => this.doc(id)));
  }

  get(hubId: string): Promise<HubDocument> {
    this.settle();
    this.gets.push(hubId);
    for (const fault of this.readFaults) {
      const error = fault(hubId);
      if (error) return Promise.reject(error);
    }
    if (!this.hubs.has(hubId)) {
      return Promise.reject(new UpstreamRejectedError('UPSTREAM_REJECTED', `hub ${hubId} not found`));
    }
    return Promise.resolve(this.doc(hubId));
  }

  beginReplace(hub: HubDocument, body: JsonObject): Promise<HubUpdateStarted> {
    this.settle();
    this.puts.push({ hubId: hub.id, ifMatch: hub.etag, body: structuredClone(body) });
    for (const fault of this.faults) {
      const error = fault(hub, body);
      if (error) return Promise.reject(error);
    }
    const stored = this.hubs.get(hub.id);
    if (!stored) return Promise.reject(new UpstreamRejectedError('UPSTREAM_REJECTED', 'gone'));
    if (hub.etag !== stored.etag) return Promise.reject(new EtagConflictError(hub.id));
    const previous = structuredClone(stored.body);
    const next = this.ignoreKeyChangeFor.has(hub.id) ? structuredClone(stored.body) : structuredClone(body);
    (next.properties as JsonObject).provisioningState = 'Updating';
    stored.body = next;
    stored.etag = this.nextEtag();
    const operationUrl = `https://management.azure.com/operations/${this.puts.length}`;
    const fail = this.failNextOperations.shift();
    this.operations.set(operationUrl, {
      hubId: hub.id,
      doneAt: this.clock.now().getTime() + (this.updateMsByHub.get(hub.id) ?? this.updateMs),
      previous,
      ...(fail ? { fail } : {}),
    });
    return Promise.resolve({
      operationUrl,
      ...(this.retryAfterMs !== undefined ? { retryAfterMs: this.retryAfterMs } : {}),
    });
  }

  operationState(operationUrl: string): Promise<OperationState> {
    this.settle();
    const operation = this.operations.get(operationUrl);
    if (!operation) return Promise.reject(new UpstreamRejectedError('UPSTREAM_REJECTED', 'no such operation'));
    this.looks.push({ hubId: operation.hubId, at: this.clock.now().getTime() });
    for (const fault of this.readFaults) {
      const error = fault(operation.hubId);
      if (error) return Promise.reject(error);
    }
    if (operation.doneAt > this.clock.now().getTime()) {
      return Promise.resolve({
        status: 'running',
        ...(this.retryAfterMs !== undefined ? { retryAfterMs: this.retryAfterMs } : {}),
      });
    }
    return Promise.resolve(operation.fail ? { status: 'failed', error: operation.fail } : { status: 'succeeded' });
  }

  /** PUTs ARM accepted for a hub (each started an operation); rejected ones (412, faults) are not counted. */
  acceptedPuts(id: string): number {
    return [...this.operations.values()].filter((o) => o.hubId === id).length;
  }

  keyOf(id: string): string | undefined {
    const props = this.hubs.get(id)?.body.properties as
      { encryption?: { keyVaultProperties?: { keyIdentifier?: string }[] } } | undefined;
    return props?.encryption?.keyVaultProperties?.[0]?.keyIdentifier;
  }

  provisioningState(id: string): unknown {
    this.settle();
    return (this.hubs.get(id)?.body.properties as JsonObject | undefined)?.provisioningState;
  }

  /** Operations whose time has come end: the hub settles (or rolls back). */
  private settle(): void {
    const now = this.clock.now().getTime();
    for (const operation of this.operations.values()) {
      const stored = this.hubs.get(operation.hubId);
      const properties = stored?.body.properties as JsonObject | undefined;
      if (!stored || !properties || operation.doneAt > now || properties.provisioningState !== 'Updating') continue;
      if (operation.fail) stored.body = structuredClone(operation.previous);
      (stored.body.properties as JsonObject).provisioningState = 'Succeeded';
      stored.etag = this.nextEtag();
    }
  }

  private doc(id: string): HubDocument {
    const stored = this.hubs.get(id)!;
    return { id, name: id.split('/').pop() ?? id, etag: stored.etag, body: structuredClone(stored.body) };
  }

  private nextEtag(): string {
    return `"etag-${++this.etags}"`;
  }
}

export const transientHubFault =
  (hubId: string, times = Infinity): HubFault =>
  (hub) =>
    hub.id === hubId && times-- > 0
      ? new UpstreamUnavailableError(`hub ${hubId} is unavailable (HTTP 503)`)
      : undefined;

export const permanentHubFault =
  (hubId: string): HubFault =>
  (hub) =>
    hub.id === hubId
      ? new UpstreamRejectedError('HUB_UPDATE_FAILED', `ARM reported the update of hub ${hubId} as failed.`)
      : undefined;

/**
 * The audit log in memory. Like the table adapter, an append upserts: a record with the id and time of one already
 * stored (repeated after a crash) replaces it.
 */
export class FakeAudit implements AuditLog {
  records: AuditRecord[] = [];
  /** Appends that reached the log (upserts included). */
  appends = 0;
  /** Consulted on each append; returning an error makes that call fail with it (nothing is stored). */
  faults: ((records: AuditRecord[]) => Error | undefined)[] = [];
  append(records: AuditRecord[]): Promise<void> {
    for (const fault of this.faults) {
      const error = fault(records);
      if (error) return Promise.reject(error);
    }
    this.appends++;
    for (const record of records) {
      const same = this.records.findIndex((r) => r.id === record.id && r.time.getTime() === record.time.getTime());
      if (same >= 0) this.records[same] = { ...record };
      else this.records.push({ ...record });
    }
    return Promise.resolve();
  }
  list(key: KeyName, limit: number): Promise<AuditPage> {
    const mine = this.records.filter((r) => r.keyId.toLowerCase() === keyUrl(key).toLowerCase()).reverse();
    return Promise.resolve({ records: mine.slice(0, limit) });
  }
}

export class FakeOutcomes implements OutcomePublisher {
  sent: Outcome[] = [];
  publish(outcomes: Outcome[]): Promise<void> {
    this.sent.push(...outcomes);
    return Promise.resolve();
  }
}

export class MemoryLogger implements Logger {
  lines: { level: string; event: string; fields: JsonObject }[] = [];
  info = (event: string, fields: JsonObject = {}) => void this.lines.push({ level: 'info', event, fields });
  warn = (event: string, fields: JsonObject = {}) => void this.lines.push({ level: 'warn', event, fields });
  error = (event: string, fields: JsonObject = {}) => void this.lines.push({ level: 'error', event, fields });
}

export class FakeJobs implements JobStore {
  readonly jobs = new Map<string, { job: RotationJob; tasks: Map<string, HubTask> }>();
  /** Every accepted task write, in order. */
  writes: HubTask[] = [];
  private version = 0;

  constructor(private readonly clock: { now(): Date }) {}

  private id(key: KeyName, targetVersion: string) {
    return `${keyUrl(key).toLowerCase()}|${targetVersion.toLowerCase()}`;
  }

  open(
    job: RotationJob,
    hubs: Pick<HubTask, 'hubId' | 'hubName' | 'from'>[],
  ): Promise<{ tasks: HubTask[]; added: string[] }> {
    const id = this.id(job.key, job.targetVersion);
    const entry = this.jobs.get(id) ?? { job, tasks: new Map<string, HubTask>() };
    this.jobs.set(id, entry);
    const added: string[] = [];
    for (const h of hubs) {
      if (entry.tasks.has(h.hubId)) continue;
      entry.tasks.set(h.hubId, this.stamp({ ...h, state: 'pending', step: 0, attempts: 0 }));
      added.push(h.hubId);
    }
    return Promise.resolve({ tasks: [...entry.tasks.values()].map((t) => ({ ...t })), added });
  }

  markPlanned(job: RotationJob): Promise<void> {
    const entry = this.jobs.get(this.id(job.key, job.targetVersion));
    if (entry) entry.job = { ...entry.job, planned: true };
    return Promise.resolve();
  }

  find(key: KeyName, targetVersion: string): Promise<RotationJob | undefined> {
    return Promise.resolve(this.jobs.get(this.id(key, targetVersion))?.job);
  }

  tasks(job: RotationJob): Promise<HubTask[]> {
    const tasks = this.jobs.get(this.id(job.key, job.targetVersion))?.tasks;
    return Promise.resolve([...(tasks?.values() ?? [])].map((t) => ({ ...t })));
  }

  tasksOf(job: RotationJob, hubIds: readonly string[]): Promise<HubTask[]> {
    const tasks = this.jobs.get(this.id(job.key, job.targetVersion))?.tasks;
    return Promise.resolve(
      [...new Set(hubIds)].flatMap((id) => {
        const task = tasks?.get(id);
        return task ? [{ ...task }] : [];
      }),
    );
  }

  update(job: RotationJob, task: HubTask): Promise<HubTask | undefined> {
    const tasks = this.jobs.get(this.id(job.key, job.targetVersion))?.tasks;
    const stored = tasks?.get(task.hubId);
    if (!tasks || !stored || stored.etag !== task.etag) return Promise.resolve(undefined);
    const next = this.stamp({ ...task });
    tasks.set(task.hubId, next);
    this.writes.push({ ...next });
    return Promise.resolve({ ...next });
  }

  unfinished(): Promise<RotationJob[]> {
    return Promise.resolve(
      [...this.jobs.values()]
        .filter((j) => [...j.tasks.values()].some((t) => t.state === 'pending' || t.state === 'updating'))
        .map((j) => j.job),
    );
  }

  jobsOf(key: KeyName): Promise<RotationJob[]> {
    return Promise.resolve(
      [...this.jobs.values()]
        .filter((j) => keyUrl(j.job.key).toLowerCase() === keyUrl(key).toLowerCase())
        .map((j) => j.job),
    );
  }

  /** The stored task of a hub (any job), for assertions. */
  taskOf(hubId: string): HubTask | undefined {
    for (const j of this.jobs.values()) if (j.tasks.has(hubId)) return j.tasks.get(hubId);
    return undefined;
  }

  private stamp(task: HubTask): HubTask {
    return { ...task, etag: `w/${++this.version}`, updatedAt: this.clock.now() };
  }
}

/** The step queue in memory; messages become visible on the fake clock. */
export class FakeStepQueue implements StepQueue {
  messages: { id: string; message: HubStepMessage; visibleAt: number }[] = [];
  sent = 0;
  private ids = 0;

  constructor(private readonly clock: FakeClock) {}

  send(messages: HubStepMessage[], delayMs: number): Promise<StepReceipt[]> {
    const visibleAt = this.clock.now().getTime() + delayMs;
    const receipts: StepReceipt[] = [];
    for (const message of messages) {
      const id = `m${++this.ids}`;
      this.messages.push({ id, message: structuredClone(message), visibleAt });
      receipts.push({ messageId: id, popReceipt: id });
    }
    this.sent += messages.length;
    return Promise.resolve(receipts);
  }

  reschedule(receipt: StepReceipt, message: HubStepMessage, delayMs: number): Promise<boolean> {
    const queued = this.messages.find((m) => m.id === receipt.messageId);
    if (!queued) return Promise.resolve(false);
    Object.assign(queued, { message: structuredClone(message), visibleAt: this.clock.now().getTime() + delayMs });
    return Promise.resolve(true);
  }

  cancel(receipt: StepReceipt): Promise<void> {
    this.messages = this.messages.filter((m) => m.id !== receipt.messageId);
    return Promise.resolve();
  }

  /** Takes the messages visible now (as a queue trigger would). */
  takeDue(): HubStepMessage[] {
    const now = this.clock.now().getTime();
    const due = this.messages.filter((m) => m.visibleAt <= now);
    this.messages = this.messages.filter((m) => m.visibleAt > now);
    return due.map((m) => m.message);
  }

  /** Every hub of every queued message, with its message's id and when that message becomes visible. */
  queuedHubs(): { id: string; hubId: string; step: number; visibleAt: number }[] {
    return this.messages.flatMap((m) => m.message.hubs.map((h) => ({ id: m.id, ...h, visibleAt: m.visibleAt })));
  }

  nextVisibleAt(): number | undefined {
    return this.messages.length ? Math.min(...this.messages.map((m) => m.visibleAt)) : undefined;
  }

  /**
   * Like `drain`, but the messages due at once are handled concurrently, dealt in turn to `handlers` (instances of
   * the app working one queue). With `duplicate`, every message is delivered twice (at-least-once delivery), the
   * copies to different handlers.
   */
  async drainConcurrently(
    handlers: ((message: HubStepMessage) => Promise<void>)[],
    options: { duplicate?: boolean; maxMessages?: number } = {},
  ): Promise<number> {
    let handled = 0;
    const max = options.maxMessages ?? 10_000;
    while (handled < max) {
      let due = this.takeDue();
      if (!due.length) {
        const next = this.nextVisibleAt();
        if (next === undefined) break;
        this.clock.advance(Math.max(0, next - this.clock.now().getTime()));
        continue;
      }
      if (options.duplicate) due = due.flatMap((m) => [m, { ...m }]);
      await Promise.all(due.map((m, i) => handlers[i % handlers.length]!(m)));
      handled += due.length;
    }
    return handled;
  }

  /**
   * Runs `handle` on every message as it comes due, moving the clock to the next message when none is due, until
   * the queue is empty (or `until` holds). Returns how many messages were handled.
   */
  async drain(
    handle: (message: HubStepMessage) => Promise<void>,
    options: { until?: () => boolean; maxMessages?: number } = {},
  ): Promise<number> {
    let handled = 0;
    const max = options.maxMessages ?? 10_000;
    while (handled < max && !options.until?.()) {
      const due = this.takeDue();
      if (!due.length) {
        const next = this.nextVisibleAt();
        if (next === undefined) break;
        this.clock.advance(Math.max(0, next - this.clock.now().getTime()));
        continue;
      }
      for (const message of due) {
        await handle(message);
        handled++;
      }
    }
    return handled;
  }
}

/**
 * ARM budget buckets in memory with Table Storage's conditional writes: a write names the ETag it read (or none, to
 * create) and is refused when the row changed since (or exists). `beforeWrite` runs before each write is decided:
 * a test can change the row there, as another instance would.
 */
export class MemoryBucketStore implements BucketStore {
  readonly rows = new Map<string, { state: BucketState; etag: string }>();
  reads = 0;
  writes = 0;
  refused = 0;
  beforeWrite?: (id: string) => void;
  private etags = 0;

  read(id: string): Promise<{ state: BucketState; etag: string } | undefined> {
    this.reads++;
    const row = this.rows.get(id);
    return Promise.resolve(row && { state: { ...row.state }, etag: row.etag });
  }

  write(id: string, state: BucketState, etag: string | undefined): Promise<string | undefined> {
    this.writes++;
    this.beforeWrite?.(id);
    const row = this.rows.get(id);
    if (etag === undefined ? row !== undefined : row?.etag !== etag) {
      this.refused++;
      return Promise.resolve(undefined);
    }
    const next = `"b${++this.etags}"`;
    this.rows.set(id, { state: { ...state }, etag: next });
    return Promise.resolve(next);
  }

  /** Sets a row as another instance would have written it. */
  put(id: string, state: BucketState): void {
    this.rows.set(id, { state: { ...state }, etag: `"b${++this.etags}"` });
  }
}
