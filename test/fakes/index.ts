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
  RotationJob,
} from '../../src/domain/ports';

export class FakeClock {
  constructor(public current = new Date('2026-06-01T00:00:00Z')) {}
  now = () => new Date(this.current.getTime());
  advance(ms: number) {
    this.current = new Date(this.current.getTime() + ms);
  }
}

export class FakeKeyVault implements KeyVault {
  readonly versions = new Map<string, KeyVersionDetails[]>();
  readonly policies = new Map<string, string>();
  created: KeyVersionDetails[] = [];
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

  getPolicyExpiry(key: KeyName): Promise<string | undefined> {
    return Promise.resolve(this.policies.get(keyUrl(key)));
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

export class FakeHubs implements HubRepository {
  readonly hubs = new Map<string, { etag: string; body: JsonObject }>();
  readonly puts: { hubId: string; ifMatch: string | undefined; body: JsonObject }[] = [];
  /** Consulted on each replace; returning an error makes that call fail with it. */
  faults: HubFault[] = [];
  /** Simulates ARM's typed-client trap: report success but keep the old key. */
  ignoreKeyChangeFor = new Set<string>();
  private etags = 0;

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
    return Promise.resolve([...this.hubs.keys()].map((id) => this.doc(id)));
  }

  get(hubId: string): Promise<HubDocument> {
    if (!this.hubs.has(hubId)) {
      return Promise.reject(new UpstreamRejectedError('UPSTREAM_REJECTED', `hub ${hubId} not found`));
    }
    return Promise.resolve(this.doc(hubId));
  }

  replace(hub: HubDocument, body: JsonObject): Promise<HubDocument> {
    this.puts.push({ hubId: hub.id, ifMatch: hub.etag, body: structuredClone(body) });
    for (const fault of this.faults) {
      const error = fault(hub, body);
      if (error) return Promise.reject(error);
    }
    const stored = this.hubs.get(hub.id);
    if (!stored) return Promise.reject(new UpstreamRejectedError('UPSTREAM_REJECTED', 'gone'));
    if (hub.etag !== stored.etag) return Promise.reject(new EtagConflictError(hub.id));
    if (!this.ignoreKeyChangeFor.has(hub.id)) stored.body = structuredClone(body);
    stored.etag = this.nextEtag();
    return Promise.resolve(this.doc(hub.id));
  }

  keyOf(id: string): string | undefined {
    const props = this.hubs.get(id)?.body.properties as
      { encryption?: { keyVaultProperties?: { keyIdentifier?: string }[] } } | undefined;
    return props?.encryption?.keyVaultProperties?.[0]?.keyIdentifier;
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

export class FakeAudit implements AuditLog {
  records: AuditRecord[] = [];
  append(records: AuditRecord[]): Promise<void> {
    this.records.push(...records);
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
  saves: HubTask[] = [];
  private version = 0;

  private id(job: RotationJob) {
    return `${keyUrl(job.key)}|${job.targetVersion}`;
  }

  open(job: RotationJob, hubs: Pick<HubTask, 'hubId' | 'hubName' | 'from'>[]): Promise<HubTask[]> {
    const entry = this.jobs.get(this.id(job)) ?? { job, tasks: new Map<string, HubTask>() };
    this.jobs.set(this.id(job), entry);
    for (const h of hubs) {
      if (!entry.tasks.has(h.hubId))
        entry.tasks.set(h.hubId, { ...h, state: 'pending', attempts: 0, etag: this.etag() });
    }
    return Promise.resolve([...entry.tasks.values()].map((t) => ({ ...t })));
  }

  claim(job: RotationJob, task: HubTask, until: Date): Promise<HubTask | undefined> {
    const stored = this.jobs.get(this.id(job))?.tasks.get(task.hubId);
    if (!stored || stored.etag !== task.etag) return Promise.resolve(undefined);
    stored.claimedUntil = until;
    stored.etag = this.etag();
    return Promise.resolve({ ...stored });
  }

  save(job: RotationJob, task: HubTask): Promise<void> {
    const tasks = this.jobs.get(this.id(job))?.tasks;
    const stored = tasks?.get(task.hubId);
    if (tasks && stored?.etag === task.etag) {
      tasks.set(task.hubId, { ...task, etag: this.etag() });
      this.saves.push(task);
    }
    return Promise.resolve();
  }

  unfinished(): Promise<RotationJob[]> {
    return Promise.resolve(
      [...this.jobs.values()].filter((j) => [...j.tasks.values()].some((t) => t.state === 'pending')).map((j) => j.job),
    );
  }

  task(hubId: string): HubTask | undefined {
    for (const j of this.jobs.values()) if (j.tasks.has(hubId)) return j.tasks.get(hubId);
    return undefined;
  }

  private etag() {
    return `w/${++this.version}`;
  }
}
