// One Key Vault event from Event Grid: near-expiry and expiry rotate (once), a new version is propagated. Answered
// as soon as the move is planned. Throws only what is transient (Event Grid redelivers); the rest is recorded.
import { isTransient } from '../domain/errors';
import { isIgnored, parseKeyVaultEvent } from '../domain/events';
import type { KeyVaultEvent } from '../domain/events';
import { keyLabel, keyUrl } from '../domain/keyId';
import { assertAllowed, emptyReport, recordFailure } from './context';
import type { Dependencies, Invocation, RotationReport } from './context';
import { propagate } from './propagate';
import { rotateUnlessNewer } from './rotate';

export async function handleEvent(
  deps: Dependencies,
  rawEvent: unknown,
  invocation: Invocation,
): Promise<RotationReport> {
  const started = Date.now();
  let event: KeyVaultEvent | undefined;
  try {
    const parsed = parseKeyVaultEvent(rawEvent);
    if (isIgnored(parsed)) {
      invocation.log.info('event.ignored', { eventId: parsed.id, eventType: parsed.type, reason: parsed.ignored });
      return emptyReport('', 'event', invocation, 'ignored', parsed.ignored);
    }
    event = parsed;
    invocation.log.info('event.received', {
      eventId: event.id,
      eventType: event.type,
      key: keyLabel(event.key),
      version: event.version,
    });
    assertAllowed(deps, event.key);
    return await forEvent(deps, event, invocation);
  } catch (error) {
    const report = await recordFailure(deps, error, invocation, started, {
      trigger: 'event',
      keyId: event ? keyUrl(event.key) : '',
      ...(event ? { eventId: event.id, eventType: event.type, fromVersion: event.version } : {}),
    });
    if (isTransient(error)) throw error;
    return report;
  }
}

async function forEvent(deps: Dependencies, event: KeyVaultEvent, invocation: Invocation): Promise<RotationReport> {
  const context = { trigger: 'event' as const, dryRun: false, eventId: event.id, eventType: event.type };
  if (event.type === 'KeyNewVersionCreated') {
    const versions = await deps.keyVault.listVersions(event.key);
    const decision = `version ${event.version} was created`;
    return propagate(deps, event.key, versions, { ...context, decision }, invocation);
  }
  const what = event.type === 'KeyExpired' ? 'expired' : 'is near expiry';
  return rotateUnlessNewer(
    deps,
    event.key,
    event.version,
    { ...context, decision: `version ${event.version} ${what}` },
    invocation,
  );
}
