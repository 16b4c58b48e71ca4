// Creating a key's next version: on an operator's request, or when Key Vault says the current one nears expiry
// (unless a newer live version exists already). Creation happens under the key's lease, so two deliveries or two
// instances never both create one.
import { REQUEST_TAG, ROTATED_FROM_TAG, newVersionSpec, newerLiveThan, newestFirst } from '../domain/keyPolicy';
import { keyLabel, keyUrl } from '../domain/keyId';
import type { KeyName } from '../domain/keyId';
import type { HeldLease, KeyVersionDetails, KeyVersionSummary, NewKeyVersionSpec } from '../domain/ports';
import { auditRecord, publish } from './context';
import type { Dependencies, Invocation, RotationReport, RunContext } from './context';
import { propagate } from './propagate';
import { guarded } from './sync';

/**
 * Creates a new version now and moves every hub to it (operator request). With a `requestId`, a retry of the same
 * request (after a timeout or a 503) finds the version the first attempt created instead of creating another.
 */
export async function rotate(
  deps: Dependencies,
  key: KeyName,
  options: { dryRun: boolean; reason?: string; requestId?: string },
  invocation: Invocation,
): Promise<RotationReport> {
  return guarded(deps, key, 'manual-rotate', invocation, options, async () => {
    const versions = await deps.keyVault.listVersions(key);
    const context: RunContext = {
      trigger: 'manual-rotate',
      dryRun: options.dryRun,
      retryFailed: true,
      decision: options.reason ? `rotation requested: ${options.reason}` : 'rotation requested',
      ...(options.reason ? { reason: options.reason } : {}),
    };
    const earlier = options.requestId ? createdFor(versions, options.requestId) : undefined;
    if (earlier && !options.dryRun) {
      const created = await deps.keyVault.getVersion(key, earlier.version);
      // The first attempt may have failed before its audit record: write it again (same id, so once).
      await recordRotated(deps, key, created, context, invocation);
      const decision = `${context.decision} (request ${options.requestId} already created version ${created.version})`;
      return propagate(deps, key, versions, { ...context, decision, created }, invocation);
    }
    const current = await deps.keyVault.getVersion(key);
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
    const created = await deps.lock.runExclusive(key, (lease) =>
      createVersion(deps, key, current, context, invocation, lease, options.requestId),
    );
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
  const outcome = await deps.lock.runExclusive(key, async (lease) => {
    const versions = await deps.keyVault.listVersions(key);
    const newerLive = newerLiveThan(versions, fromVersion, deps.clock.now());
    if (newerLive) return { versions, decision: `a newer version ${newerLive.version} already exists` };
    const current = await deps.keyVault.getVersion(key, fromVersion);
    const created = await createVersion(deps, key, current, context, invocation, lease);
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

async function specFor(
  deps: Dependencies,
  key: KeyName,
  current: KeyVersionDetails,
  requestId?: string,
): Promise<NewKeyVersionSpec> {
  const policy = await deps.keyVault.getRotationPolicy(key);
  return newVersionSpec(current, policy?.expiresIn, deps.settings.defaultKeyValidityDays, deps.clock.now(), requestId);
}

/** The version an operator's request created, found by the request id it carries as a tag. */
function createdFor(versions: readonly KeyVersionSummary[], requestId: string): KeyVersionSummary | undefined {
  return newestFirst(versions).find((v) => v.tags?.[REQUEST_TAG] === requestId);
}

async function createVersion(
  deps: Dependencies,
  key: KeyName,
  current: KeyVersionDetails,
  context: RunContext,
  invocation: Invocation,
  lease: HeldLease,
  requestId?: string,
): Promise<KeyVersionDetails> {
  const spec = await specFor(deps, key, current, requestId);
  // Never create without the key's lease: if it was lost, another instance may be creating one right now.
  lease.assertHeld();
  const created = await deps.keyVault.createVersion(key, spec);
  invocation.log.info('key.rotated', {
    key: keyLabel(key),
    fromVersion: current.version,
    version: created.version,
    expiresOn: spec.expiresOn.toISOString(),
  });
  await recordRotated(deps, key, created, context, invocation, current.version);
  return created;
}

/**
 * The audit record and outcome of a created version. Their id comes from the version, and the record's time from
 * its creation, so writing them again (a retried request repairing a missing record) replaces, never duplicates.
 */
async function recordRotated(
  deps: Dependencies,
  key: KeyName,
  created: KeyVersionDetails,
  context: RunContext,
  invocation: Invocation,
  fromVersion = created.tags[ROTATED_FROM_TAG],
): Promise<void> {
  const id = `${keyLabel(key).replace(/\//g, '|')}|rotated|${created.version.toLowerCase()}`;
  await deps.audit.append([
    {
      ...auditRecord(deps, invocation, context, {
        keyId: keyUrl(key),
        result: 'rotated',
        toVersion: created.version,
        ...(fromVersion ? { fromVersion } : {}),
      }),
      id,
      time: created.createdOn,
    },
  ]);
  await publish(deps, invocation, [
    {
      id,
      type: 'CmkRotator.KeyRotated',
      subject: created.id,
      data: {
        key: keyLabel(key),
        keyId: created.id,
        version: created.version,
        ...(fromVersion ? { fromVersion } : {}),
        ...(created.expiresOn ? { expiresOn: created.expiresOn.toISOString() } : {}),
        correlationId: invocation.correlationId,
      },
    },
  ]);
}

/** The version list once `created` exists: it is the vault's current version now. */
function withCreated(versions: readonly KeyVersionSummary[], created: KeyVersionDetails): KeyVersionSummary[] {
  return [...versions.map(({ latest: _previous, ...v }) => v), { ...created, latest: true }];
}
