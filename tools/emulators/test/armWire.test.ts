// Wire fidelity of the ARM emulator for IoT hubs: a GET carries every field the service owns, a PUT that sends them
// back is refused as the service refuses it, and each error comes in the body of whoever answers it (ARM's front
// door: `{ error: { code, message } }`; the IoT Hub RP: ErrorDetails at the top level).
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RunningArmEmulator } from '../src/arm';
import { hubBody, hubPath, keyOf, ref, startArmBed, UAI, writableCopy } from './armBed';
import type { ArmBed, FakeKeyVault, HubJson, RawResponse } from './armBed';

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** IoT Hub's ErrorDetails for a refused argument, with the service's support suffix. */
function expectArgumentInvalid(response: RawResponse, ...mentions: string[]): void {
  expect(response.status).toBe(400);
  expect(response.json).toMatchObject({ code: '400004', httpStatusCode: 'BadRequest' });
  expect(response.json.error).toBeUndefined();
  expect(response.json.message).toMatch(/errorcode: IH400004\.$/);
  for (const mention of mentions) expect(response.json.message).toContain(mention);
}

describe('ARM emulator for Microsoft.Devices/IotHubs: read-only fields and error shapes', () => {
  let bed: ArmBed;
  let arm: RunningArmEmulator;
  let vault: FakeKeyVault;
  const both = { type: 'SystemAssigned, UserAssigned', userAssignedIdentities: { [UAI]: {} } };

  beforeAll(async () => {
    bed = await startArmBed();
    ({ arm, vault } = bed);
  });

  beforeEach(() => arm.reset());

  afterAll(async () => {
    await bed?.close();
  });

  /** A hub with both identity kinds and its current preview GET. */
  async function seeded(name: string) {
    const key = vault.createVersion(name);
    await bed.seed(name, key, { identity: both });
    const current = await bed.send('GET', hubPath(name));
    return { key, current };
  }

  /** A PUT of `body` with the hub's current ETag. */
  const put = (name: string, body: unknown, etag: string) =>
    bed.send('PUT', hubPath(name), { body, headers: { 'if-match': etag }, via: bed.noRetryClient });

  it('a GET carries every field the service owns, as ARM returns them', async () => {
    const { current } = await seeded('hub-owned');
    expect(current.json).toMatchObject({
      id: hubPath('hub-owned'),
      name: 'hub-owned',
      type: 'Microsoft.Devices/IotHubs',
      sku: { name: 'S1', tier: 'Standard' },
      systemData: { createdAt: expect.any(String) as unknown },
      identity: {
        type: 'SystemAssigned, UserAssigned',
        principalId: expect.stringMatching(GUID) as unknown,
        tenantId: expect.stringMatching(GUID) as unknown,
        userAssignedIdentities: {
          [UAI]: {
            principalId: expect.stringMatching(GUID) as unknown,
            clientId: expect.stringMatching(GUID) as unknown,
          },
        },
      },
      properties: {
        provisioningState: 'Succeeded',
        state: 'Active',
        hostName: 'hub-owned.azure-devices.net',
        locations: [{ location: 'westeurope', role: 'primary' }],
        eventHubEndpoints: {
          events: {
            retentionTimeInDays: 1,
            partitionCount: 4,
            partitionIds: ['0', '1', '2', '3'],
            path: 'hub-owned',
            endpoint: expect.stringMatching(
              /^sb:\/\/iothub-ns-hub-owned-\d+-[0-9a-f]{10}\.servicebus\.windows\.net\/$/,
            ),
          },
        },
        privateEndpointConnections: [],
      },
    });
  });

  it('refuses a PUT that sends the GET body back unchanged, naming every read-only property, and keeps the hub', async () => {
    const { key, current } = await seeded('hub-echo');
    const answer = await put('hub-echo', current.json, current.json.etag as string);
    expectArgumentInvalid(
      answer,
      "'id'",
      "'name'",
      "'type'",
      "'sku.tier'",
      "'properties.provisioningState'",
      "'properties.state'",
      "'properties.hostName'",
      "'properties.locations'",
      "'properties.eventHubEndpoints.events.partitionIds'",
      "'properties.eventHubEndpoints.events.path'",
      "'properties.eventHubEndpoints.events.endpoint'",
    );
    const after = await bed.send('GET', hubPath('hub-echo'));
    expect(after.json.etag).toBe(current.json.etag);
    expect(keyOf(after.json)).toBe(key);
    expect(
      arm
        .requests()
        .filter((r) => r.method === 'PUT')
        .map((r) => r.status),
    ).toEqual([400]);
  });

  it.each([
    ['id', (b: HubJson) => (b.id = hubPath('hub-one'))],
    ['name', (b: HubJson) => (b.name = 'hub-one')],
    ['type', (b: HubJson) => (b.type = 'Microsoft.Devices/IotHubs')],
    ['sku.tier', (b: HubJson) => ((b.sku as Record<string, unknown>).tier = 'Standard')],
    ['properties.provisioningState', (b: HubJson) => (b.properties.provisioningState = 'Succeeded')],
    ['properties.state', (b: HubJson) => (b.properties.state = 'Active')],
    ['properties.hostName', (b: HubJson) => (b.properties.hostName = 'hub-one.azure-devices.net')],
    ['properties.locations', (b: HubJson) => (b.properties.locations = [])],
    ['properties.deviceHostName', (b: HubJson) => (b.properties.deviceHostName = 'x')],
    ['properties.serviceHostName', (b: HubJson) => (b.properties.serviceHostName = 'x')],
    ['properties.iotHubDetails', (b: HubJson) => (b.properties.iotHubDetails = {})],
    [
      'properties.eventHubEndpoints.events.partitionIds',
      (b: HubJson) => ((b.properties.eventHubEndpoints as { events: JsonRecord }).events.partitionIds = ['0']),
    ],
    [
      'properties.eventHubEndpoints.events.path',
      (b: HubJson) => ((b.properties.eventHubEndpoints as { events: JsonRecord }).events.path = 'hub-one'),
    ],
    [
      'properties.eventHubEndpoints.events.endpoint',
      (b: HubJson) => ((b.properties.eventHubEndpoints as { events: JsonRecord }).events.endpoint = 'sb://x/'),
    ],
  ])('refuses a PUT carrying %s even with the current value', async (field, add) => {
    const { current } = await seeded('hub-one');
    const body = writableCopy(current.json);
    add(body);
    expectArgumentInvalid(await put('hub-one', body, body.etag), `'${field}'`);
  });

  it('accepts the writable copy: etag, systemData, {} per user identity, unchanged private endpoint connections', async () => {
    const { current } = await seeded('hub-writable');
    const body: HubJson = { ...writableCopy(current.json), systemData: current.json.systemData };
    expect((body.identity as { userAssignedIdentities: Record<string, unknown> }).userAssignedIdentities[UAI]).toEqual(
      {},
    );
    expect(body.properties.privateEndpointConnections).toEqual([]);
    const { operation } = await bed.previewPut('hub-writable', body, body.etag);
    expect(operation).toEqual({ status: 'Succeeded' });
  });

  it("identities follow ARM's rule: the existing values pass, other values fail with InvalidIdentityValues", async () => {
    const { current } = await seeded('hub-identity');
    const unchanged = { ...writableCopy(current.json), identity: current.json.identity };
    const { operation } = await bed.previewPut('hub-identity', unchanged, unchanged.etag);
    expect(operation).toEqual({ status: 'Succeeded' });

    const latest = await bed.send('GET', hubPath('hub-identity'));
    expect(latest.json.identity).toEqual(current.json.identity);
    const forgedEntry = {
      ...writableCopy(latest.json),
      identity: { ...both, userAssignedIdentities: { [UAI]: { principalId: '00000000-0000-0000-0000-000000000001' } } },
    };
    const refused = await put('hub-identity', forgedEntry, forgedEntry.etag);
    expect(refused.status).toBe(400);
    expect(refused.json.error?.code).toBe('InvalidIdentityValues');
    expect(refused.json.error?.message).toContain(`'${UAI}'`);

    const forgedTenant = { ...writableCopy(latest.json), identity: { ...both, tenantId: 'another-tenant' } };
    const alsoRefused = await put('hub-identity', forgedTenant, forgedTenant.etag);
    expect([alsoRefused.status, alsoRefused.json.error?.code]).toEqual([400, 'InvalidIdentityValues']);
  });

  it('refuses a change to private endpoint connections (managed by their own API)', async () => {
    const { current } = await seeded('hub-pec');
    const body = writableCopy(current.json);
    body.properties.privateEndpointConnections = [{ id: 'x', properties: {} }];
    expectArgumentInvalid(await put('hub-pec', body, body.etag), 'privateEndpointConnections');
  });

  it('injected faults answer in the shape asked for: ARM front door by default, IoT Hub ErrorDetails on request', async () => {
    await bed.seed('hub-shape', undefined);
    arm.faults.failNextRequests({ status: 503, method: 'GET', retryAfterSeconds: 0 });
    const front = await bed.send('GET', hubPath('hub-shape'), { via: bed.noRetryClient });
    expect(front.json).toEqual({ error: { code: 'ServiceUnavailable', message: expect.any(String) as unknown } });

    arm.faults.failNextRequests({ status: 503, method: 'GET', retryAfterSeconds: 0, shape: 'iothub' });
    const rp = await bed.send('GET', hubPath('hub-shape'), { via: bed.noRetryClient });
    expect(rp.status).toBe(503);
    expect(rp.headers.get('retry-after')).toBe('0');
    expect(rp.json).toMatchObject({ code: '503001', httpStatusCode: 'ServiceUnavailable' });
    expect(rp.json.message).toMatch(/errorcode: IH503001\.$/);
  });

  it('the SDK surfaces the IoT Hub code of an ErrorDetails answer', async () => {
    await bed.seed('hub-sdk', undefined);
    await expect(
      bed.client.iotHubResource.beginCreateOrUpdate('rg-iot', 'hub-sdk', hubBody() as never, { ifMatch: '"stale"' }),
    ).rejects.toMatchObject({ statusCode: 412, code: '412001' });
    expect(arm.getHub(ref('hub-sdk'))).toBeDefined();
  });
});

type JsonRecord = Record<string, unknown>;
