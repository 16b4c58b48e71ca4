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
  tags?: Record<string, string>;
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

export interface RotationPolicy {
  /** `expiryTime`: how long a new version is valid. */
  expiresIn?: string;
  /** The Notify action's `timeBeforeExpiry`: when Key Vault raises KeyNearExpiry. */
  notifyBeforeExpiry?: string;
  /** When the policy was set; Key Vault answers keys without one with a default policy that has no such date. */
  createdOn?: Date;
}

export interface KeyVault {
  /** Every version's properties (order unspecified). Throws KeyNotFoundError when the key does not exist. */
  listVersions(key: KeyName): Promise<KeyVersionSummary[]>;
  /** One version with its key material's type, size and permitted operations; the latest when `version` is omitted. */
  getVersion(key: KeyName, version?: string): Promise<KeyVersionDetails>;
  /** The key's rotation policy (ISO 8601 durations), or undefined when the key has none. */
  getRotationPolicy(key: KeyName): Promise<RotationPolicy | undefined>;
  createVersion(key: KeyName, spec: NewKeyVersionSpec): Promise<KeyVersionDetails>;
  /** The names of the vault's keys (`vaultUrl` as in KeyName). */
  listKeys(vaultUrl: string): Promise<KeyName[]>;
  /** Enables or disables one version (its other attributes stay); never deletes. */
  setEnabled(key: KeyName, version: string, enabled: boolean): Promise<void>;
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

/** Where a hub update stands once ARM accepted it. */
export interface HubUpdateStarted {
  /** `Azure-AsyncOperation` (or `Location`) to poll; absent when ARM gave none (then the hub itself is polled). */
  operationUrl?: string;
  /** ARM's Retry-After for the first poll. */
  retryAfterMs?: number;
}

export type OperationState =
  { status: 'running'; retryAfterMs?: number } | { status: 'succeeded' } | { status: 'failed'; error?: string };

export interface HubRepository {
  /** Every hub in the configured subscriptions. */
  listAll(): Promise<HubDocument[]>;
  get(hubId: string): Promise<HubDocument>;
  /**
   * Sends the hub's new body (PUT with If-Match: etag) and returns once ARM accepted it, without waiting for the
   * long-running operation. Throws EtagConflictError on 412, ThrottledError on 429/503.
   */
  beginReplace(hub: HubDocument, body: JsonObject): Promise<HubUpdateStarted>;
  /** One look at a long-running operation (one ARM read). */
  operationState(operationUrl: string): Promise<OperationState>;
}

export type AuditResult =
  | 'rotated'
  | 'moved'
  | 'already-current'
  | 'skipped'
  | 'retrying'
  | 'failed'
  | 'refused'
  | 'ignored'
  | 'drift'
  | 'retired'
  | 'revoked'
  | 'restored';

export type Trigger =
  'event' | 'manual-rotate' | 'manual-sync' | 'reconcile' | 'manual-retire' | 'manual-revoke' | 'manual-restore';

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
  | 'CmkRotator.DriftDetected'
  | 'CmkRotator.VersionUnusable'
  | 'CmkRotator.VersionRetired'
  | 'CmkRotator.KeyRevoked'
  | 'CmkRotator.KeyRestored';

export interface Outcome {
  /** Stable id for an outcome that may be sent again (a retried step), so consumers can drop the repeat. */
  id?: string;
  type: OutcomeType;
  /** What it is about: the hub's resource id, or the key identifier. */
  subject: string;
  data: JsonObject;
}

export interface OutcomePublisher {
  publish(outcomes: Outcome[]): Promise<void>;
}

/** The last revocation of a key: which versions it disabled, so a restore re-enables exactly those. */
export interface Revocation {
  key: KeyName;
  /** The versions this revocation disabled (versions that were disabled already are not listed). */
  versions: string[];
  /** The version the operator named, when the revocation was of one version. */
  version?: string;
  revokedAt: Date;
  correlationId: string;
  /** Set by the restore that re-enabled the versions; until then the key is left out of automatic rotation. */
  restoredAt?: Date;
}

export interface RevocationLedger {
  /** Replaces the key's last revocation. */
  record(revocation: Revocation): Promise<void>;
  /** The key's last revocation, restored or not; undefined when it was never revoked. */
  last(key: KeyName): Promise<Revocation | undefined>;
}

/**
 * A hub's part in a rotation job. `pending`: nothing sent yet (or to be read and written again); `updating`: ARM
 * accepted our PUT and the operation runs; the rest are final.
 */
export type HubTaskState = 'pending' | 'updating' | 'moved' | 'already-current' | 'skipped' | 'failed';

/** Why a task that is not final is not being worked on right now. */
export type HubTaskWait = 'queued' | 'operation' | 'throttled' | 'backoff';

export interface HubTask {
  hubId: string;
  hubName: string;
  state: HubTaskState;
  /**
   * The task's step counter. Each step message names the step it is for; a message for another step is a duplicate
   * or was overtaken and does nothing.
   */
  step: number;
  /** Transient failures so far (throttling excluded: ARM asked us to wait, nothing failed). */
  attempts: number;
  /** The hub's identifiers for the key when the job was opened. */
  from: string[];
  /** An invocation is working on this step until then; after it (a crash), the step's watchdog message takes over. */
  leaseUntil?: Date;
  /** Not to be worked on before (ARM's Retry-After, or a backoff). */
  notBefore?: Date;
  waiting?: HubTaskWait;
  /** The long-running operation of our accepted PUT (a step sets it to undefined to forget a rolled-back PUT). */
  operationUrl?: string | undefined;
  /** When our PUT was accepted, for the move's duration (undefined again once that PUT is forgotten). */
  updateStartedAt?: Date | undefined;
  /** When the task reached its final state; its audit record and outcome carry this time. */
  finishedAt?: Date;
  /** The final state's audit record and outcome are out (they are sent before this flag, and idempotent). */
  recorded?: boolean;
  durationMs?: number;
  errorCode?: string;
  reason?: string;
  /** When the ledger last changed the task (storage time). */
  updatedAt?: Date;
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
  /** Every hub's task exists and its first step is queued: a repeat of the event that opened it has nothing to add. */
  planned?: boolean;
}

export interface JobStore {
  /** Opens the job (or joins the one already open) and adds hubs it does not list yet; returns every task. */
  open(
    job: RotationJob,
    hubs: Pick<HubTask, 'hubId' | 'hubName' | 'from'>[],
  ): Promise<{ tasks: HubTask[]; added: string[] }>;
  /** Notes that every task of the job exists and its first step is queued. */
  markPlanned(job: RotationJob): Promise<void>;
  /** The job as recorded, undefined when it was never opened. */
  find(key: KeyName, targetVersion: string): Promise<RotationJob | undefined>;
  tasks(job: RotationJob): Promise<HubTask[]>;
  /** The tasks of these hubs (a hub the job does not list is left out). */
  tasksOf(job: RotationJob, hubIds: readonly string[]): Promise<HubTask[]>;
  /**
   * Writes the task if nobody changed it since it was read (its ETag); resolves with the new version of the task,
   * or undefined when another invocation changed it first (or it is gone).
   */
  update(job: RotationJob, task: HubTask): Promise<HubTask | undefined>;
  /** Jobs that still have tasks that are not final (for the reconciler), newest first. */
  unfinished(): Promise<RotationJob[]>;
  /** The jobs of a key, newest first. */
  jobsOf(key: KeyName): Promise<RotationJob[]>;
}

/**
 * The message that makes hubs of one job take their next step: each hub names the step it is for. Hubs travel in
 * groups so that a fleet costs the queue (and the ledger, whose reads and writes are grouped too) a fraction of one
 * message per hub and step.
 */
export interface HubStepMessage {
  key: KeyName;
  targetVersion: string;
  hubs: { hubId: string; step: number }[];
}

/** A message on the queue, as its sender may change it: opaque to the domain. */
export interface StepReceipt {
  messageId: string;
  popReceipt: string;
}

export interface StepQueue {
  /** Enqueues the messages, each visible after `delayMs`. */
  send(messages: HubStepMessage[], delayMs: number): Promise<StepReceipt[]>;
  /** Makes a message this instance sent visible after `delayMs` instead; false when it is no longer there to change. */
  reschedule(receipt: StepReceipt, message: HubStepMessage, delayMs: number): Promise<boolean>;
  /** Removes a message this instance sent (best effort). */
  cancel(receipt: StepReceipt): Promise<void>;
}

/** What the holder of a key's lease may ask while it works. */
export interface HeldLease {
  /** Throws BusyError once the lease can no longer be relied on (a renewal failed, or it ran out). */
  assertHeld(): void;
}

/** Mutual exclusion per key, so two deliveries of one event cannot both create a version. */
export interface KeyLock {
  runExclusive<T>(key: KeyName, work: (lease: HeldLease) => Promise<T>): Promise<T>;
}

export interface Logger {
  info(event: string, fields?: JsonObject): void;
  warn(event: string, fields?: JsonObject): void;
  error(event: string, fields?: JsonObject): void;
}

export interface Clock {
  now(): Date;
}
