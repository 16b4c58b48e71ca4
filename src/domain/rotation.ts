// The rotation use cases: react to Key Vault events, rotate or sync on request, report status and history.
// Decisions live here; every effect goes through a port.
import { randomUUID } from 'node:crypto';
import { mapWithConcurrency } from './concurrency';
import {
  EtagConflictError,
  HubKeyNotAppliedError,
  KeyUnusableError,
  RotatorError,
  UpstreamUnavailableError,
  VaultNotAllowedError,
  errorCode,
  isTransient,
} from './errors';
import { isIgnored, parseKeyVaultEvent } from './events';
import type { KeyVaultEvent } from './events';
import { identifiersForKey, versionsForKey, withKeyIdentifier } from './hubs';
import { keyLabel, keyUrl } from './keyId';
import type { KeyName } from './keyId';
import { compareVersions, isLive, newVersionSpec, newestFirst, unusableReasons } from './keyPolicy';
import type {
  AuditLog,
  AuditPage,
  AuditRecord,
  Clock,
  HubDocument,
  HubRepository,
  KeyLock,
  KeyVault,
  KeyVersionDetails,
  KeyVersionSummary,
  Logger,
  NewKeyVersionSpec,
  Outcome,
  OutcomePublisher,
} from './ports';

export interface RotationSettings {
  /** Normalised vault URLs (`https://<host>`). */
  allowedVaults: readonly string[];
  defaultKeyValidityDays: number;
  hubConcurrency: number;
  /** How often one hub is re-read and re-written after a 412 before it counts as failed. */
  maxEtagAttempts: number;
}

export interface RotationDependencies {
  keyVault: KeyVault;
  hubs: HubRepository;
  audit: AuditLog;
  outcomes: OutcomePublisher;
  lock: KeyLock;
  clock: Clock;
  settings: RotationSettings;
}

/** Who asked, for logs and audit records. */
export interface Invocation {
  correlationId: string;
  log: Logger;
}

export type Trigger = AuditRecord['trigger'];
export type HubResult = 'moved' | 'already-current' | 'skipped' | 'failed' | 'planned';

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
  durationMs: number;
}

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
  status: 'succeeded' | 'partially-failed' | 'failed' | 'refused' | 'ignored';
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

const PLANNED = '(new version)';

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
      if (report.hubs.some((h) => h.result === 'failed' && h.errorCode && isTransientCode(h.errorCode))) {
        throw new UpstreamUnavailableError('Some hubs hit transient failures; the event will be redelivered.');
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
      this.assertAllowed(key);
      const versions = await this.deps.keyVault.listVersions(key);
      const current = await this.deps.keyVault.getVersion(key);
      const decision = options.reason ? `rotation requested: ${options.reason}` : 'rotation requested';
      return this.rotateFrom(
        key,
        current,
        versions,
        { trigger: 'manual-rotate', dryRun: options.dryRun, decision, reason: options.reason },
        invocation,
      );
    });
  }

  /** Moves hubs to the latest usable version without creating one. */
  async sync(key: KeyName, options: { dryRun: boolean }, invocation: Invocation) {
    return this.guarded(key, 'manual-sync', invocation, options, async () => {
      this.assertAllowed(key);
      const versions = await this.deps.keyVault.listVersions(key);
      return this.propagate(
        key,
        versions,
        { trigger: 'manual-sync', dryRun: options.dryRun, decision: 'sync requested' },
        invocation,
      );
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

  // --- decisions -------------------------------------------------------------------------------------------

  private async forEvent(event: KeyVaultEvent, invocation: Invocation): Promise<RotationReport> {
    const context = { trigger: 'event' as const, dryRun: false, eventId: event.id, eventType: event.type };
    if (event.type === 'KeyNewVersionCreated') {
      const versions = await this.deps.keyVault.listVersions(event.key);
      return this.propagate(
        event.key,
        versions,
        { ...context, decision: `version ${event.version} was created` },
        invocation,
      );
    }
    // Near expiry / expired: create a version only if nothing newer is live (autorotation, a manual rotation or an
    // earlier delivery of this very event may have made one). The check and the creation share the key's lock.
    const created = await this.deps.lock.runExclusive(event.key, async () => {
      const versions = await this.deps.keyVault.listVersions(event.key);
      const now = this.deps.clock.now();
      const newerLive = versions.find(
        (v) => isLive(v, now) && compareVersions(versions, v.version, event.version) === 1,
      );
      if (newerLive) return { versions, decision: `a newer version ${newerLive.version} already exists` };
      const current = await this.deps.keyVault.getVersion(event.key, event.version);
      const version = await this.createVersion(event.key, current, { ...context, decision: '' }, invocation);
      return {
        versions: [...versions, version],
        version,
        decision: `version ${event.version} ${event.type === 'KeyExpired' ? 'expired' : 'is near expiry'}`,
      };
    });
    return this.propagate(
      event.key,
      created.versions,
      { ...context, decision: created.decision, ...(created.version ? { created: created.version } : {}) },
      invocation,
    );
  }

  private async rotateFrom(
    key: KeyName,
    current: KeyVersionDetails,
    versions: KeyVersionSummary[],
    context: RunContext,
    invocation: Invocation,
  ): Promise<RotationReport> {
    if (context.dryRun) {
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
    const created = await this.deps.lock.runExclusive(key, () => this.createVersion(key, current, context, invocation));
    return this.propagate(key, [...versions, created], { ...context, created }, invocation);
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
    const live = newestFirst(versions).filter((v) => isLive(v, now));
    const rejected: string[] = [];
    for (const candidate of live) {
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
   * Moves every hub that uses `key` to its latest usable version (or, with `planned`, to the version a rotation
   * would create). Hubs are handled independently with bounded concurrency; one failing never stops the others.
   */
  private async propagate(
    key: KeyName,
    versions: KeyVersionSummary[],
    context: RunContext,
    invocation: Invocation,
    planned?: NewKeyVersionSpec,
  ): Promise<RotationReport> {
    const target = planned ? undefined : await this.latestUsable(key, versions);
    if (target && context.created && target.version !== context.created.version) {
      throw new KeyUnusableError(context.created.id, unusableReasons(context.created, this.deps.clock.now()));
    }
    const hubs = await this.hubsUsing(key);
    const reports = await mapWithConcurrency(hubs, this.deps.settings.hubConcurrency, (hub) =>
      this.moveHub(hub, key, versions, target, context, invocation),
    );
    if (!context.dryRun && reports.length) {
      await this.deps.audit.append(
        reports.map((r) =>
          this.record(invocation, context, {
            keyId: keyUrl(key),
            hubId: r.hubId,
            result: r.result === 'planned' ? 'skipped' : r.result,
            fromVersion: r.from.map((id) => id.split('/').pop()).join(','),
            ...(target ? { toVersion: target.version } : {}),
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
    const failed = reports.filter((r) => r.result === 'failed').length;
    return {
      keyId: keyUrl(key),
      trigger: context.trigger,
      dryRun: context.dryRun,
      decision: context.decision,
      ...(context.created ? { createdVersion: context.created.id } : {}),
      ...(target ? { targetVersion: target.id } : {}),
      hubs: reports,
      status: failed === 0 ? 'succeeded' : failed === reports.length ? 'failed' : 'partially-failed',
      correlationId: invocation.correlationId,
    };
  }

  private async hubsUsing(key: KeyName): Promise<HubDocument[]> {
    return (await this.deps.hubs.listAll()).filter((hub) => identifiersForKey(hub.body, key).length > 0);
  }

  /** One hub: re-read, decide (never downgrade), write with If-Match, retry on 412, verify the result. */
  private async moveHub(
    discovered: HubDocument,
    key: KeyName,
    versions: readonly KeyVersionSummary[],
    target: KeyVersionDetails | undefined,
    context: RunContext,
    invocation: Invocation,
  ): Promise<HubReport> {
    const started = Date.now();
    const to = target?.id ?? PLANNED;
    let from = identifiersForKey(discovered.body, key);
    const report = (result: HubResult, extra: Partial<HubReport> = {}): HubReport => {
      const r: HubReport = {
        hubId: discovered.id,
        hubName: discovered.name,
        from,
        to,
        result,
        ...extra,
        durationMs: Date.now() - started,
      };
      const log = result === 'failed' ? invocation.log.error : invocation.log.info;
      log.call(invocation.log, `hub.${result}`, {
        key: keyLabel(key),
        hub: discovered.id,
        from: from.join(','),
        to,
        ...(extra.reason ? { reason: extra.reason } : {}),
        ...(extra.errorCode ? { errorCode: extra.errorCode } : {}),
        durationMs: r.durationMs,
      });
      return r;
    };
    try {
      for (let attempt = 1; ; attempt++) {
        const hub = context.dryRun ? discovered : await this.deps.hubs.get(discovered.id);
        from = identifiersForKey(hub.body, key);
        const decision = decideHub(versionsForKey(hub.body, key), target?.version, versions);
        if (decision.result !== 'move') return report(decision.result, { reason: decision.reason });
        if (context.dryRun) return report('planned');
        try {
          const updated = await this.deps.hubs.replace(hub, withKeyIdentifier(hub.body, key, to));
          const now = identifiersForKey(updated.body, key);
          if (!now.every((id) => id.toLowerCase() === to.toLowerCase())) {
            throw new HubKeyNotAppliedError(hub.id, to, now[0]);
          }
          return report('moved');
        } catch (error) {
          if (error instanceof EtagConflictError && attempt < this.deps.settings.maxEtagAttempts) continue;
          throw error;
        }
      }
    } catch (error) {
      return report('failed', { errorCode: errorCode(error), reason: safeMessage(error) });
    }
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
    const started = Date.now();
    try {
      return await work();
    } catch (error) {
      // Refusals of the request itself are answered, not recorded: nothing was attempted. A dry run writes nothing.
      if (error instanceof VaultNotAllowedError || isTransient(error) || options.dryRun) throw error;
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
    const refused = error instanceof RotatorError && (code === 'INVALID_INPUT' || code === 'VAULT_NOT_ALLOWED');
    (isTransient(error) ? invocation.log.warn : invocation.log.error).call(invocation.log, 'rotation.failed', {
      key: fields.keyId,
      errorCode: code,
      message,
      transient: isTransient(error),
    });
    const record = this.record(
      invocation,
      { trigger: fields.trigger, dryRun: false, decision: '' },
      {
        ...fields,
        result: refused ? 'refused' : 'failed',
        errorCode: code,
        message,
        durationMs: Date.now() - started,
      },
    );
    try {
      await this.deps.audit.append([record]);
      if (!refused && !isTransient(error)) {
        await this.publish(invocation, [
          {
            type: 'CmkRotator.RotationFailed',
            subject: fields.keyId || 'unknown',
            data: { ...record, time: record.time.toISOString() },
          },
        ]);
      }
    } catch (auditError) {
      invocation.log.error('audit.failed', { errorCode: errorCode(auditError), message: safeMessage(auditError) });
      if (!isTransient(error)) throw auditError;
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

interface RunContext {
  trigger: Trigger;
  dryRun: boolean;
  decision: string;
  eventId?: string;
  eventType?: string;
  reason?: string;
  created?: KeyVersionDetails;
}

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

const TRANSIENT_CODES = new Set(['UPSTREAM_UNAVAILABLE', 'ETAG_CONFLICT', 'BUSY', 'INTERNAL']);
function isTransientCode(code: string): boolean {
  return TRANSIENT_CODES.has(code);
}

/** Error text for reports and logs: our own messages are written to be safe; anything else is reduced to its type. */
export function safeMessage(error: unknown): string {
  if (error instanceof RotatorError) return error.message;
  return error instanceof Error ? `${error.name}: unexpected failure` : 'unexpected failure';
}
