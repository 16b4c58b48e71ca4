// Moving hubs to the latest usable version without creating one (operator request), and the guard every operator
// run shares: the vault must be allowed, and a permanent failure is recorded before it is answered.
import { isTransient } from '../domain/errors';
import { keyUrl } from '../domain/keyId';
import type { KeyName } from '../domain/keyId';
import type { Trigger } from '../domain/ports';
import { assertAllowed, recordFailure } from './context';
import type { Dependencies, Invocation, RotationReport } from './context';
import { propagate } from './propagate';

export async function sync(
  deps: Dependencies,
  key: KeyName,
  options: { dryRun: boolean },
  invocation: Invocation,
): Promise<RotationReport> {
  return guarded(deps, key, 'manual-sync', invocation, options, async () => {
    const versions = await deps.keyVault.listVersions(key);
    const context = {
      trigger: 'manual-sync' as const,
      dryRun: options.dryRun,
      retryFailed: true,
      decision: 'sync requested',
    };
    return propagate(deps, key, versions, context, invocation);
  });
}

export async function guarded(
  deps: Dependencies,
  key: KeyName,
  trigger: Trigger,
  invocation: Invocation,
  options: { dryRun: boolean; reason?: string },
  work: () => Promise<RotationReport>,
): Promise<RotationReport> {
  assertAllowed(deps, key);
  const started = Date.now();
  try {
    return await work();
  } catch (error) {
    // Transient failures are answered 503 for the caller to retry; a dry run writes nothing.
    if (isTransient(error) || options.dryRun) throw error;
    await recordFailure(deps, error, invocation, started, {
      trigger,
      keyId: keyUrl(key),
      ...(options.reason ? { reason: options.reason } : {}),
    });
    throw error;
  }
}
