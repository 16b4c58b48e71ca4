// Helpers for tests about many hubs under failure: hub fleets, key versions, hand-made Key Vault events, and what
// ARM and the audit log recorded.
import { expect } from 'vitest';
import { ARM_LIMITS } from '../../src/adapters/armBudget';
import { BUDGET_TABLE, TableBucketStore } from '../../src/adapters/armBudgetTable';
import { KEY_EVENT_TYPES, KEY_VAULT_SUBSCRIPTION, SUB_A, SUB_B, VAULT_URL } from './harness';
import type { Harness, HubRef, JobView } from './harness';

export const hub = (subscriptionId: string, name: string): HubRef => ({
  subscriptionId,
  resourceGroupName: 'rg-iot',
  name,
});

/** `count` hubs named `<prefix>-1..n`, alternating between the two subscriptions. */
export function fleet(prefix: string, count: number): HubRef[] {
  return Array.from({ length: count }, (_, i) => hub(i % 2 === 0 ? SUB_A : SUB_B, `${prefix}-${i + 1}`));
}

export const keyIdOf = (name: string) => `${VAULT_URL}/keys/${name}`;

export async function versions(h: Harness, name: string) {
  const list = [];
  for await (const p of h.keys.listPropertiesOfKeyVersions(name)) list.push(p);
  return list;
}

/** The key's one version that is not `known` (fails when there is not exactly one). */
export async function newVersionOf(h: Harness, name: string, known: string): Promise<string> {
  const others = (await versions(h, name)).filter((v) => v.version !== known);
  if (others.length !== 1) throw new Error(`${name}: expected one new version, found ${others.length}`);
  return `${keyIdOf(name)}/${others[0]!.version!}`;
}

/** A Key Vault event as Event Grid delivers it (EventGridSchema). */
export function keyVaultEvent(type: string, keyId: string) {
  const [, , , , name, version] = keyId.split('/');
  return {
    id: `manual-${type}-${version}`,
    topic:
      '/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/demo',
    subject: name,
    eventType: `Microsoft.KeyVault.${type}`,
    eventTime: new Date().toISOString(),
    data: { Id: keyId, VaultName: 'demo', ObjectType: 'Key', ObjectName: name, Version: version, NBF: null, EXP: null },
    dataVersion: '1',
    metadataVersion: '1',
  };
}

/** The hub references `keyId` and no update of it is running. */
export function settledOn(h: Harness, ref: HubRef, keyId: string): boolean {
  const properties = h.stack.arm.getHub(ref)?.properties as { provisioningState?: string } | undefined;
  return h.hubKey(ref) === keyId && properties?.provisioningState === 'Succeeded';
}

/** The statuses ARM answered to PUTs on one hub, in order. */
export function putStatuses(h: Harness, ref: HubRef): (number | undefined)[] {
  return h.stack.arm
    .requests()
    .filter((r) => r.method === 'PUT' && r.url.toLowerCase().includes(`/iothubs/${ref.name.toLowerCase()}?`))
    .map((r) => r.status);
}

/** How many PUTs on the hub ARM accepted (201). */
export const acceptedPuts = (h: Harness, ref: HubRef) => putStatuses(h, ref).filter((s) => s === 201).length;

export interface AuditEntry {
  id?: string;
  result: string;
  trigger: string;
  fromVersion?: string;
  eventId?: string;
  hubId?: string;
  errorCode?: string;
  message?: string;
  toVersion?: string;
}

/** The key's audit records over the app's API, newest first. */
export async function auditOf(h: Harness, name: string): Promise<AuditEntry[]> {
  const history = await h.api('GET', `/api/rotations?keyId=${encodeURIComponent(keyIdOf(name))}&limit=500`);
  if (history.status !== 200) throw new Error(`GET /api/rotations answered ${history.status}`);
  return history.body.records as AuditEntry[];
}

/** The outcome events about one hub (their subject is its resource id). */
export const outcomesFor = (h: Harness, ref: HubRef) =>
  h.outcomes().filter((o) => o.subject.toLowerCase().endsWith(`/iothubs/${ref.name.toLowerCase()}`));

/**
 * Runs `work` while Key Vault's subscription passes only `eventTypes` (a filter misconfigured for a while), then has
 * Key Vault check expiry: what it raises meanwhile reaches nobody. The host must be up again when `work` ends.
 */
export async function withEventsLimitedTo<T>(h: Harness, eventTypes: string[], work: () => Promise<T>): Promise<T> {
  const subscribe = (types: string[]) =>
    h.stack.eventGrid.subscribe({
      name: KEY_VAULT_SUBSCRIPTION,
      endpointUrl: `${h.host.url}/runtime/webhooks/eventgrid?functionName=keyVaultEvents`,
      eventTypes: types,
      schema: 'EventGridSchema',
    });
  await subscribe(eventTypes);
  try {
    const result = await work();
    await h.stack.keyVault.admin.checkExpiry();
    return result;
  } finally {
    await subscribe(KEY_EVENT_TYPES);
  }
}

/** Runs `work` while KeyNearExpiry events are lost (see withEventsLimitedTo). */
export const withoutNearExpiryEvents = <T>(h: Harness, work: () => Promise<T>): Promise<T> =>
  withEventsLimitedTo(
    h,
    KEY_EVENT_TYPES.filter((type) => type !== 'Microsoft.KeyVault.KeyNearExpiry'),
    work,
  );

/** The id of the job that moves hubs to `keyId` (a versioned key URL), as rotate and sync answer it. */
export function jobIdFor(keyId: string): string {
  const url = new URL(keyId);
  const [, , name = '', version = ''] = url.pathname.split('/');
  return [url.host, name, version].join('~').toLowerCase();
}

/** Settles the job for `keyId` if one was opened (Key Vault's KeyNewVersionCreated for a key's first version). */
export async function settleIfAny(h: Harness, keyId: string): Promise<void> {
  await h.stack.eventGrid.idle();
  if (await h.job(jobIdFor(keyId))) await h.settle(jobIdFor(keyId));
}

/** Each hub's result in the job, by hub name. */
export const resultsOf = (job: JobView): Record<string, string> =>
  Object.fromEntries(job.hubs.map((x) => [x.hubName, x.result]));

/** Every hub references `keyId` and can still read its data with it. */
export async function expectAllOn(h: Harness, refs: HubRef[], keyId: string): Promise<void> {
  for (const ref of refs) {
    expect(h.hubKey(ref), ref.name).toBe(keyId);
    expect(await h.stack.arm.checkHubData(ref), ref.name).toMatchObject({ readable: true, keyIdentifier: keyId });
  }
}

/** The key's audit records about one hub's move to `toVersion` (a versioned key URL), oldest first. */
export async function hubAudit(h: Harness, name: string, ref: HubRef, toVersion: string): Promise<AuditEntry[]> {
  return (await auditOf(h, name))
    .filter((r) => r.hubId?.endsWith(`/${ref.name}`) && r.toVersion === toVersion.split('/').pop())
    .reverse();
}

/**
 * A neighbour on the same subscription (another instance of the app, sharing the budget in the app's storage) has
 * taken the read budget's burst and `seconds` of its refill ahead of need: whoever reads next finds the budget spent
 * for that long, however fast or slow this machine runs the fleet. (A fleet left to spend the budget by itself spends
 * it only where this machine steps it faster than ARM refills, 25 reads a second: on a loaded machine it does not,
 * and a test that needs a spent budget would not get one.) One conditional write of the shared bucket, as the
 * neighbour's own refresh leaves it, so that a busy fleet cannot outpace it.
 */
export async function spendReadBudget(h: Harness, subscriptionIds: string[], seconds = 3): Promise<void> {
  const store = new TableBucketStore(h.table(BUDGET_TABLE));
  for (const subscriptionId of subscriptionIds) {
    const bucket = `${subscriptionId.toLowerCase()}|reads`;
    for (;;) {
      const stored = await store.read(bucket);
      const spent = { tokens: -seconds * ARM_LIMITS.reads.refillPerSecond, at: Date.now(), pausedUntil: 0 };
      if ((await store.write(bucket, spent, stored?.etag)) !== undefined) break;
    }
  }
}
