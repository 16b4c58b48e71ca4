// Contract tests for the ARM emulator: the real @azure/arm-iothub client and raw preview-api JSON through the client's
// own pipeline, over HTTPS through the CONNECT proxy, exactly as the rotator will talk to https://management.azure.com.
import { constants, generateKeyPairSync, privateDecrypt, publicEncrypt, randomBytes } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import path from 'node:path';
import { IotHubClient } from '@azure/arm-iothub';
import type { IotHubDescription, IotHubProperties } from '@azure/arm-iothub';
import type { TokenCredential } from '@azure/identity';
import {
  createDefaultHttpClient,
  createHttpHeaders,
  createPipelineFromOptions,
  createPipelineRequest,
} from '@azure/core-rest-pipeline';
import type { HttpMethods, PipelineResponse } from '@azure/core-rest-pipeline';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { issueToken } from '../../emulators/auth';
import { EmulatorClock } from '../../emulators/clock';
import type { KeyVaultCrypto } from '../../emulators/contracts';
import { KeyUseError } from '../../emulators/contracts';
import { startArmEmulator } from '../../emulators/arm';
import type { RunningArmEmulator } from '../../emulators/arm';
import { startAzureProxy } from '../../emulators/proxy';
import type { RunningProxy } from '../../emulators/proxy';
import { ensureDevCertificate } from '../../emulators/tls';

const SUB = '00000000-0000-0000-0000-0000000000aa';
const OTHER_SUB = '00000000-0000-0000-0000-0000000000bb';
const RG = 'rg-iot';
const PREVIEW = '2023-06-30-preview';
const GA = '2023-06-30';
const UAI = `/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/hub-cmk`;

/** Key Vault stand-in: real RSA-OAEP per key version (1024-bit: generated fast), versions can be disabled or never exist. */
class FakeKeyVault implements KeyVaultCrypto {
  private readonly versions = new Map<string, { publicKey: KeyObject; privateKey: KeyObject; enabled: boolean }>();

  createVersion(name: string): string {
    const id = `https://demo.vault.azure.net/keys/${name}/${randomBytes(16).toString('hex')}`;
    this.versions.set(id.toLowerCase(), { ...generateKeyPairSync('rsa', { modulusLength: 1024 }), enabled: true });
    return id;
  }

  disable(id: string): void {
    const version = this.versions.get(id.toLowerCase());
    if (version) version.enabled = false;
  }

  wrapKey(id: string, plaintext: Buffer): Promise<Buffer> {
    return this.use(id, (v) =>
      publicEncrypt({ key: v.publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING }, plaintext),
    );
  }

  unwrapKey(id: string, wrapped: Buffer): Promise<Buffer> {
    return this.use(id, (v) =>
      privateDecrypt({ key: v.privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING }, wrapped),
    );
  }

  private use(id: string, operation: (v: { publicKey: KeyObject; privateKey: KeyObject }) => Buffer): Promise<Buffer> {
    const version = this.versions.get(id.toLowerCase());
    if (!version) return Promise.reject(new KeyUseError('KeyNotFound', `Key ${id} was not found.`));
    if (!version.enabled) return Promise.reject(new KeyUseError('KeyDisabled', `Key ${id} is disabled.`));
    return Promise.resolve(operation(version));
  }
}

const credential: TokenCredential = {
  getToken: (scopes) =>
    Promise.resolve({
      token: issueToken([scopes].flat()[0]?.replace(/\/\.default$/, '') ?? ''),
      expiresOnTimestamp: Date.now() + 3600e3,
    }),
};

const hubPath = (name: string, rg = RG, sub = SUB): string =>
  `/subscriptions/${sub}/resourceGroups/${rg}/providers/Microsoft.Devices/IotHubs/${name}`;

function hubBody(keyIdentifier?: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    location: 'westeurope',
    sku: { name: 'S1', capacity: 1 },
    tags: { env: 'test' },
    identity: { type: 'UserAssigned', userAssignedIdentities: { [UAI]: {} } },
    properties: keyIdentifier
      ? {
          encryption: {
            keySource: 'Microsoft.KeyVault',
            keyVaultProperties: [{ keyIdentifier, identity: { userAssignedIdentity: UAI } }],
          },
        }
      : {},
    ...extra,
  };
}

interface HubJson {
  etag: string;
  tags?: Record<string, string>;
  properties: {
    provisioningState: string;
    hostName: string;
    encryption?: { keyVaultProperties: Array<{ keyIdentifier: string }> };
    [key: string]: unknown;
  };
  [key: string]: unknown;
}

const keyOf = (hub: unknown): string | undefined =>
  (hub as HubJson).properties.encryption?.keyVaultProperties[0]?.keyIdentifier;

interface RawResponse {
  status: number;
  headers: PipelineResponse['headers'];
  json: Record<string, unknown> & { error?: { code: string; message: string } };
}

const toRaw = (response: PipelineResponse): RawResponse => ({
  status: response.status,
  headers: response.headers,
  json: (response.bodyAsText ? JSON.parse(response.bodyAsText) : {}) as RawResponse['json'],
});

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('ARM emulator for Microsoft.Devices/IotHubs', () => {
  const tls = ensureDevCertificate(path.resolve('.data/test-tls'));
  const vault = new FakeKeyVault();
  const clock = new EmulatorClock();
  let arm: RunningArmEmulator;
  let proxy: RunningProxy;
  let client: IotHubClient;
  /** Same pipeline minus retries, to see exactly what the emulator answered. */
  let noRetryClient: IotHubClient;
  const proxyOptions = (): { host: string; port: number } => ({ host: 'http://127.0.0.1', port: proxy.port });
  const newClient = (maxRetries?: number): IotHubClient =>
    new IotHubClient(credential, SUB, {
      proxyOptions: proxyOptions(),
      retryOptions: { retryDelayInMs: 5, maxRetryDelayInMs: 20, ...(maxRetries === undefined ? {} : { maxRetries }) },
    });

  /** Raw ARM JSON through an SDK client's own pipeline (auth, proxy, retries); `target` is a path or absolute URL. */
  async function send(
    method: HttpMethods,
    target: string,
    options: { apiVersion?: string | null; body?: unknown; headers?: Record<string, string>; via?: IotHubClient } = {},
  ): Promise<RawResponse> {
    const apiVersion = options.apiVersion === undefined ? PREVIEW : options.apiVersion;
    let url = target.startsWith('https://') ? target : `https://management.azure.com${target}`;
    if (apiVersion !== null && !target.startsWith('https://')) url += `?api-version=${apiVersion}`;
    const response = await (options.via ?? client).sendRequest(
      createPipelineRequest({
        url,
        method,
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
        headers: createHttpHeaders({ 'content-type': 'application/json', ...options.headers }),
      }),
    );
    return toRaw(response);
  }

  async function waitForOperation(asyncOperationUrl: string): Promise<Record<string, unknown>> {
    for (;;) {
      const { json } = await send('GET', asyncOperationUrl);
      if (json.status !== 'Running') return json;
      await sleep(5);
    }
  }

  /** A preview PUT of `body` with If-Match, then polling until the operation ends. */
  async function previewPut(name: string, body: unknown, etag: string) {
    const put = await send('PUT', hubPath(name), { body, headers: { 'if-match': etag } });
    expect(put.status).toBe(201);
    const operation = await waitForOperation(put.headers.get('azure-asyncoperation') ?? '');
    return { put, operation };
  }

  const seed = (name: string, keyIdentifier?: string, extra?: Record<string, unknown>) =>
    arm.seedHub({ subscriptionId: SUB, resourceGroupName: RG, name, hub: hubBody(keyIdentifier, extra) });
  const ref = (name: string) => ({ subscriptionId: SUB, resourceGroupName: RG, name });

  beforeAll(async () => {
    arm = await startArmEmulator({
      tls,
      crypto: vault,
      clock,
      asyncOperationDelayMs: 20,
      retryAfterSeconds: 0,
      pageSize: 2,
    });
    proxy = await startAzureProxy({ routes: [{ host: 'management.azure.com', port: arm.port }] });
    client = newClient();
    noRetryClient = newClient(0);
  });

  beforeEach(() => arm.reset());

  afterAll(async () => {
    await proxy?.close();
    await arm?.close();
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
      const gaClient = newClient();
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
        { ifMatch: hub.etag, updateIntervalInMs: 5 },
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
      const body = structuredClone(current.json) as unknown as HubJson;
      Object.assign(body.properties, {
        encryption: (hubBody(v2).properties as HubJson['properties']).encryption,
        futureSetting: 'kept',
        hostName: 'evil.example.net',
        provisioningState: 'Failed',
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
  });

  describe('request validation', () => {
    it('enforces If-Match and If-None-Match with 412 PreconditionFailed, leaving the hub untouched', async () => {
      const v1 = vault.createVersion('etag');
      await seed('hub-etag', v1);
      const stale = await send('PUT', hubPath('hub-etag'), {
        body: hubBody(vault.createVersion('etag')),
        headers: { 'if-match': 'AAAAAAAAAAA=' },
      });
      expect(stale.status).toBe(412);
      expect(stale.json.error?.code).toBe('PreconditionFailed');
      const exists = await send('PUT', hubPath('hub-etag'), { body: hubBody(), headers: { 'if-none-match': '*' } });
      expect(exists.status).toBe(412);
      expect(keyOf(arm.getHub(ref('hub-etag')))).toBe(v1);
      await expect(
        client.iotHubResource.beginCreateOrUpdateAndWait(
          RG,
          'hub-etag',
          { location: 'westeurope', sku: { name: 'S1' } },
          {
            ifMatch: 'AAAAAAAAAAA=',
          },
        ),
      ).rejects.toMatchObject({ statusCode: 412, code: 'PreconditionFailed' });
    });

    it('rejects a missing or unknown api-version with 400 like ARM', async () => {
      const missing = await send('GET', hubPath('hub-any'), { apiVersion: null });
      expect(missing.status).toBe(400);
      expect(missing.json.error?.code).toBe('MissingApiVersionParameter');
      const unknown = await send('GET', hubPath('hub-any'), { apiVersion: '2099-01-01' });
      expect(unknown.status).toBe(400);
      expect(unknown.json.error?.code).toBe('NoRegisteredProviderFound');
      expect(unknown.json.error?.message).toContain('2023-06-30-preview');
    });

    it('answers 401 with a Bearer challenge without a token or with a token for another audience', async () => {
      const pipeline = createPipelineFromOptions({ proxyOptions: proxyOptions(), retryOptions: { maxRetries: 0 } });
      const httpClient = createDefaultHttpClient();
      const call = async (authorization?: string) =>
        toRaw(
          await pipeline.sendRequest(
            httpClient,
            createPipelineRequest({
              url: `https://management.azure.com${hubPath('hub-any')}?api-version=${PREVIEW}`,
              headers: createHttpHeaders(authorization ? { authorization } : {}),
            }),
          ),
        );
      const anonymous = await call();
      expect(anonymous.status).toBe(401);
      expect(anonymous.json.error?.code).toBe('AuthenticationFailed');
      expect(anonymous.headers.get('www-authenticate')).toMatch(
        /^Bearer authorization_uri="[^"]+", error="invalid_token"/,
      );
      const vaultToken = await call(`Bearer ${issueToken('https://vault.azure.net')}`);
      expect(vaultToken.status).toBe(401);
      expect(vaultToken.json.error?.code).toBe('InvalidAuthenticationTokenAudience');
    });

    it.each([
      ['not JSON', '{"location":', 'InvalidRequestContent', 'could not be deserialized'],
      ['no location', { sku: { name: 'S1' } }, 'LocationRequired', 'location'],
      ['no sku', { location: 'westeurope' }, 'InvalidRequestContent', "'sku'"],
      [
        'a bad sku',
        { location: 'westeurope', sku: { name: 'S9' } },
        'InvalidRequestContent',
        "'sku.name' must be one of",
      ],
      [
        'a versionless key',
        hubBody('https://demo.vault.azure.net/keys/cmk'),
        'InvalidRequestContent',
        "'properties.encryption.keyVaultProperties[0].keyIdentifier' must be a versioned key URL",
      ],
      [
        'an identity the hub does not have',
        { ...hubBody('https://demo.vault.azure.net/keys/cmk/0123456789abcdef0123456789abcdef'), identity: undefined },
        'InvalidRequestContent',
        'identity.userAssignedIdentities',
      ],
    ])('rejects a PUT body with %s: 400 naming the field', async (_, body, code, text) => {
      const response = await client.sendRequest(
        createPipelineRequest({
          url: `https://management.azure.com${hubPath('hub-bad')}?api-version=${PREVIEW}`,
          method: 'PUT',
          body: typeof body === 'string' ? body : JSON.stringify(body),
          headers: createHttpHeaders({ 'content-type': 'application/json' }),
        }),
      );
      const raw = toRaw(response);
      expect(raw.status).toBe(400);
      expect(raw.json.error?.code).toBe(code);
      expect(raw.json.error?.message).toContain(text);
      expect(arm.getHub(ref('hub-bad'))).toBeUndefined();
    });

    it('shows the requested state while an operation runs and refuses a second write with 409', async () => {
      const slow = await startArmEmulator({ tls, crypto: vault, asyncOperationDelayMs: 60_000, retryAfterSeconds: 7 });
      try {
        const direct = createPipelineFromOptions({ retryOptions: { maxRetries: 0 } });
        const httpClient = createDefaultHttpClient();
        const call = async (method: HttpMethods, url: string, body?: unknown) =>
          toRaw(
            await direct.sendRequest(
              httpClient,
              createPipelineRequest({
                url: url.startsWith('https://') ? url : `${slow.url}${url}?api-version=${PREVIEW}`,
                method,
                body: body === undefined ? undefined : JSON.stringify(body),
                headers: createHttpHeaders({ authorization: `Bearer ${issueToken('https://management.azure.com/')}` }),
              }),
            ),
          );
        const [v1, v2] = [vault.createVersion('slow'), vault.createVersion('slow')];
        await slow.seedHub({ ...ref('hub-slow'), hub: hubBody(v1) });

        const put = await call('PUT', hubPath('hub-slow'), hubBody(v2));
        const asyncUrl = put.headers.get('azure-asyncoperation') ?? '';
        expect(asyncUrl.startsWith(`${slow.url}/subscriptions/`)).toBe(true);
        expect(put.headers.get('retry-after')).toBe('7');

        const during = await call('GET', hubPath('hub-slow'));
        expect((during.json as unknown as HubJson).properties.provisioningState).toBe('Updating');
        expect(keyOf(during.json)).toBe(v2);
        expect((await call('GET', asyncUrl)).json).toEqual({ status: 'Running' });
        expect((await call('GET', asyncUrl.replace('&asyncinfo', ''))).status).toBe(202);
        const second = await call('PUT', hubPath('hub-slow'), hubBody(v1));
        expect(second.status).toBe(409);
        expect(second.json.error?.code).toBe('AnotherOperationInProgress');
        await expect(slow.checkHubData(ref('hub-slow'))).resolves.toEqual({ readable: true, keyIdentifier: v1 });
      } finally {
        await slow.close();
      }
    });
  });

  describe('fault injection', () => {
    it('adds per-call latency and records it in the request log', async () => {
      await seed('hub-latency');
      arm.faults.setLatency(15);
      await client.iotHubResource.get(RG, 'hub-latency');
      arm.faults.clear();
      await client.iotHubResource.get(RG, 'hub-latency');
      expect(arm.requests().map((r) => r.fault)).toEqual(['latency 15ms', undefined]);
    });

    it('answers the next matching requests with 5xx; the SDK retries through them', async () => {
      await seed('hub-flaky');
      arm.faults.failNextRequests({
        status: 503,
        count: 2,
        method: 'GET',
        path: '/IotHubs/hub-flaky',
        retryAfterSeconds: 0,
      });
      const hub = await client.iotHubResource.get(RG, 'hub-flaky');
      expect(hub.name).toBe('hub-flaky');
      expect(arm.requests().map((r) => r.status)).toEqual([503, 503, 200]);

      arm.faults.failNextRequests({ status: 500 });
      const raw = await send('GET', hubPath('hub-flaky'), { via: noRetryClient });
      expect(raw.status).toBe(500);
      expect(raw.json.error?.code).toBe('InternalServerError');
    });

    it('answers 429 with Retry-After; the SDK waits and retries the PUT', async () => {
      await seed('hub-429');
      arm.faults.failNextRequests({ status: 429, method: 'PUT', retryAfterSeconds: 0 });
      const raw = await send('PUT', hubPath('hub-429'), { body: hubBody(), via: noRetryClient });
      expect(raw.status).toBe(429);
      expect(raw.headers.get('retry-after')).toBe('0');
      expect(raw.json.error?.code).toBe('TooManyRequests');

      arm.faults.failNextRequests({ status: 429, method: 'PUT', retryAfterSeconds: 0 });
      arm.clearRequests();
      const updated = await client.iotHubResource.beginCreateOrUpdateAndWait(
        RG,
        'hub-429',
        { location: 'westeurope', sku: { name: 'S1' }, tags: { retried: 'yes' } },
        { updateIntervalInMs: 5 },
      );
      expect(updated.tags).toEqual({ retried: 'yes' });
      expect(
        arm
          .requests()
          .filter((r) => r.method === 'PUT')
          .map((r) => r.status),
      ).toEqual([429, 201]);
    });

    it('loses an ETag race: If-Match fails with 412 once, a re-read and retry succeeds', async () => {
      const [v1, v2] = [vault.createVersion('race'), vault.createVersion('race')];
      await seed('hub-race', v1);
      const first = await send('GET', hubPath('hub-race'));
      arm.faults.raceEtag(ref('hub-race'));

      const lost = await send('PUT', hubPath('hub-race'), {
        body: hubBody(v2),
        headers: { 'if-match': first.json.etag as string },
      });
      expect(lost.status).toBe(412);
      const reread = await send('GET', hubPath('hub-race'));
      expect(reread.json.etag).not.toBe(first.json.etag);
      const { operation } = await previewPut('hub-race', hubBody(v2), reread.json.etag as string);
      expect(operation.status).toBe('Succeeded');
      expect(keyOf(arm.getHub(ref('hub-race')))).toBe(v2);
      expect(
        arm
          .requests()
          .filter((r) => r.method === 'PUT')
          .map((r) => r.headers.ifMatch),
      ).toEqual([first.json.etag, reread.json.etag]);
    });

    it('fails the next long-running operation; the hub is rolled back and the next one succeeds', async () => {
      await seed('hub-op-fail');
      arm.faults.failNextOperations({ code: 'InternalServerError', message: 'Injected failure.' });
      const update = { location: 'westeurope', sku: { name: 'S1' }, tags: { attempt: 'one' } };
      await expect(
        client.iotHubResource.beginCreateOrUpdateAndWait(RG, 'hub-op-fail', update, { updateIntervalInMs: 5 }),
      ).rejects.toThrow(/InternalServerError/);
      expect(arm.getHub(ref('hub-op-fail'))?.tags).toEqual({ env: 'test' });

      const retried = await client.iotHubResource.beginCreateOrUpdateAndWait(RG, 'hub-op-fail', update, {
        updateIntervalInMs: 5,
      });
      expect(retried.tags).toEqual({ attempt: 'one' });
    });

    it('throttles writes per subscription with a token bucket: 429, Retry-After and remaining-writes', async () => {
      arm.faults.setThrottling({ enabled: true, burst: 2, refillPerSecond: 10 });
      const put = (name: string, sub = SUB) =>
        send('PUT', hubPath(name, RG, sub), { body: hubBody(), via: noRetryClient });

      const [a, b, c] = [await put('thr-a'), await put('thr-b'), await put('thr-c')];
      expect([a.status, b.status, c.status]).toEqual([201, 201, 429]);
      expect([a, b, c].map((r) => r.headers.get('x-ms-ratelimit-remaining-subscription-writes'))).toEqual([
        '1',
        '0',
        '0',
      ]);
      expect(c.headers.get('retry-after')).toBe('1');
      expect(c.json.error?.code).toBe('SubscriptionRequestsThrottled');
      expect((await send('GET', hubPath('thr-a'), { via: noRetryClient })).status).toBe(200);
      expect((await put('thr-other', OTHER_SUB)).status).toBe(201);

      clock.advance(1000);
      expect((await put('thr-c')).status).toBe(201);
    });

    it('the SDK honours the throttling Retry-After and gets through once the bucket refills', async () => {
      arm.faults.setThrottling({ enabled: true, burst: 1, refillPerSecond: 10 });
      await send('PUT', hubPath('thr-first'), { body: hubBody(), via: noRetryClient });
      const created = await client.iotHubResource.beginCreateOrUpdateAndWait(
        RG,
        'thr-second',
        { location: 'westeurope', sku: { name: 'S1' } },
        { updateIntervalInMs: 5 },
      );
      expect(created.properties?.provisioningState).toBe('Succeeded');
      expect(
        arm
          .requests()
          .filter((r) => r.method === 'PUT')
          .map((r) => r.status),
      ).toEqual([201, 429, 201]);
    });
  });

  describe('admin API over HTTP', () => {
    const admin = async (method: HttpMethods, adminPath: string, body?: unknown) => {
      const pipeline = createPipelineFromOptions({ retryOptions: { maxRetries: 0 } });
      return toRaw(
        await pipeline.sendRequest(
          createDefaultHttpClient(),
          createPipelineRequest({
            url: `${arm.url}${adminPath}`,
            method,
            body: body === undefined ? undefined : JSON.stringify(body),
          }),
        ),
      );
    };

    it('seeds hubs, checks their data, injects faults and shows the request log', async () => {
      const v1 = vault.createVersion('admin');
      const seeded = await admin('POST', '/_admin/hubs', { ...ref('hub-admin'), hub: hubBody(v1) });
      expect(seeded.status).toBe(201);
      expect(keyOf(seeded.json)).toBe(v1);
      expect((await admin('GET', `/_admin/hubs/${SUB}/${RG}/hub-admin/data`)).json).toEqual({
        readable: true,
        keyIdentifier: v1,
      });

      expect((await admin('POST', '/_admin/faults/requests', { status: 502, path: 'hub-admin' })).status).toBe(204);
      expect((await send('GET', hubPath('hub-admin'), { via: noRetryClient })).status).toBe(502);
      expect((await admin('POST', '/_admin/faults/etag-races', { ...ref('hub-admin') })).status).toBe(204);
      expect((await admin('PUT', '/_admin/throttling', { enabled: true, burst: 5 })).status).toBe(204);
      expect((await admin('DELETE', '/_admin/faults')).status).toBe(204);

      const log = await admin('GET', '/_admin/requests');
      expect(log.json.value).toMatchObject([{ method: 'GET', status: 502, fault: 'status 502', apiVersion: PREVIEW }]);
      expect(JSON.stringify(log.json)).not.toMatch(/authorization|Bearer/i);

      expect((await admin('POST', '/_admin/reset')).status).toBe(204);
      expect((await admin('GET', '/_admin/hubs')).json).toEqual({ value: [] });
    });

    it('answers bad admin input with 400 naming the field', async () => {
      const badFault = await admin('POST', '/_admin/faults/requests', { status: 418 });
      expect(badFault.status).toBe(400);
      expect(badFault.json.error?.message).toContain("'status'");
      const badSeed = await admin('POST', '/_admin/hubs', { ...ref('hub-admin-bad'), hub: { location: 'westeurope' } });
      expect(badSeed.status).toBe(400);
      expect(badSeed.json.error?.message).toContain("'sku'");
      const unknownHub = await admin('POST', '/_admin/faults/etag-races', { ...ref('hub-nowhere') });
      expect(unknownHub.status).toBe(404);
    });
  });
});
