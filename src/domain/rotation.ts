// The rotation use cases: react to Key Vault events, rotate or sync on request, reconcile drift, report status
// and history. Decisions live here; every effect goes through a port.
import { randomUUID } from 'node:crypto';
import { interleaveBy, mapWithConcurrency } from './concurrency';
import {
  KeyUnusableError,
  RotatorError,
  UpstreamUnavailableError,
  VaultNotAllowedError,
  errorCode,
  isTransient,
} from './errors';
import { isIgnored, parseKeyVaultEvent } from './events';
import type { KeyVaultEvent } from './events';
import { moveHub, safeMessage } from './hubMove';
import type { HubReport } from './hubMove';
import { identifiersForKey, keyIdentifiersOf, subscriptionOf } from './hubs';
import { keyLabel, keyUrl, tryParseKeyId, versionOf } from './keyId';
import type { KeyName } from './keyId';
import { compareVersions, isLive, newVersionSpec, newestFirst, unusableReasons } from './keyPolicy';
import type {
  AuditLog,
  AuditPage,
  AuditRecord,
  Clock,
  HubDocument,
  HubRepository,
  HubTask,
  JobStore,
  KeyLock,
  KeyVault,
  KeyVersionDetails,
  KeyVersionSummary,
  Logger,
  NewKeyVersionSpec,
  Outcome,
  OutcomePublisher,
  RotationJob,
  Trigger,
} from './ports';

export interface RotationSettings {
  /** Normalised vault URLs (`https://<host>`). */
  allowedVaults: readonly string[];
  defaultKeyValidityDays: number;
  /** Hubs updated at once by one invocation. */
  hubConcurrency: number;
  /** How often one hub is re-read and re-written after a 412 within one attempt. */
  maxEtagAttempts: number;
  /** Attempts (across invocations) before a hub hitting transient failures is marked failed. */
  maxHubAttempts: number;
  /** How long an invocation owns a hub task; after that (a crash) another invocation may take it over. */
  claimTtlMs: number;
  /** Backoff before a hub's second attempt; each later one waits four times longer (see retryDelayMs). */
  firstRetryDelayMs: number;
  /** The reconciler rotates a key whose newest live version expires within this many days. */
  nearExpiryDays: number;
}

export interface RotationDependencies {
  keyVault: KeyVault;
  hubs: HubRepository;
  audit: AuditLog;
  outcomes: OutcomePublisher;
  jobs: JobStore;
  lock: KeyLock;
  clock: Clock;
  settings: RotationSettings;
}

/** Who asked, for logs and audit records. */
export interface Invocation {
  correlationId: string;
  log: Logger;
}

export type { HubReport, HubResult } from './hubMove';
export type { Trigger } from './ports';

export interface RotationReport {
  keyId: string;
  trigger: Trigger;
  dryRun: boolean;
  /** Why this was done, in words. */
  decision: string;
  /** The version created by this run. */
  createdVersion?: string;
  /** In a dry run of a rotation: the version that would be created. */
  plannedVersion?: { keyType: string; keySize: number; keyOps: string[]; expiresOn: string };
  /** The version hubs were moved to. */
  targetVersion?: string;
  hubs: HubReport[];
  status: 'succeeded' | 'in-progress' | 'partially-failed' | 'failed' | 'refused' | 'ignored';
  errorCode?: string;
  message?: string;
  correlationId: string;
}

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
}

export interface DriftFinding {
  keyId: string;
  hubId?: string;
  kind: 'hub-behind' | 'hub-on-unusable-version' | 'key-near-expiry' | 'no-usable-version';
  detail: string;
}

export interface ReconcileReport {
  correlationId: string;
  keysScanned: number;
  drift: DriftFinding[];
  rotations: RotationReport[];
  resumedJobs: number;
  failures: { keyId: string; errorCode: string; message: string }[];
}

interface RunContext {
  trigger: Trigger;
  dryRun: boolean;
  decision: string;
  eventId?: string;
  eventType?: string;
  reason?: string;
  created?: KeyVersionDetails;
}

const DAY_MS = 86_400_000;
/** How long an answer waits for hubs another invocation is moving: an operator gets a full report; Event Grid
 * must be answered before its 30 s delivery deadline (a later answer only means a redelivery, which is harmless). */
const SETTLE_WAIT_MS = { operator: 60_000, event: 25_000 };

/** Backoff before a hub's next attempt, across invocations: four times longer each time, at most an hour. */
export function retryDelayMs(attempts: number, firstDelayMs: number): number {
  return Math.min(firstDelayMs * 4 ** Math.max(0, attempts - 1), 3_600_000);
}

export class RotationService {
  constructor(private readonly deps: RotationDependencies) {}

  /** One Key Vault event. Throws only what is transient (so Event Grid redelivers); the rest is recorded. */
  async handleEvent(rawEvent: unknown, invocation: Invocation): Promise<RotationReport> {
    const started = Date.now();
    let event: KeyVaultEvent | undefined;
    try {
      const parsed = parseKeyVaultEvent(rawEvent);
      if (isIgnored(parsed)) {
        invocation.log.info('event.ignored', { eventId: parsed.id, eventType: parsed.type, reason: parsed.ignored });
        return this.emptyReport('', 'event', invocation, 'ignored', parsed.ignored);
      }
      event = parsed;
      invocation.log.info('event.received', {
        eventId: event.id,
        eventType: event.type,
        key: keyLabel(event.key),
        version: event.version,
      });
      this.assertAllowed(event.key);
      const report = await this.forEvent(event, invocation);
      // Not done until every hub is settled: redelivery finishes what is retrying or what another (possibly
      // crashed) invocation held.
      if (report.hubs.some((h) => h.result === 'retrying' || h.result === 'in-progress')) {
        throw new UpstreamUnavailableError('Some hubs are not settled yet; the event will be redelivered.');
      }
      return report;
    } catch (error) {
      const report = await this.recordFailure(error, invocation, started, {
        trigger: 'event',
        keyId: event ? keyUrl(event.key) : '',
        ...(event ? { eventId: event.id, eventType: event.type, fromVersion: event.version } : {}),
      });
      if (isTransient(error)) throw error;
      return report;
    }
  }

  /** Creates a new version now and moves every hub to it (operator request). */
  async rotate(key: KeyName, options: { dryRun: boolean; reason?: string }, invocation: Invocation) {
    return this.guarded(key, 'manual-rotate', invocation, options, async () => {
      const versions = await this.deps.keyVault.listVersions(key);
      const current = await this.deps.keyVault.getVersion(key);
      const context: RunContext = {
        trigger: 'manual-rotate',
        dryRun: options.dryRun,
        decision: options.reason ? `rotation requested: ${options.reason}` : 'rotation requested',
        ...(options.reason ? { reason: options.reason } : {}),
      };
      if (options.dryRun) {
        const spec = await this.specFor(key, current);
        return {
          ...(await this.propagate(key, versions, context, invocation, spec)),
          plannedVersion: {
            keyType: spec.keyType,
            keySize: spec.keySize,
            keyOps: spec.keyOps,
            expiresOn: spec.expiresOn.toISOString(),
          },
        };
      }
      const created = await this.deps.lock.runExclusive(key, () =>
        this.createVersion(key, current, context, invocation),
      );
      return this.propagate(key, withCreated(versions, created), { ...context, created }, invocation);
    });
  }

  /** Moves hubs to the latest usable version without creating one. */
  async sync(key: KeyName, options: { dryRun: boolean }, invocation: Invocation) {
    return this.guarded(key, 'manual-sync', invocation, options, async () => {
      const versions = await this.deps.keyVault.listVersions(key);
      const context = { trigger: 'manual-sync' as const, dryRun: options.dryRun, decision: 'sync requested' };
      return this.propagate(key, versions, context, invocation);
    });
  }

  async status(key: KeyName): Promise<KeyStatus> {
    this.assertAllowed(key);
    const now = this.deps.clock.now();
    const versions = newestFirst(await this.deps.keyVault.listVersions(key));
    const target = await this.latestUsable(key, versions).catch((e: unknown) => {
      if (e instanceof KeyUnusableError) return undefined;
      throw e;
    });
    const hubs = await this.hubsUsing(key);
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
    };
  }

  async history(key: KeyName, limit: number, continuationToken?: string): Promise<AuditPage> {
    this.assertAllowed(key);
    return this.deps.audit.list(key, limit, continuationToken);
  }

  /**
   * Finds and fixes drift: every key the hubs use (in allowed vaults) is checked for a missed near-expiry (rotate)
   * and for hubs not on the latest usable version (move); unfinished jobs are resumed. Safe to run beside event
   * handling: creation is under the key's lock and every hub task is claimed before it is worked on.
   */
  async reconcile(invocation: Invocation): Promise<ReconcileReport> {
    const report: ReconcileReport = {
      correlationId: invocation.correlationId,
      keysScanned: 0,
      drift: [],
      rotations: [],
      resumedJobs: 0,
      failures: [],
    };
    const allHubs = await this.deps.hubs.listAll();
    const keys = new Map<string, KeyName>();
    for (const hub of allHubs) {
      for (const id of keyIdentifiersOf(hub.body)) {
        const parsed = tryParseKeyId(id);
        if (typeof parsed === 'string' || !this.deps.settings.allowedVaults.includes(parsed.vaultUrl)) continue;
        keys.set(keyLabel(parsed), { vaultUrl: parsed.vaultUrl, name: parsed.name });
      }
    }
    report.keysScanned = keys.size;
    for (const key of keys.values()) {
      try {
        const rotation = await this.reconcileKey(key, allHubs, report.drift, invocation);
        if (rotation) report.rotations.push(rotation);
      } catch (error) {
        report.failures.push({ keyId: keyUrl(key), errorCode: errorCode(error), message: safeMessage(error) });
        await this.recordFailure(error, invocation, Date.now(), { trigger: 'reconcile', keyId: keyUrl(key) });
      }
    }
    for (const job of await this.deps.jobs.unfinished()) {
      if (!this.deps.settings.allowedVaults.includes(job.key.vaultUrl)) continue;
      try {
        const versions = await this.deps.keyVault.listVersions(job.key);
        const tasks = await this.deps.jobs.open(job, []);
        const context = { trigger: job.trigger, dryRun: false, decision: 'resumed by the reconciler' };
        report.rotations.push(await this.runJob(job, tasks, versions, context, invocation));
        report.resumedJobs++;
      } catch (error) {
        report.failures.push({ keyId: keyUrl(job.key), errorCode: errorCode(error), message: safeMessage(error) });
      }
    }
    if (report.drift.length) {
      await this.deps.audit.append(
        report.drift.map((d) =>
          this.record(
            invocation,
            { trigger: 'reconcile', dryRun: false, decision: '' },
            {
              keyId: d.keyId,
              result: 'drift',
              message: `${d.kind}: ${d.detail}`,
              ...(d.hubId ? { hubId: d.hubId } : {}),
            },
          ),
        ),
      );
      await this.publish(
        invocation,
        report.drift.map((d) => ({
          type: 'CmkRotator.DriftDetected',
          subject: d.hubId ?? d.keyId,
          data: { ...d, correlationId: invocation.correlationId },
        })),
      );
    }
    invocation.log.info('reconcile.done', {
      keysScanned: report.keysScanned,
      drift: report.drift.length,
      rotations: report.rotations.length,
      resumedJobs: report.resumedJobs,
      failures: report.failures.length,
    });
    return report;
  }

  // --- decisions -------------------------------------------------------------------------------------------

  private async forEvent(event: KeyVaultEvent, invocation: Invocation): Promise<RotationReport> {
    const context = { trigger: 'event' as const, dryRun: false, eventId: event.id, eventType: event.type };
    if (event.type === 'KeyNewVersionCreated') {
      const versions = await this.deps.keyVault.listVersions(event.key);
      const decision = `version ${event.version} was created`;
      return this.propagate(event.key, versions, { ...context, decision }, invocation);
    }
    const what = event.type === 'KeyExpired' ? 'expired' : 'is near expiry';
    return this.rotateUnlessNewer(
      event.key,
      event.version,
      { ...context, decision: `version ${event.version} ${what}` },
      invocation,
    );
  }

  /**
   * Creates a successor of `fromVersion` unless a newer live version exists (autorotation, a manual rotation or an
   * earlier delivery may have made one), then propagates. The check and the creation share the key's lock.
   */
  private async rotateUnlessNewer(
    key: KeyName,
    fromVersion: string,
    context: RunContext,
    invocation: Invocation,
  ): Promise<RotationReport> {
    const outcome = await this.deps.lock.runExclusive(key, async () => {
      const versions = await this.deps.keyVault.listVersions(key);
      const now = this.deps.clock.now();
      const newerLive = versions.find((v) => isLive(v, now) && compareVersions(versions, v.version, fromVersion) === 1);
      if (newerLive) return { versions, decision: `a newer version ${newerLive.version} already exists` };
      const current = await this.deps.keyVault.getVersion(key, fromVersion);
      const created = await this.createVersion(key, current, context, invocation);
      return { versions: withCreated(versions, created), created, decision: context.decision };
    });
    return this.propagate(
      key,
      outcome.versions,
      { ...context, decision: outcome.decision, ...(outcome.created ? { created: outcome.created } : {}) },
      invocation,
    );
  }

  private async reconcileKey(
    key: KeyName,
    allHubs: readonly HubDocument[],
    drift: DriftFinding[],
    invocation: Invocation,
  ): Promise<RotationReport | undefined> {
    const now = this.deps.clock.now();
    const versions = await this.deps.keyVault.listVersions(key);
    const newestLive = newestFirst(versions).find((v) => isLive(v, now));
    const horizon = new Date(now.getTime() + this.deps.settings.nearExpiryDays * DAY_MS);
    const context = { trigger: 'reconcile' as const, dryRun: false };
    if (!newestLive || (newestLive.expiresOn && newestLive.expiresOn <= horizon)) {
      const newest = newestFirst(versions)[0]!;
      drift.push({
        keyId: keyUrl(key),
        kind: newestLive ? 'key-near-expiry' : 'no-usable-version',
        detail: newestLive
          ? `version ${newestLive.version} expires ${newestLive.expiresOn!.toISOString()} and nothing newer exists`
          : 'no enabled, unexpired version exists',
      });
      const decision = 'the reconciler found a missed near-expiry';
      return this.rotateUnlessNewer(key, (newestLive ?? newest).version, { ...context, decision }, invocation);
    }
    const target = await this.latestUsable(key, versions);
    const behind: DriftFinding[] = [];
    for (const hub of allHubs) {
      for (const id of identifiersForKey(hub.body, key)) {
        const version = versionOf(id);
        if (!version || version.toLowerCase() === target.version.toLowerCase()) continue;
        const known = versions.find((v) => v.version.toLowerCase() === version.toLowerCase());
        const order = compareVersions(versions, version, target.version);
        if (order === 1) continue; // on a newer version than the usable target: left alone, never downgraded
        const unusable = !known
          ? 'missing'
          : !isLive(known, now)
            ? known.enabled
              ? 'expired or not yet valid'
              : 'disabled'
            : undefined;
        behind.push({
          keyId: keyUrl(key),
          hubId: hub.id,
          kind: unusable ? 'hub-on-unusable-version' : 'hub-behind',
          detail: unusable
            ? `the hub references version ${version}, which is ${unusable}`
            : `the hub references version ${version}; the latest usable is ${target.version}`,
        });
      }
    }
    if (!behind.length) return undefined;
    drift.push(...behind);
    return this.propagate(key, versions, { ...context, decision: 'the reconciler found hubs behind' }, invocation);
  }

  private async specFor(key: KeyName, current: KeyVersionDetails): Promise<NewKeyVersionSpec> {
    const policyExpiry = await this.deps.keyVault.getPolicyExpiry(key);
    return newVersionSpec(current, policyExpiry, this.deps.settings.defaultKeyValidityDays, this.deps.clock.now());
  }

  private async createVersion(
    key: KeyName,
    current: KeyVersionDetails,
    context: RunContext,
    invocation: Invocation,
  ): Promise<KeyVersionDetails> {
    const spec = await this.specFor(key, current);
    const started = Date.now();
    const created = await this.deps.keyVault.createVersion(key, spec);
    const fields = {
      key: keyLabel(key),
      fromVersion: current.version,
      version: created.version,
      expiresOn: spec.expiresOn.toISOString(),
    };
    invocation.log.info('key.rotated', fields);
    await this.deps.audit.append([
      this.record(invocation, context, {
        keyId: keyUrl(key),
        result: 'rotated',
        fromVersion: current.version,
        toVersion: created.version,
        durationMs: Date.now() - started,
      }),
    ]);
    await this.publish(invocation, [
      {
        type: 'CmkRotator.KeyRotated',
        subject: created.id,
        data: { ...fields, keyId: created.id, correlationId: invocation.correlationId },
      },
    ]);
    return created;
  }

  /** The newest version that passes every safety rule; throws KeyUnusableError when none does. */
  private async latestUsable(key: KeyName, versions: readonly KeyVersionSummary[]): Promise<KeyVersionDetails> {
    const now = this.deps.clock.now();
    const rejected: string[] = [];
    for (const candidate of newestFirst(versions).filter((v) => isLive(v, now))) {
      const details = await this.deps.keyVault.getVersion(key, candidate.version);
      const reasons = unusableReasons(details, now);
      if (reasons.length === 0) return details;
      rejected.push(`${candidate.version}: ${reasons.join(', ')}`);
    }
    const newest = newestFirst(versions)[0];
    throw new KeyUnusableError(
      newest ? newest.id : keyUrl(key),
      rejected.length ? rejected : ['no enabled, unexpired version exists'],
    );
  }

  /**
   * Moves every hub that uses `key` to its latest usable version (or, with `planned`, reports the moves a rotation
   * would make). A real run is a recorded job, so crashes, redeliveries and other instances neither lose nor repeat
   * a hub's update.
   */
  private async propagate(
    key: KeyName,
    versions: KeyVersionSummary[],
    context: RunContext,
    invocation: Invocation,
    planned?: NewKeyVersionSpec,
  ): Promise<RotationReport> {
    this.assertAllowed(key);
    const target = planned ? undefined : await this.latestUsable(key, versions);
    if (target && context.created && target.version !== context.created.version) {
      throw new KeyUnusableError(context.created.id, unusableReasons(context.created, this.deps.clock.now()));
    }
    const hubs = await this.hubsUsing(key);
    if (context.dryRun || !target) {
      const reports = await mapWithConcurrency(hubs, this.deps.settings.hubConcurrency, (hub) =>
        moveHub(this.deps.hubs, { hub, key, versions, ...(target ? { target } : {}), dryRun: true }, 1, invocation.log),
      );
      return this.report(key, context, invocation, reports, target);
    }
    const job: RotationJob = {
      key,
      targetVersion: target.version,
      targetId: target.id,
      trigger: context.trigger,
      correlationId: invocation.correlationId,
      openedAt: this.deps.clock.now(),
      ...(context.created ? { createdVersion: context.created.version } : {}),
      ...(context.eventId ? { eventId: context.eventId } : {}),
    };
    const tasks = await this.deps.jobs.open(
      job,
      hubs.map((h) => ({ hubId: h.id, hubName: h.name, from: identifiersForKey(h.body, key) })),
    );
    return this.runJob(job, tasks, versions, context, invocation);
  }

  /** Works the job's due tasks (claimed one by one), records each result, and reports every task of the job. */
  private async runJob(
    job: RotationJob,
    tasks: HubTask[],
    versions: KeyVersionSummary[],
    context: RunContext,
    invocation: Invocation,
  ): Promise<RotationReport> {
    const { settings } = this.deps;
    const now = this.deps.clock.now();
    const target =
      versions.find((v) => v.version === job.targetVersion) ??
      (await this.deps.keyVault.getVersion(job.key, job.targetVersion));
    // Events only finish what is pending; an operator's re-run and the reconciler also retry hubs that failed.
    const retryFailed = context.trigger !== 'event';
    const due = (t: HubTask, at: Date) =>
      (t.state === 'pending' || (retryFailed && t.state === 'failed')) &&
      (!t.notBefore || t.notBefore <= at) &&
      (!t.claimedUntil || t.claimedUntil <= at);
    const worked = new Map<string, HubReport>();
    const workTask = async (task: HubTask): Promise<HubReport | undefined> => {
      const claimed = await this.deps.jobs.claim(
        job,
        task,
        new Date(this.deps.clock.now().getTime() + settings.claimTtlMs),
      );
      if (!claimed) return; // another invocation took it
      const hub: HubDocument = { id: task.hubId, name: task.hubName, body: {} };
      const moved = await moveHub(
        this.deps.hubs,
        { hub, key: job.key, versions, target, dryRun: false },
        settings.maxEtagAttempts,
        invocation.log,
      );
      const attempts = (claimed.state === 'failed' ? 0 : claimed.attempts) + 1;
      const retry = moved.result === 'failed' && isTransientCode(moved.errorCode) && attempts < settings.maxHubAttempts;
      if (!moved.from.length) moved.from = task.from; // the hub could not even be read
      const report: HubReport = retry
        ? {
            ...moved,
            result: 'retrying',
            attempts,
            reason: `${moved.reason ?? ''} (attempt ${attempts} of ${settings.maxHubAttempts}; will retry)`,
          }
        : { ...moved, attempts };
      const { claimedUntil: _released, notBefore: _backoff, ...rest } = claimed;
      await this.deps.jobs.save(job, {
        ...rest,
        attempts,
        state: retry ? 'pending' : (moved.result as HubTask['state']),
        ...(retry
          ? {
              notBefore: new Date(this.deps.clock.now().getTime() + retryDelayMs(attempts, settings.firstRetryDelayMs)),
            }
          : {}),
        ...(report.errorCode ? { errorCode: report.errorCode } : {}),
        ...(report.reason ? { reason: report.reason } : {}),
      });
      worked.set(task.hubId, report);
      return report;
    };
    /** Works the due tasks this invocation has not worked on yet (claiming each first) and records the results. */
    const workDue = async (candidates: HubTask[]) => {
      const at = this.deps.clock.now();
      const fresh = candidates.filter((t) => !worked.has(t.hubId) && due(t, at));
      // Subscriptions take turns, so each one's ARM write budget is spent from the start.
      const byTurn = interleaveBy(fresh, (t) => subscriptionOf(t.hubId));
      const results = await mapWithConcurrency(byTurn, settings.hubConcurrency, workTask);
      const reported = results.filter((r) => r !== undefined);
      await this.recordHubResults(job.key, target, reported, context, invocation);
    };
    await workDue(tasks);
    let reports = tasks.map((t) => worked.get(t.hubId) ?? storedReport(t, job.targetId, now));
    // Hubs another invocation is moving (typically the one handling the KeyNewVersionCreated our own rotation
    // raised) are awaited for a while, so the answer is complete instead of "in progress" (or, for an event, a
    // needless redelivery). A holder that crashed is taken over here as soon as its claim expires.
    const deadline = Date.now() + (context.trigger === 'event' ? SETTLE_WAIT_MS.event : SETTLE_WAIT_MS.operator);
    while (reports.some((r) => r.result === 'in-progress') && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      const latest = await this.deps.jobs.open(job, []);
      // Only pending hubs are taken over: a failure another invocation just reported stands.
      await workDue(latest.filter((t) => t.state === 'pending'));
      reports = latest.map((t) => worked.get(t.hubId) ?? storedReport(t, job.targetId, this.deps.clock.now()));
    }
    return this.report(job.key, context, invocation, reports, target);
  }

  private async recordHubResults(
    key: KeyName,
    target: KeyVersionSummary,
    reports: HubReport[],
    context: RunContext,
    invocation: Invocation,
  ): Promise<void> {
    if (!reports.length) return;
    await this.deps.audit.append(
      reports.map((r) =>
        this.record(invocation, context, {
          keyId: keyUrl(key),
          hubId: r.hubId,
          result: r.result as AuditRecord['result'],
          fromVersion: r.from.map((id) => versionOf(id) ?? '').join(','),
          toVersion: target.version,
          ...(r.reason ? { message: r.reason } : {}),
          ...(r.errorCode ? { errorCode: r.errorCode as AuditRecord['errorCode'] } : {}),
          durationMs: r.durationMs,
        }),
      ),
    );
    await this.publish(
      invocation,
      reports
        .filter((r) => r.result === 'moved' || r.result === 'failed')
        .map((r) => ({
          type: r.result === 'moved' ? 'CmkRotator.HubKeyUpdated' : 'CmkRotator.HubKeyUpdateFailed',
          subject: r.hubId,
          data: { ...r, keyId: keyUrl(key), correlationId: invocation.correlationId },
        })),
    );
  }

  private report(
    key: KeyName,
    context: RunContext,
    invocation: Invocation,
    hubs: HubReport[],
    target: KeyVersionSummary | undefined,
  ): RotationReport {
    const failed = hubs.filter((r) => r.result === 'failed').length;
    const open = hubs.some((r) => r.result === 'retrying' || r.result === 'in-progress');
    return {
      keyId: keyUrl(key),
      trigger: context.trigger,
      dryRun: context.dryRun,
      decision: context.decision,
      ...(context.created ? { createdVersion: context.created.id } : {}),
      ...(target ? { targetVersion: target.id } : {}),
      hubs,
      status:
        failed && failed === hubs.length ? 'failed' : failed ? 'partially-failed' : open ? 'in-progress' : 'succeeded',
      correlationId: invocation.correlationId,
    };
  }

  private async hubsUsing(key: KeyName): Promise<HubDocument[]> {
    return (await this.deps.hubs.listAll()).filter((hub) => identifiersForKey(hub.body, key).length > 0);
  }

  // --- bookkeeping -----------------------------------------------------------------------------------------

  private assertAllowed(key: KeyName): void {
    if (!this.deps.settings.allowedVaults.includes(key.vaultUrl)) throw new VaultNotAllowedError(key.vaultUrl);
  }

  private async guarded(
    key: KeyName,
    trigger: Trigger,
    invocation: Invocation,
    options: { dryRun: boolean; reason?: string },
    work: () => Promise<RotationReport>,
  ): Promise<RotationReport> {
    this.assertAllowed(key);
    const started = Date.now();
    try {
      return await work();
    } catch (error) {
      // Transient failures are answered 503 for the caller to retry; a dry run writes nothing.
      if (isTransient(error) || options.dryRun) throw error;
      const reason = options.reason;
      await this.recordFailure(error, invocation, started, {
        trigger,
        keyId: keyUrl(key),
        ...(reason ? { reason } : {}),
      });
      throw error;
    }
  }

  private async recordFailure(
    error: unknown,
    invocation: Invocation,
    started: number,
    fields: Pick<AuditRecord, 'trigger' | 'keyId'> & Partial<AuditRecord>,
  ): Promise<RotationReport> {
    const code = errorCode(error);
    const message = safeMessage(error);
    const transient = isTransient(error);
    const refused = error instanceof RotatorError && (code === 'INVALID_INPUT' || code === 'VAULT_NOT_ALLOWED');
    const fieldsToLog = { key: fields.keyId, errorCode: code, message, transient };
    if (transient) invocation.log.warn('rotation.failed', fieldsToLog);
    else invocation.log.error('rotation.failed', fieldsToLog);
    const record = this.record(
      invocation,
      { trigger: fields.trigger, dryRun: false, decision: '' },
      {
        ...fields,
        result: refused ? 'refused' : transient ? 'retrying' : 'failed',
        errorCode: code,
        message,
        durationMs: Date.now() - started,
      },
    );
    try {
      await this.deps.audit.append([record]);
    } catch (auditError) {
      invocation.log.error('audit.failed', { errorCode: errorCode(auditError), message: safeMessage(auditError) });
      // A permanent failure must leave a trace: if it cannot be recorded, let the event be redelivered.
      if (!transient) throw new UpstreamUnavailableError('The audit log could not record a failure.', auditError);
    }
    if (!refused && !transient) {
      await this.publish(invocation, [
        {
          type: 'CmkRotator.RotationFailed',
          subject: fields.keyId || 'unknown',
          data: { ...record, time: record.time.toISOString() },
        },
      ]);
    }
    return this.emptyReport(fields.keyId, fields.trigger, invocation, refused ? 'refused' : 'failed', message, code);
  }

  private emptyReport(
    keyId: string,
    trigger: Trigger,
    invocation: Invocation,
    status: RotationReport['status'],
    message: string,
    code?: string,
  ): RotationReport {
    return {
      keyId,
      trigger,
      dryRun: false,
      decision: message,
      hubs: [],
      status,
      message,
      ...(code ? { errorCode: code } : {}),
      correlationId: invocation.correlationId,
    };
  }

  private record(
    invocation: Invocation,
    context: RunContext,
    fields: Pick<AuditRecord, 'keyId' | 'result'> & Partial<AuditRecord>,
  ): AuditRecord {
    return {
      id: randomUUID(),
      time: this.deps.clock.now(),
      trigger: context.trigger,
      correlationId: invocation.correlationId,
      ...(context.eventId ? { eventId: context.eventId } : {}),
      ...(context.eventType ? { eventType: context.eventType } : {}),
      ...(context.reason ? { reason: context.reason } : {}),
      ...fields,
    };
  }

  /** Outcome events are notifications: failing to send one is logged, it does not undo or fail the rotation. */
  private async publish(invocation: Invocation, outcomes: Outcome[]): Promise<void> {
    if (!outcomes.length) return;
    try {
      await this.deps.outcomes.publish(outcomes);
    } catch (error) {
      invocation.log.error('outcomes.failed', {
        errorCode: errorCode(error),
        message: safeMessage(error),
        count: outcomes.length,
      });
    }
  }
}

/** The version list once `created` exists: it is the vault's current version now. */
function withCreated(versions: readonly KeyVersionSummary[], created: KeyVersionDetails): KeyVersionSummary[] {
  return [...versions.map(({ latest: _previous, ...v }) => v), { ...created, latest: true }];
}

/** A task this invocation did not work on, reported as the job has it. */
function storedReport(task: HubTask, to: string, now: Date): HubReport {
  // Pending: waiting out a backoff ("retrying"), or claimed / about to be claimed by another invocation.
  const waiting = task.state === 'pending' && !!task.notBefore && task.notBefore > now;
  return {
    hubId: task.hubId,
    hubName: task.hubName,
    from: task.from,
    to,
    result: task.state === 'pending' ? (waiting ? 'retrying' : 'in-progress') : task.state,
    attempts: task.attempts,
    ...(task.reason ? { reason: task.reason } : {}),
    ...(task.errorCode ? { errorCode: task.errorCode } : {}),
    durationMs: 0,
  };
}

const TRANSIENT_CODES = new Set(['UPSTREAM_UNAVAILABLE', 'ETAG_CONFLICT', 'BUSY', 'INTERNAL']);
function isTransientCode(code: string | undefined): boolean {
  return code !== undefined && TRANSIENT_CODES.has(code);
}
