// The benchmark's IoT hub fleet: hubs seeded straight into the ARM emulator (no HTTP, no write tokens spent),
// each encrypted with a customer-managed key, as a real fleet would be.
import { cmkHub } from '@cmk-rotator/emulators/arm';
import type { RunningArmEmulator } from '@cmk-rotator/emulators/arm';
import { mapWithConcurrency } from '../../../src/domain/concurrency';

export interface HubRef {
  subscriptionId: string;
  resourceGroupName: string;
  name: string;
}

const RESOURCE_GROUP = 'rg-fleet';

const identityOf = (subscriptionId: string) =>
  `/subscriptions/${subscriptionId}/resourceGroups/rg-identity/providers/Microsoft.ManagedIdentity/userAssignedIdentities/hub-cmk-reader`;

/** `count` hubs spread evenly over `subscriptionIds`, all referencing `keyIdentifier` (a versioned key URL). */
export async function seedFleet(
  arm: RunningArmEmulator,
  label: string,
  count: number,
  subscriptionIds: readonly string[],
  keyIdentifier: string,
): Promise<HubRef[]> {
  const refs = Array.from({ length: count }, (_, i) => ({
    subscriptionId: subscriptionIds[i % subscriptionIds.length]!,
    resourceGroupName: RESOURCE_GROUP,
    name: `hub-${label}-${String(i).padStart(4, '0')}`,
  }));
  await mapWithConcurrency(refs, 32, (ref) => {
    const identity = identityOf(ref.subscriptionId);
    return arm.seedHub({ ...ref, hub: cmkHub({ keyIdentifier, identity, tags: { fleet: label } }) });
  });
  return refs;
}

export function hubKeyIdentifier(arm: RunningArmEmulator, ref: HubRef): string | undefined {
  const hub = arm.getHub(ref) as
    { properties?: { encryption?: { keyVaultProperties?: { keyIdentifier?: string }[] } } } | undefined;
  return hub?.properties?.encryption?.keyVaultProperties?.[0]?.keyIdentifier;
}

/** How many of `refs` live in each subscription (the floor is per subscription). */
export function hubsPerSubscription(refs: readonly HubRef[]): number[] {
  const counts = new Map<string, number>();
  for (const ref of refs) counts.set(ref.subscriptionId, (counts.get(ref.subscriptionId) ?? 0) + 1);
  return [...counts.values()];
}
