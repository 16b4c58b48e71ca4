// The emulated IoT Hub resource provider state: hubs, their ETags, provisioning states, long-running operations and the
// data each hub keeps under its customer-managed key.
import { randomBytes, randomUUID } from 'node:crypto';
import type { EmulatorClock } from '../clock';
import type { KeyVaultCrypto } from '../contracts';
import { ArmError, iotHubError } from './errors';
import type { ProtectedHubData, HubDataCheck } from './hubData';
import { describeKeyFailure, HubDataVault } from './hubData';
import type { ApiFlavour, HubBody, JsonObject, SystemData } from './hubModel';
import { assertHubName, encryptionOf, normalizeLocation, parseHubBody, renderHub, RESOURCE_TYPE } from './hubModel';
import { assertWritable } from './hubReadonly';

export interface HubRef {
  subscriptionId: string;
  resourceGroupName: string;
  name: string;
}

export type OperationStatus = 'Running' | 'Succeeded' | 'Failed';

export interface HubOperation {
  id: string;
  kind: 'create' | 'update' | 'delete';
  subscriptionId: string;
  location: string;
  hubKey: string;
  status: OperationStatus;
  startTime: string;
  /** When (epoch ms, real time) the operation is due to complete. */
  completesAtMs: number;
  endTime?: string;
  error?: { code: string; message: string };
}

export interface HubRecord {
  key: string;
  id: string;
  ref: HubRef;
  body: HubBody;
  etag: string;
  provisioningState: string;
  state: string;
  systemData: SystemData;
  data: ProtectedHubData | undefined;
  operation: HubOperation | undefined;
}

/** The parts of a hub an operation may roll back. */
type HubSnapshot = Pick<HubRecord, 'body' | 'provisioningState' | 'state' | 'data'>;

const snapshot = ({ body, provisioningState, state, data }: HubRecord): HubSnapshot => ({
  body,
  provisioningState,
  state,
  data,
});

export const hubKeyOf = (ref: HubRef): string =>
  `${ref.subscriptionId}/${ref.resourceGroupName}/${ref.name}`.toLowerCase();

export const hubIdOf = (ref: HubRef): string =>
  `/subscriptions/${ref.subscriptionId}/resourceGroups/${ref.resourceGroupName}/providers/${RESOURCE_TYPE}/${ref.name}`;

const newEtag = (): string => randomBytes(8).toString('base64');

/** Strips `W/` and quotes so `"abc"`, `W/"abc"` and `abc` compare equal (clients echo the body's unquoted etag). */
const normalizeEtag = (value: string): string =>
  value
    .trim()
    .replace(/^W\//, '')
    .replace(/^"(.*)"$/, '$1');

/**
 * `properties.state` of a hub that lost its customer-managed key. The IoT Hub REST spec types `state` as a free,
 * read-only string and documents no value for this case; the emulator names it plainly.
 */
export const INACCESSIBLE = 'Inaccessible';

/** IoT Hub RP codes: an If-Match/If-None-Match that does not hold; a write to a hub that is not Active. */
const PRECONDITION_FAILED = 412001;
const NOT_ACTIVE = 409002;

/** The request's If-Match and If-None-Match headers, undefined when absent. */
export interface Preconditions {
  ifMatch?: string | undefined;
  ifNoneMatch?: string | undefined;
}

export interface StoreOptions {
  crypto: KeyVaultCrypto;
  clock: EmulatorClock;
  /** How long an operation on this hub runs. */
  operationDelayFor: (hubKey: string) => number;
  /** Asked when an operation completes: a queued injected failure, if any. */
  takeOperationFailure: () => { code: string; message: string } | undefined;
  /** Asked before a write checks preconditions: should someone else write the hub first (a lost ETag race)? */
  takeEtagRace: (hubKey: string) => boolean;
}

export class IotHubStore {
  private readonly hubs = new Map<string, HubRecord>();
  private readonly operations = new Map<string, HubOperation>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly completions = new Set<Promise<void>>();
  private readonly vault: HubDataVault;

  constructor(private readonly options: StoreOptions) {
    this.vault = new HubDataVault(options.crypto);
  }

  get(ref: HubRef): HubRecord | undefined {
    return this.hubs.get(hubKeyOf(ref));
  }

  byKey(hubKey: string): HubRecord | undefined {
    return this.hubs.get(hubKey);
  }

  render(ref: HubRef, flavour: ApiFlavour): JsonObject | undefined {
    const hub = this.get(ref);
    return hub && this.renderRecord(hub, flavour);
  }

  /** The hub as ARM returns it, its `state` as the service sees it now (see stateOf). */
  renderRecord(hub: HubRecord, flavour: ApiFlavour): JsonObject {
    return renderHub({ ...hub, state: this.stateOf(hub) }, flavour);
  }

  /**
   * An Active hub whose data key is wrapped by a version Key Vault refuses to unwrap with (disabled, deleted, unwrap
   * not permitted) cannot reach its data: it reports INACCESSIBLE until the version can unwrap again.
   */
  private stateOf(hub: HubRecord): string {
    const keyIdentifier = hub.data?.keyIdentifier;
    if (hub.state !== 'Active' || !keyIdentifier) return hub.state;
    return this.options.crypto.unwrapRefusal(keyIdentifier) ? INACCESSIBLE : hub.state;
  }

  /** Hubs (of a subscription, and resource group), ordered by id so paging is stable. */
  list(subscriptionId?: string, resourceGroupName?: string): HubRecord[] {
    const matches = (hub: HubRecord): boolean =>
      (subscriptionId === undefined || hub.ref.subscriptionId.toLowerCase() === subscriptionId.toLowerCase()) &&
      (resourceGroupName === undefined || hub.ref.resourceGroupName.toLowerCase() === resourceGroupName.toLowerCase());
    return [...this.hubs.values()].filter(matches).sort((a, b) => (a.id.toLowerCase() < b.id.toLowerCase() ? -1 : 1));
  }

  operation(subscriptionId: string, operationId: string): HubOperation | undefined {
    const operation = this.operations.get(operationId.toLowerCase());
    return operation?.subscriptionId.toLowerCase() === subscriptionId.toLowerCase() ? operation : undefined;
  }

  /** Accepts a PUT: the hub shows the requested state as Accepted/Updating until the operation completes. */
  beginPut(ref: HubRef, raw: unknown, flavour: ApiFlavour, caller: string, preconditions: Preconditions) {
    assertHubName(ref.name);
    const key = hubKeyOf(ref);
    const body = parseHubBody(raw, flavour);
    const existing = this.hubs.get(key);
    assertWritable(raw as JsonObject, existing && this.renderRecord(existing, 'preview'));
    if (existing && this.options.takeEtagRace(key)) this.touch(existing, 'another-client');
    this.checkPreconditions(ref, existing, preconditions);
    if (existing?.operation) throw this.operationInProgress(existing);
    // A GA api-version cannot see or set encryption: the stored one stays (ARM PUT replaces everything else).
    if (flavour === 'ga' && existing?.body.properties.encryption !== undefined) {
      body.properties.encryption = structuredClone(existing.body.properties.encryption);
    }
    const now = this.now();
    const hub: HubRecord = existing ?? {
      key,
      id: hubIdOf(ref),
      ref: { ...ref },
      body,
      etag: '',
      provisioningState: '',
      state: '',
      systemData: {
        createdBy: caller,
        createdByType: 'Application',
        createdAt: now,
        lastModifiedBy: caller,
        lastModifiedByType: 'Application',
        lastModifiedAt: now,
      },
      data: undefined,
      operation: undefined,
    };
    const before = snapshot(hub);
    const kind = existing ? 'update' : 'create';
    Object.assign(hub, {
      body,
      etag: newEtag(),
      provisioningState: existing ? 'Updating' : 'Accepted',
      // An IoT hub being updated is Transitioning; writes wait until it is Active again (409002).
      state: existing ? 'Transitioning' : 'Activating',
    });
    hub.systemData = { ...hub.systemData, lastModifiedBy: caller, lastModifiedAt: now };
    this.hubs.set(key, hub);
    const operation = this.startOperation(hub, kind, before);
    return { hub: this.renderRecord(hub, flavour), etag: hub.etag, operation };
  }

  /** Accepts a DELETE; undefined when there is no such hub (ARM answers 204). */
  beginDelete(ref: HubRef, flavour: ApiFlavour, preconditions: Preconditions) {
    const existing = this.get(ref);
    this.checkPreconditions(ref, existing, preconditions);
    if (!existing) return undefined;
    if (existing.operation) throw this.operationInProgress(existing);
    const before = snapshot(existing);
    Object.assign(existing, { etag: newEtag(), provisioningState: 'Deleting', state: 'Deleting' });
    const operation = this.startOperation(existing, 'delete', before);
    return { hub: this.renderRecord(existing, flavour), operation };
  }

  /** Creates or replaces a hub that is immediately Succeeded (preview semantics: encryption is honoured). */
  async seed(ref: HubRef, raw: unknown): Promise<JsonObject> {
    assertHubName(ref.name);
    const key = hubKeyOf(ref);
    const body = parseHubBody(raw, 'preview');
    const existing = this.hubs.get(key);
    assertWritable(raw as JsonObject, existing && this.renderRecord(existing, 'preview'));
    if (existing?.operation) throw this.operationInProgress(existing);
    const id = existing?.id ?? hubIdOf(ref);
    const data = await this.vault.create(id, encryptionOf(body)?.keyIdentifier);
    const now = this.now();
    const hub: HubRecord = {
      key,
      id,
      ref: existing?.ref ?? { ...ref },
      body,
      etag: newEtag(),
      provisioningState: 'Succeeded',
      state: 'Active',
      systemData: {
        createdBy: 'seed',
        createdByType: 'Application',
        createdAt: existing?.systemData.createdAt ?? now,
        lastModifiedBy: 'seed',
        lastModifiedByType: 'Application',
        lastModifiedAt: now,
      },
      data,
      operation: undefined,
    };
    this.hubs.set(key, hub);
    return this.renderRecord(hub, 'preview');
  }

  async checkData(ref: HubRef): Promise<HubDataCheck> {
    const hub = this.get(ref);
    if (!hub) throw this.notFound(ref);
    return this.vault.check(hub.data);
  }

  notFound(ref: HubRef): ArmError {
    return new ArmError(
      404,
      'ResourceNotFound',
      `The Resource '${RESOURCE_TYPE}/${ref.name}' under resource group '${ref.resourceGroupName}' was not found. ` +
        'For more details please go to https://aka.ms/ARMResourceNotFoundFix',
    );
  }

  /** Forgets every hub and operation (pending operations are abandoned). */
  reset(): void {
    this.cancelTimers();
    this.hubs.clear();
    this.operations.clear();
  }

  async close(): Promise<void> {
    this.cancelTimers();
    await Promise.all([...this.completions]);
  }

  private cancelTimers(): void {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
  }

  private now(): string {
    return this.options.clock.now().toISOString();
  }

  /** Another writer changed the hub: new ETag, new modification stamp. */
  private touch(hub: HubRecord, by: string): void {
    hub.etag = newEtag();
    hub.systemData = { ...hub.systemData, lastModifiedBy: by, lastModifiedAt: this.now() };
  }

  private checkPreconditions(ref: HubRef, hub: HubRecord | undefined, { ifMatch, ifNoneMatch }: Preconditions): void {
    const matches = (header: string): boolean =>
      hub !== undefined &&
      header.split(',').some((tag) => tag.trim() === '*' || normalizeEtag(tag) === normalizeEtag(hub.etag));
    if (ifMatch !== undefined && !matches(ifMatch)) {
      throw iotHubError(
        412,
        PRECONDITION_FAILED,
        hub
          ? `The If-Match ETag '${ifMatch}' does not match the current ETag of IoT hub '${ref.name}': ` +
              'it was changed by another request. Read it again and retry.'
          : `IoT hub '${ref.name}' does not exist, so If-Match '${ifMatch}' cannot match.`,
      );
    }
    if (ifNoneMatch !== undefined && matches(ifNoneMatch)) {
      throw iotHubError(
        412,
        PRECONDITION_FAILED,
        `IoT hub '${ref.name}' already exists (If-None-Match: ${ifNoneMatch}).`,
      );
    }
  }

  /** The IoT Hub RP's answer to a write while an operation runs (seen in the wild as errorcode IH409002). */
  private operationInProgress(hub: HubRecord): ArmError {
    return iotHubError(
      409,
      NOT_ACTIVE,
      `${hub.ref.name} is not currently in Active state (provisioning state ${hub.provisioningState}: another ` +
        'operation is in progress). Try the request again after it is in Active state.',
    );
  }

  private startOperation(hub: HubRecord, kind: HubOperation['kind'], before: HubSnapshot): HubOperation {
    const operation: HubOperation = {
      id: randomUUID(),
      kind,
      subscriptionId: hub.ref.subscriptionId,
      location: normalizeLocation(hub.body.location),
      hubKey: hub.key,
      status: 'Running',
      startTime: this.now(),
      completesAtMs: Date.now() + this.options.operationDelayFor(hub.key),
    };
    hub.operation = operation;
    this.operations.set(operation.id, operation);
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      const completion = this.complete(hub, operation, before).finally(() => this.completions.delete(completion));
      this.completions.add(completion);
    }, operation.completesAtMs - Date.now());
    this.timers.add(timer);
    return operation;
  }

  private async complete(hub: HubRecord, operation: HubOperation, before: HubSnapshot): Promise<void> {
    if (hub.operation !== operation) return;
    const injected = this.options.takeOperationFailure();
    if (injected) return this.fail(hub, operation, before, injected);
    if (operation.kind === 'delete') {
      this.hubs.delete(hub.key);
      return this.finish(hub, operation, 'Succeeded');
    }
    const keyIdentifier = encryptionOf(hub.body)?.keyIdentifier;
    let data: ProtectedHubData;
    try {
      data = before.data
        ? await this.vault.rekey(before.data, keyIdentifier)
        : await this.vault.create(hub.id, keyIdentifier);
    } catch (error) {
      const { code, message } = describeKeyFailure(error);
      return this.fail(hub, operation, before, {
        code,
        message:
          `IoT hub '${hub.ref.name}' cannot use key '${keyIdentifier ?? 'service-managed'}': ${message} ` +
          'The hub keeps its previous key and data.',
      });
    }
    if (hub.operation !== operation) return; // reset or replaced meanwhile
    Object.assign(hub, { data, provisioningState: 'Succeeded', state: 'Active', etag: newEtag() });
    this.finish(hub, operation, 'Succeeded');
  }

  /** A failed create leaves a Failed hub; a failed update or delete rolls the hub back to what it was. */
  private fail(
    hub: HubRecord,
    operation: HubOperation,
    before: HubSnapshot,
    error: { code: string; message: string },
  ): void {
    if (hub.operation !== operation) return;
    if (operation.kind === 'create') {
      Object.assign(hub, { provisioningState: 'Failed', state: 'ActivationFailed', etag: newEtag() });
    } else {
      Object.assign(hub, { ...before, etag: newEtag() });
    }
    this.finish(hub, operation, 'Failed', error);
  }

  private finish(
    hub: HubRecord,
    operation: HubOperation,
    status: OperationStatus,
    error?: { code: string; message: string },
  ): void {
    hub.operation = undefined;
    Object.assign(operation, { status, endTime: this.now() }, error ? { error } : {});
  }
}
