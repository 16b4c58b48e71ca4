// Contract tests for the ARM emulator's IoT hub resources: the real @azure/arm-iothub client and raw preview-api JSON
// through the client's own pipeline, over HTTPS through the CONNECT proxy (see arm-bed.ts).
import type { IotHubDescription, IotHubProperties } from '@azure/arm-iothub';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { IotHubClient } from '@azure/arm-iothub';
import type { RunningArmEmulator } from '../src/arm';
import {
  GA,
  hubBody,
  hubPath,
  keyOf,
  OTHER_SUB,
  PREVIEW,
  ref,
  RG,
  startArmBed,
  SUB,
  UAI,
  writableCopy,
} from './armBed';
import type { ArmBed, FakeKeyVault, HubJson } from './armBed';

describe('ARM emulator for Microsoft.Devices/IotHubs: resources', () => {
  let bed: ArmBed;
  let arm: RunningArmEmulator;
  let vault: FakeKeyVault;
  let client: IotHubClient;
  const send: ArmBed['send'] = (method, target, options) => bed.send(method, target, options);
  const waitForOperation: ArmBed['waitForOperation'] = (url) => bed.waitForOperation(url);
  const previewPut: ArmBed['previewPut'] = (name, body, etag) => bed.previewPut(name, body, etag);
  const seed: ArmBed['seed'] = (name, keyIdentifier, extra) => bed.seed(name, keyIdentifier, extra);

  beforeAll(async () => {
    bed = await startArmBed();
    ({ arm, vault, client } = bed);
  });

  beforeEach(() => arm.reset());

  afterAll(async () => {
    await bed?.close();
  });

  describe('resources', () => {
    it('GET: the GA client sees the hub without encryption, a preview api-version sees the key', async () => {
      const key = vault.createVersion('get');
      await seed('hub-get', key);

      const hub = await client.iotHubResource.get(RG, 'hub-get');
      expect(hub).toMatchObject({
        id: hubPath('hub-get'),
        name: 'hub-get',
        type: 'Microsoft.Devices/IotHubs',
        location: 'westeurope',
        sku: { name: 'S1', tier: 'Standard', capacity: 1 },
        properties: { provisioningState: 'Succeeded', state: 'Active', hostName: 'hub-get.azure-devices.net' },
      });
      expect((hub.properties as Record<string, unknown>).encryption).toBeUndefined();

      const preview = await send('GET', hubPath('hub-get'));
      expect(preview.status).toBe(200);
      expect(keyOf(preview.json)).toBe(key);
      expect(preview.headers.get('etag')).toBe(`"${hub.etag}"`);
      expect(preview.headers.get('x-ms-request-id')).toMatch(/^[0-9a-f-]{36}$/);
      expect(preview.headers.get('x-ms-correlation-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    });

    it('matches subscription, group, provider and name case-insensitively, like ARM', async () => {
      await seed('Hub-Case');
      const found = await send(
        'GET',
        hubPath('HUB-CASE', 'RG-IOT').replace(
          '/providers/Microsoft.Devices/IotHubs/',
          '/providers/microsoft.devices/iothubs/',
        ),
      );
      expect(found.status).toBe(200);
      expect(found.json.id).toBe(hubPath('Hub-Case'));
    });

    it('answers a missing hub with 404 ResourceNotFound in ARM error shape', async () => {
      await expect(client.iotHubResource.get(RG, 'hub-missing')).rejects.toMatchObject({
        statusCode: 404,
        code: 'ResourceNotFound',
      });
      const raw = await send('GET', hubPath('hub-missing'));
      expect(raw.json.error?.message).toContain(
        "'Microsoft.Devices/IotHubs/hub-missing' under resource group 'rg-iot'",
      );
    });

    it('lists by subscription and by resource group in pages linked by nextLink', async () => {
      for (const name of ['hub-a', 'hub-b', 'hub-c', 'hub-d', 'hub-e']) await seed(name);
      await arm.seedHub({ subscriptionId: SUB, resourceGroupName: 'rg-other', name: 'hub-f', hub: hubBody() });
      await arm.seedHub({ subscriptionId: OTHER_SUB, resourceGroupName: RG, name: 'hub-g', hub: hubBody() });
      arm.clearRequests();

      const inGroup: IotHubDescription[] = [];
      for await (const hub of client.iotHubResource.listByResourceGroup(RG)) inGroup.push(hub);
      const inSubscription: IotHubDescription[] = [];
      for await (const hub of client.iotHubResource.listBySubscription()) inSubscription.push(hub);

      expect(inGroup.map((h) => h.name)).toEqual(['hub-a', 'hub-b', 'hub-c', 'hub-d', 'hub-e']);
      expect(inSubscription.map((h) => h.name).sort()).toEqual(['hub-a', 'hub-b', 'hub-c', 'hub-d', 'hub-e', 'hub-f']);
      const groupPages = arm
        .requests()
        .filter((r) => r.url.includes(`/resourceGroups/${RG}/providers/Microsoft.Devices/IotHubs?`));
      expect(groupPages).toHaveLength(3);
      expect(groupPages.filter((r) => r.url.includes('$skipToken='))).toHaveLength(2);
    });

    it('creates a hub with beginCreateOrUpdateAndWait, polling Azure-AsyncOperation until Succeeded', async () => {
      const created = await client.iotHubResource.beginCreateOrUpdateAndWait(
        RG,
        'hub-new',
        { location: 'westeurope', sku: { name: 'S1', capacity: 1 }, tags: { owner: 'test' } },
        { updateIntervalInMs: 5 },
      );
      expect(created.properties?.provisioningState).toBe('Succeeded');
      expect(created.tags).toEqual({ owner: 'test' });

      const calls = arm.requests().map((r) => `${r.method} ${r.status} ${r.url.split('?')[0]}`);
      expect(calls[0]).toBe(`PUT 201 ${hubPath('hub-new')}`);
      expect(calls.some((c) => /^GET 200 .*\/locations\/westeurope\/operationResults\//.test(c))).toBe(true);
      expect(calls.at(-1)).toBe(`GET 200 ${hubPath('hub-new')}`);
      await expect(arm.checkHubData(ref('hub-new'))).resolves.toEqual({ readable: true, keyIdentifier: null });
    });

    it('deletes a hub with beginDeleteAndWait', async () => {
      await seed('hub-delete');
      await client.iotHubResource.beginDeleteAndWait(RG, 'hub-delete', { updateIntervalInMs: 5 });
      expect(arm.getHub(ref('hub-delete'))).toBeUndefined();
      expect((await send('DELETE', hubPath('hub-delete'))).status).toBe(204);
    });
  });

  describe('customer-managed key', () => {
    it("the GA client's typed update drops encryption, so the key stays unchanged", async () => {
      const [v1, v2] = [vault.createVersion('ga'), vault.createVersion('ga')];
      await seed('hub-ga', v1);
      const gaClient = bed.newClient();
      const sentBodies: Array<{ tags?: Record<string, string>; properties?: Record<string, unknown> }> = [];
      gaClient.pipeline.addPolicy({
        name: 'capturePutBodies',
        sendRequest: (request, next) => {
          if (request.method === 'PUT' && typeof request.body === 'string') {
            sentBodies.push(JSON.parse(request.body) as (typeof sentBodies)[number]);
          }
          return next(request);
        },
      });

      const hub = await gaClient.iotHubResource.get(RG, 'hub-ga');
      const encryption = {
        keySource: 'Microsoft.KeyVault',
        keyVaultProperties: [{ keyIdentifier: v2, identity: { userAssignedIdentity: UAI } }],
      };
      const updated = await gaClient.iotHubResource.beginCreateOrUpdateAndWait(
        RG,
        'hub-ga',
        {
          ...hub,
          tags: { ...hub.tags, rotated: 'yes' },
          properties: { ...hub.properties, encryption } as IotHubProperties,
        },
        { ...(hub.etag ? { ifMatch: hub.etag } : {}), updateIntervalInMs: 5 },
      );

      expect(updated.properties?.provisioningState).toBe('Succeeded');
      expect(sentBodies).toHaveLength(1);
      expect(sentBodies[0]?.tags?.rotated).toBe('yes');
      expect(sentBodies[0]?.properties?.encryption).toBeUndefined();
      expect(arm.requests()[1]?.headers.ifMatch).toBe(hub.etag);
      expect(keyOf(arm.getHub(ref('hub-ga')))).toBe(v1);
      expect(arm.getHub(ref('hub-ga'))?.tags).toEqual({ env: 'test', rotated: 'yes' });
      await expect(arm.checkHubData(ref('hub-ga'))).resolves.toEqual({ readable: true, keyIdentifier: v1 });
    });

    it('a GA api-version neither returns nor sets encryption, even when a raw body carries it', async () => {
      const [v1, v2] = [vault.createVersion('ga-raw'), vault.createVersion('ga-raw')];
      await seed('hub-ga-raw', v1);
      const current = await send('GET', hubPath('hub-ga-raw'), { apiVersion: GA });
      expect((current.json as unknown as HubJson).properties.encryption).toBeUndefined();

      const put = await send('PUT', hubPath('hub-ga-raw'), { apiVersion: GA, body: hubBody(v2) });
      expect(put.status).toBe(201);
      expect((put.json as unknown as HubJson).properties.encryption).toBeUndefined();
      await waitForOperation(put.headers.get('azure-asyncoperation') ?? '');
      expect(keyOf(arm.getHub(ref('hub-ga-raw')))).toBe(v1);
    });

    it('a preview PUT re-points the hub to a new key version and rewraps its data; unknown fields stay', async () => {
      const [v1, v2] = [vault.createVersion('rotate'), vault.createVersion('rotate')];
      await seed('hub-rotate', v1, { futureTopLevel: { enabled: true } });
      const current = await send('GET', hubPath('hub-rotate'));
      const body = writableCopy(current.json);
      Object.assign(body.properties, {
        encryption: (hubBody(v2).properties as HubJson['properties']).encryption,
        futureSetting: 'kept',
      });

      const { put, operation } = await previewPut('hub-rotate', body, body.etag);

      expect(put.json).toMatchObject({
        properties: { provisioningState: 'Updating', hostName: 'hub-rotate.azure-devices.net' },
      });
      expect(put.headers.get('azure-asyncoperation')).toMatch(
        new RegExp(
          `^https://management\\.azure\\.com/subscriptions/${SUB}/providers/Microsoft\\.Devices/locations/westeurope` +
            `/operationResults/[0-9a-f-]+\\?api-version=${PREVIEW}&asyncinfo$`,
        ),
      );
      expect(put.headers.get('retry-after')).toBe('0');
      expect(put.headers.get('etag')).not.toBe(`"${body.etag}"`);
      expect(operation).toEqual({ status: 'Succeeded' });

      const after = await send('GET', hubPath('hub-rotate'));
      expect(keyOf(after.json)).toBe(v2);
      expect(after.json).toMatchObject({
        futureTopLevel: { enabled: true },
        properties: { futureSetting: 'kept', provisioningState: 'Succeeded', hostName: 'hub-rotate.azure-devices.net' },
      });
      await expect(arm.checkHubData(ref('hub-rotate'))).resolves.toEqual({ readable: true, keyIdentifier: v2 });
      vault.disable(v1);
      await expect(arm.checkHubData(ref('hub-rotate'))).resolves.toEqual({ readable: true, keyIdentifier: v2 });
    });

    it.each([
      [
        'disabled',
        'KeyDisabled',
        (): string => {
          const version = vault.createVersion('refused');
          vault.disable(version);
          return version;
        },
      ],
      [
        'missing',
        'KeyNotFound',
        (): string => 'https://demo.vault.azure.net/keys/refused/0123456789abcdef0123456789abcdef',
      ],
    ])(
      'a change to a %s key version ends Failed and the hub keeps its key and data',
      async (_, code, unusableVersion) => {
        const v1 = vault.createVersion('refused');
        const v2 = unusableVersion();
        await seed('hub-refused', v1);
        const current = await send('GET', hubPath('hub-refused'));

        const { operation } = await previewPut('hub-refused', hubBody(v2), current.json.etag as string);

        expect(operation).toMatchObject({ status: 'Failed', error: { code } });
        expect((operation.error as { message: string }).message).toContain("IoT hub 'hub-refused' cannot use key");
        const after = await send('GET', hubPath('hub-refused'));
        expect(keyOf(after.json)).toBe(v1);
        expect((after.json as unknown as HubJson).properties.provisioningState).toBe('Succeeded');
        await expect(arm.checkHubData(ref('hub-refused'))).resolves.toEqual({ readable: true, keyIdentifier: v1 });
      },
    );

    it('reports data as unreadable once the version that wraps it is disabled', async () => {
      const v1 = vault.createVersion('lost');
      await seed('hub-lost', v1);
      vault.disable(v1);
      await expect(arm.checkHubData(ref('hub-lost'))).resolves.toMatchObject({
        readable: false,
        keyIdentifier: v1,
        error: { code: 'KeyDisabled' },
      });
    });

    it('a hub whose key version is disabled reports state Inaccessible (GET and list), and is Active again once re-enabled', async () => {
      const v1 = vault.createVersion('brake');
      await seed('hub-brake', v1);
      const state = async () => ((await send('GET', hubPath('hub-brake'))).json as unknown as HubJson).properties.state;
      expect(await state()).toBe('Active');
      vault.disable(v1);
      expect(await state()).toBe('Inaccessible');
      const listed = await client.iotHubResource.listByResourceGroup(RG).next();
      expect((listed.value as IotHubDescription | undefined)?.properties?.state).toBe('Inaccessible');
      vault.enable(v1);
      expect(await state()).toBe('Active');
      await expect(arm.checkHubData(ref('hub-brake'))).resolves.toEqual({ readable: true, keyIdentifier: v1 });
    });
  });
});
