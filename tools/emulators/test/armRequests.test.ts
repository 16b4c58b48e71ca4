// Contract tests for the ARM emulator's request handling: validation, preconditions, injected faults, write
// throttling and the admin API (see arm-bed.ts for the client set-up).
import {
  createDefaultHttpClient,
  createHttpHeaders,
  createPipelineFromOptions,
  createPipelineRequest,
} from '@azure/core-rest-pipeline';
import type { HttpMethods } from '@azure/core-rest-pipeline';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { issueToken } from '../src/auth';
import { startArmEmulator } from '../src/arm';
import type { IotHubClient } from '@azure/arm-iothub';
import type { RunningArmEmulator } from '../src/arm';
import type { EmulatorClock } from '../src/clock';
import { ensureDevCertificate } from '../src/tls';
import { hubBody, hubPath, jsonBody, keyOf, OTHER_SUB, PREVIEW, ref, RG, startArmBed, SUB, toRaw } from './armBed';
import type { ArmBed, FakeKeyVault, HubJson } from './armBed';

const tls = ensureDevCertificate(path.resolve('.data/test-tls'));

describe('ARM emulator for Microsoft.Devices/IotHubs: requests', () => {
  let bed: ArmBed;
  let arm: RunningArmEmulator;
  let vault: FakeKeyVault;
  let clock: EmulatorClock;
  let client: IotHubClient;
  let noRetryClient: IotHubClient;
  const send: ArmBed['send'] = (method, target, options) => bed.send(method, target, options);
  const previewPut: ArmBed['previewPut'] = (name, body, etag) => bed.previewPut(name, body, etag);
  const seed: ArmBed['seed'] = (name, keyIdentifier, extra) => bed.seed(name, keyIdentifier, extra);

  beforeAll(async () => {
    bed = await startArmBed();
    ({ arm, vault, clock, client, noRetryClient } = bed);
  });

  beforeEach(() => arm.reset());

  afterAll(async () => {
    await bed?.close();
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
      expect(stale.json).toMatchObject({ code: '412001', httpStatusCode: 'PreconditionFailed' });
      expect(stale.json.error).toBeUndefined();
      expect(stale.json.message).toMatch(
        /correlation identifier: [0-9a-f-]{36}, timestamp: .+, errorcode: IH412001\.$/,
      );
      expect(stale.json.message).toContain(stale.headers.get('x-ms-request-id') ?? 'no request id');
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
      ).rejects.toMatchObject({ statusCode: 412, code: '412001' });
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
      const pipeline = createPipelineFromOptions({ proxyOptions: bed.proxyOptions(), retryOptions: { maxRetries: 0 } });
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

    // Malformed JSON and a missing location are ARM's own checks; the rest is the IoT Hub RP validating its body.
    it.each([
      ['not JSON', '{"location":', 'InvalidRequestContent', 'could not be deserialized'],
      ['no location', { sku: { name: 'S1' } }, 'LocationRequired', 'location'],
      ['no sku', { location: 'westeurope' }, '400004', "'sku'"],
      ['a bad sku', { location: 'westeurope', sku: { name: 'S9' } }, '400004', "'sku.name' must be one of"],
      [
        'a versionless key',
        hubBody('https://demo.vault.azure.net/keys/cmk'),
        '400004',
        "'properties.encryption.keyVaultProperties[0].keyIdentifier' must be a versioned key URL",
      ],
      [
        'an identity the hub does not have',
        { ...hubBody('https://demo.vault.azure.net/keys/cmk/0123456789abcdef0123456789abcdef'), identity: undefined },
        '400004',
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
      if (/^\d+$/.test(code)) {
        expect(raw.json).toMatchObject({ code, httpStatusCode: 'BadRequest' });
        expect(raw.json.message).toContain(text);
      } else {
        expect(raw.json.error?.code).toBe(code);
        expect(raw.json.error?.message).toContain(text);
      }
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
                ...jsonBody(body),
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
        expect((during.json as unknown as HubJson).properties).toMatchObject({
          provisioningState: 'Updating',
          state: 'Transitioning',
        });
        expect(keyOf(during.json)).toBe(v2);
        expect((await call('GET', asyncUrl)).json).toEqual({ status: 'Running' });
        expect((await call('GET', asyncUrl.replace('&asyncinfo', ''))).status).toBe(202);
        const second = await call('PUT', hubPath('hub-slow'), hubBody(v1));
        expect(second.status).toBe(409);
        expect(second.json).toMatchObject({ code: '409002', httpStatusCode: 'Conflict' });
        expect(second.json.message).toContain('hub-slow is not currently in Active state');
        expect(second.json.message).toMatch(/errorcode: IH409002\.$/);
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
    const admin: ArmBed['admin'] = (method, adminPath, body) => bed.admin(method, adminPath, body);

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
      expect(badSeed.json.message).toContain("'sku'");
      const unknownHub = await admin('POST', '/_admin/faults/etag-races', { ...ref('hub-nowhere') });
      expect(unknownHub.status).toBe(404);
    });
  });
});
