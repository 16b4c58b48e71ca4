// Creating a key's next version: on an operator's request, or when Key Vault says the current one nears expiry
// (unless a newer live version exists already). Creation happens under the key's lease, so two deliveries or two
// instances never both create one.
import { compareVersions, isLive, newVersionSpec } from '../domain/keyPolicy';
import { keyLabel, keyUrl } from '../domain/keyId';
import type { KeyName } from '../domain/keyId';
import type { KeyVersionDetails, KeyVersionSummary, NewKeyVersionSpec } from '../domain/ports';
import { auditRecord, publish } from './context';
import type { Dependencies, Invocation, RotationReport, RunContext } from './context';
import { propagate } from './propagate';
import { guarded } from './sync';

/** Creates a new version now and moves every hub to it (operator request). */
export async function rotate(
  deps: Dependencies,
  key: KeyName,
  options: { dryRun: boolean; reason?: string },
  invocation: Invocation,
): Promise<RotationReport> {
  return guarded(deps, key, 'manual-rotate', invocation, options, async () => {
    const versions = await deps.keyVault.listVersions(key);
    const current = await deps.keyVault.getVersion(key);
    const context: RunContext = {
      trigger: 'manual-rotate',
      dryRun: options.dryRun,
      retryFailed: true,
      decision: options.reason ? `rotation requested: ${options.reason}` : 'rotation requested',
      ...(options.reason ? { reason: options.reason } : {}),
    };
    if (options.dryRun) {
      const spec = await specFor(deps, key, current);
      return {
        ...(await propagate(deps, key, versions, context, invocation, spec)),
        plannedVersion: {
          keyType: spec.keyType,
          keySize: spec.keySize,
          keyOps: spec.keyOps,
          expiresOn: spec.expiresOn.toISOString(),
        },
      };
    }
    const created = await deps.lock.runExclusive(key, () => createVersion(deps, key, current, context, invocation));
    return propagate(deps, key, withCreated(versions, created), { ...context, created }, invocation);
  });
}

/**
 * Creates a successor of `fromVersion` unless a newer live version exists (autorotation, a manual rotation or an
 * earlier delivery may have made one), then plans the move. The check and the creation share the key's lease.
 */
export async function rotateUnlessNewer(
  deps: Dependencies,
  key: KeyName,
  fromVersion: string,
  context: RunContext,
  invocation: Invocation,
): Promise<RotationReport> {
  const outcome = await deps.lock.runExclusive(key, async () => {
    const versions = await deps.keyVault.listVersions(key);
    const now = deps.clock.now();
    const newerLive = versions.find((v) => isLive(v, now) && compareVersions(versions, v.version, fromVersion) === 1);
    if (newerLive) return { versions, decision: `a newer version ${newerLive.version} already exists` };
    const current = await deps.keyVault.getVersion(key, fromVersion);
    const created = await createVersion(deps, key, current, context, invocation);
    return { versions: withCreated(versions, created), created, decision: context.decision };
  });
  return propagate(
    deps,
    key,
    outcome.versions,
    { ...context, decision: outcome.decision, ...(outcome.created ? { created: outcome.created } : {}) },
    invocation,
  );
}

async function specFor(deps: Dependencies, key: KeyName, current: KeyVersionDetails): Promise<NewKeyVersionSpec> {
  const policyExpiry = await deps.keyVault.getPolicyExpiry(key);
  return newVersionSpec(current, policyExpiry, deps.settings.defaultKeyValidityDays, deps.clock.now());
}

async function createVersion(
  deps: Dependencies,
  key: KeyName,
  current: KeyVersionDetails,
  context: RunContext,
  invocation: Invocation,
): Promise<KeyVersionDetails> {
  const spec = await specFor(deps, key, current);
  const started = Date.now();
  const created = await deps.keyVault.createVersion(key, spec);
  const fields = {
    key: keyLabel(key),
    fromVersion: current.version,
    version: created.version,
    expiresOn: spec.expiresOn.toISOString(),
  };
  invocation.log.info('key.rotated', fields);
  await deps.audit.append([
    auditRecord(deps, invocation, context, {
      keyId: keyUrl(key),
      result: 'rotated',
      fromVersion: current.version,
      toVersion: created.version,
      durationMs: Date.now() - started,
    }),
  ]);
  await publish(deps, invocation, [
    {
      type: 'CmkRotator.KeyRotated',
      subject: created.id,
      data: { ...fields, keyId: created.id, correlationId: invocation.correlationId },
    },
  ]);
  return created;
}

/** The version list once `created` exists: it is the vault's current version now. */
function withCreated(versions: readonly KeyVersionSummary[], created: KeyVersionDetails): KeyVersionSummary[] {
  return [...versions.map(({ latest: _previous, ...v }) => v), { ...created, latest: true }];
}
