// The small interfaces the domain needs from the outside world; adapters in src/adapters implement them.
import type { ErrorCode } from './errors';
import type { KeyName } from './keyId';

export interface KeyVersionSummary extends KeyName {
  /** Full versioned identifier, as a hub references it. */
  id: string;
  version: string;
  enabled: boolean;
  /** Creation time; Key Vault keeps whole seconds, so versions made in one second tie on it. */
  createdOn: Date;
  /** Key Vault's current version (what GET /keys/{name} returns): breaks ties in creation time. */
  latest?: boolean;
  notBefore?: Date;
  expiresOn?: Date;
}

export interface KeyVersionDetails extends KeyVersionSummary {
  keyType: string;
  /** RSA modulus size in bits, when the key is RSA. */
  keySize?: number;
  keyOps: string[];
  tags: Record<string, string>;
}

export interface NewKeyVersionSpec {
  keyType: 'RSA' | 'RSA-HSM';
  keySize: number;
  keyOps: string[];
  expiresOn: Date;
  tags: Record<string, string>;
}

export interface KeyVault {
  /** Every version's properties (order unspecified). Throws KeyNotFoundError when the key does not exist. */
  listVersions(key: KeyName): Promise<KeyVersionSummary[]>;
  /** One version with its key material's type, size and permitted operations; the latest when `version` is omitted. */
  getVersion(key: KeyName, version?: string): Promise<KeyVersionDetails>;
  /** The rotation policy's `expiryTime` (ISO 8601 duration), if the key has a policy that sets one. */
  getPolicyExpiry(key: KeyName): Promise<string | undefined>;
  createVersion(key: KeyName, spec: NewKeyVersionSpec): Promise<KeyVersionDetails>;
}

export type JsonObject = Record<string, unknown>;

/** An IoT hub as ARM returns it (preview api-version, so `properties.encryption` is present). */
export interface HubDocument {
  /** ARM resource id. */
  id: string;
  name: string;
  etag?: string;
  /** The whole resource as read: what goes back on PUT, with only the key identifier changed. */
  body: JsonObject;
}

export interface HubRepository {
  /** Every hub in the configured subscriptions. */
  listAll(): Promise<HubDocument[]>;
  get(hubId: string): Promise<HubDocument>;
  /**
   * Replaces the hub (PUT with If-Match: etag) and waits for the long-running operation to finish.
   * Resolves with the hub as ARM reports it afterwards. Throws EtagConflictError on 412.
   */
  replace(hub: HubDocument, body: JsonObject): Promise<HubDocument>;
}

export type AuditResult =
  'rotated' | 'moved' | 'already-current' | 'skipped' | 'retrying' | 'failed' | 'refused' | 'drift';

export type Trigger = 'event' | 'manual-rotate' | 'manual-sync' | 'reconcile';

export interface AuditRecord {
  /** Unique id of this record. */
  id: string;
  time: Date;
  /** `https://<vault>/keys/<name>` of the key concerned (empty if the input named no key). */
  keyId: string;
  /** What started it: an Event Grid event, an operator request, the reconciler. */
  trigger: Trigger;
  correlationId: string;
  eventId?: string;
  eventType?: string;
  reason?: string;
  fromVersion?: string;
  toVersion?: string;
  hubId?: string;
  result: AuditResult;
  errorCode?: ErrorCode | 'INTERNAL';
  message?: string;
  durationMs?: number;
}

export interface AuditPage {
  records: AuditRecord[];
  /** Pass back to get the next (older) page; absent on the last page. */
  continuationToken?: string;
}

export interface AuditLog {
  append(records: AuditRecord[]): Promise<void>;
  /** Newest first. */
  list(key: KeyName, limit: number, continuationToken?: string): Promise<AuditPage>;
}

export type OutcomeType =
  | 'CmkRotator.KeyRotated'
  | 'CmkRotator.HubKeyUpdated'
  | 'CmkRotator.HubKeyUpdateFailed'
  | 'CmkRotator.RotationFailed'
  | 'CmkRotator.DriftDetected';

export interface Outcome {
  type: OutcomeType;
  /** What it is about: the hub's resource id, or the key identifier. */
  subject: string;
  data: JsonObject;
}

export interface OutcomePublisher {
  publish(outcomes: Outcome[]): Promise<void>;
}

/** A hub's part in a rotation job. `pending` covers both "not tried yet" and "will retry after a transient failure". */
export type HubTaskState = 'pending' | 'moved' | 'already-current' | 'skipped' | 'failed';

export interface HubTask {
  hubId: string;
  hubName: string;
  state: HubTaskState;
  /** How many times an update was tried. */
  attempts: number;
  /** The hub's identifiers for the key when the job was opened. */
  from: string[];
  /** An invocation is working on the hub until then; after it (a crash), another may take over. */
  claimedUntil?: Date;
  /** Backoff: not to be tried again before. */
  notBefore?: Date;
  errorCode?: string;
  reason?: string;
  /** Storage concurrency token. */
  etag?: string;
}

/** A rotation job: one key moving to one target version. Its identity is (key, target version). */
export interface RotationJob {
  key: KeyName;
  targetVersion: string;
  targetId: string;
  trigger: Trigger;
  correlationId: string;
  openedAt: Date;
  createdVersion?: string;
  eventId?: string;
}

export interface JobStore {
  /** Opens the job (or joins the one already open) and adds hubs it does not list yet; returns every task. */
  open(job: RotationJob, hubs: Pick<HubTask, 'hubId' | 'hubName' | 'from'>[]): Promise<HubTask[]>;
  /** Takes a task for this invocation until `until`; undefined when another invocation changed it first. */
  claim(job: RotationJob, task: HubTask, until: Date): Promise<HubTask | undefined>;
  /** Records a task's new state (only if this invocation's claim is still the latest write). */
  save(job: RotationJob, task: HubTask): Promise<void>;
  /** Jobs that still have pending tasks (for the reconciler). */
  unfinished(): Promise<RotationJob[]>;
}

/** Mutual exclusion per key, so two deliveries of one event cannot both create a version. */
export interface KeyLock {
  runExclusive<T>(key: KeyName, work: () => Promise<T>): Promise<T>;
}

export interface Logger {
  info(event: string, fields?: JsonObject): void;
  warn(event: string, fields?: JsonObject): void;
  error(event: string, fields?: JsonObject): void;
}

export interface Clock {
  now(): Date;
}
