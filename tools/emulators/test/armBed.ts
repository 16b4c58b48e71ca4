// Test bed for the ARM emulator: the real @azure/arm-iothub client and raw preview-api JSON through the client's own
// pipeline, over HTTPS through the CONNECT proxy, exactly as the rotator talks to https://management.azure.com.
import { constants, generateKeyPairSync, privateDecrypt, publicEncrypt, randomBytes } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import path from 'node:path';
import { IotHubClient } from '@azure/arm-iothub';
import type { TokenCredential } from '@azure/identity';
import {
  createDefaultHttpClient,
  createHttpHeaders,
  createPipelineFromOptions,
  createPipelineRequest,
} from '@azure/core-rest-pipeline';
import type { HttpMethods, PipelineResponse } from '@azure/core-rest-pipeline';
import { expect } from 'vitest';
import { issueToken } from '../src/auth';
import { EmulatorClock } from '../src/clock';
import type { KeyVaultCrypto } from '../src/contracts';
import { KeyUseError } from '../src/contracts';
import { startArmEmulator } from '../src/arm';
import type { ArmEmulatorOptions, RunningArmEmulator } from '../src/arm';
import { startAzureProxy } from '../src/proxy';
import type { RunningProxy } from '../src/proxy';
import { ensureDevCertificate } from '../src/tls';

export const SUB = '00000000-0000-0000-0000-0000000000aa';
export const OTHER_SUB = '00000000-0000-0000-0000-0000000000bb';
export const RG = 'rg-iot';
export const PREVIEW = '2023-06-30-preview';
export const GA = '2023-06-30';
export const UAI = `/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/hub-cmk`;

/** Key Vault stand-in: real RSA-OAEP per key version (1024-bit: generated fast), versions can be disabled or never exist. */
export class FakeKeyVault implements KeyVaultCrypto {
  private readonly versions = new Map<string, { publicKey: KeyObject; privateKey: KeyObject; enabled: boolean }>();

  createVersion(name: string): string {
    const id = `https://demo.vault.azure.net/keys/${name}/${randomBytes(16).toString('hex')}`;
    this.versions.set(id.toLowerCase(), { ...generateKeyPairSync('rsa', { modulusLength: 1024 }), enabled: true });
    return id;
  }

  disable(id: string): void {
    this.setEnabled(id, false);
  }

  enable(id: string): void {
    this.setEnabled(id, true);
  }

  private setEnabled(id: string, enabled: boolean): void {
    const version = this.versions.get(id.toLowerCase());
    if (version) version.enabled = enabled;
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

  unwrapRefusal(id: string): KeyUseError | undefined {
    const version = this.versions.get(id.toLowerCase());
    if (!version) return new KeyUseError('KeyNotFound', `Key ${id} was not found.`);
    return version.enabled ? undefined : new KeyUseError('KeyDisabled', `Key ${id} is disabled.`);
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

export const hubPath = (name: string, rg = RG, sub = SUB): string =>
  `/subscriptions/${sub}/resourceGroups/${rg}/providers/Microsoft.Devices/IotHubs/${name}`;

export function hubBody(keyIdentifier?: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
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

export interface HubJson {
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

/** What a careful client sends back: the GET body minus the spec's read-only fields (etag and unknown fields stay). */
export function writableCopy(hub: Record<string, unknown>): HubJson {
  const { id: _id, name: _name, type: _type, systemData: _systemData, ...body } = structuredClone(hub) as HubJson;
  delete (body.sku as Record<string, unknown>).tier;
  const identity = body.identity as { userAssignedIdentities?: Record<string, unknown> } | undefined;
  for (const id of Object.keys(identity?.userAssignedIdentities ?? {})) identity!.userAssignedIdentities![id] = {};
  for (const field of ['provisioningState', 'state', 'hostName', 'locations']) delete body.properties[field];
  const endpoints = body.properties.eventHubEndpoints as Record<string, Record<string, unknown>> | undefined;
  for (const endpoint of Object.values(endpoints ?? {})) {
    for (const field of ['partitionIds', 'path', 'endpoint']) delete endpoint[field];
  }
  return body;
}

export const keyOf = (hub: unknown): string | undefined =>
  (hub as HubJson).properties.encryption?.keyVaultProperties[0]?.keyIdentifier;

export interface RawResponse {
  status: number;
  headers: PipelineResponse['headers'];
  /** ARM's own errors: `{ error: { code, message } }`; the IoT Hub RP's: ErrorDetails at the top level. */
  json: Record<string, unknown> & {
    error?: { code: string; message: string };
    code?: string;
    httpStatusCode?: string;
    message?: string;
  };
}

export const toRaw = (response: PipelineResponse): RawResponse => ({
  status: response.status,
  headers: response.headers,
  json: (response.bodyAsText ? JSON.parse(response.bodyAsText) : {}) as RawResponse['json'],
});

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export const ref = (name: string, subscriptionId = SUB) => ({ subscriptionId, resourceGroupName: RG, name });

export interface ArmBed {
  arm: RunningArmEmulator;
  proxy: RunningProxy;
  vault: FakeKeyVault;
  clock: EmulatorClock;
  client: IotHubClient;
  /** Same pipeline minus retries, to see exactly what the emulator answered. */
  noRetryClient: IotHubClient;
  newClient(maxRetries?: number): IotHubClient;
  proxyOptions(): { host: string; port: number };
  /** Raw ARM JSON through an SDK client's own pipeline (auth, proxy, retries); `target` is a path or absolute URL. */
  send(
    method: HttpMethods,
    target: string,
    options?: { apiVersion?: string | null; body?: unknown; headers?: Record<string, string>; via?: IotHubClient },
  ): Promise<RawResponse>;
  waitForOperation(asyncOperationUrl: string): Promise<Record<string, unknown>>;
  /** A preview PUT of `body` with If-Match, then polling until the operation ends. */
  previewPut(
    name: string,
    body: unknown,
    etag: string,
  ): Promise<{ put: RawResponse; operation: Record<string, unknown> }>;
  seed(name: string, keyIdentifier?: string, extra?: Record<string, unknown>): Promise<Record<string, unknown>>;
  /** The emulator's admin API over plain HTTPS (no auth, no proxy). */
  admin(method: HttpMethods, adminPath: string, body?: unknown): Promise<RawResponse>;
  close(): Promise<void>;
}

/** A pipeline request's JSON body, or none (an absent body is left out, not set to undefined). */
export const jsonBody = (body: unknown): { body?: string } =>
  body === undefined ? {} : { body: JSON.stringify(body) };

export async function startArmBed(options: Partial<ArmEmulatorOptions> = {}): Promise<ArmBed> {
  const tls = ensureDevCertificate(path.resolve('.data/test-tls'));
  const vault = new FakeKeyVault();
  const clock = new EmulatorClock();
  const arm = await startArmEmulator({
    tls,
    crypto: vault,
    clock,
    asyncOperationDelayMs: 20,
    retryAfterSeconds: 0,
    pageSize: 2,
    ...options,
  });
  const proxy = await startAzureProxy({ routes: [{ host: 'management.azure.com', port: arm.port }] });
  const proxyOptions = (): { host: string; port: number } => ({ host: 'http://127.0.0.1', port: proxy.port });
  const newClient = (maxRetries?: number): IotHubClient =>
    new IotHubClient(credential, SUB, {
      proxyOptions: proxyOptions(),
      retryOptions: { retryDelayInMs: 5, maxRetryDelayInMs: 20, ...(maxRetries === undefined ? {} : { maxRetries }) },
    });
  const client = newClient();
  const noRetryClient = newClient(0);

  const send: ArmBed['send'] = async (method, target, sendOptions = {}) => {
    const apiVersion = sendOptions.apiVersion === undefined ? PREVIEW : sendOptions.apiVersion;
    let url = target.startsWith('https://') ? target : `https://management.azure.com${target}`;
    if (apiVersion !== null && !target.startsWith('https://')) url += `?api-version=${apiVersion}`;
    const response = await (sendOptions.via ?? client).sendRequest(
      createPipelineRequest({
        url,
        method,
        ...jsonBody(sendOptions.body),
        headers: createHttpHeaders({ 'content-type': 'application/json', ...sendOptions.headers }),
      }),
    );
    return toRaw(response);
  };

  const waitForOperation: ArmBed['waitForOperation'] = async (asyncOperationUrl) => {
    for (;;) {
      const { json } = await send('GET', asyncOperationUrl);
      if (json.status !== 'Running') return json;
      await sleep(5);
    }
  };

  return {
    arm,
    proxy,
    vault,
    clock,
    client,
    noRetryClient,
    newClient,
    proxyOptions,
    send,
    waitForOperation,
    previewPut: async (name, body, etag) => {
      const put = await send('PUT', hubPath(name), { body, headers: { 'if-match': etag } });
      expect(put.status).toBe(201);
      const operation = await waitForOperation(put.headers.get('azure-asyncoperation') ?? '');
      return { put, operation };
    },
    seed: (name, keyIdentifier, extra) =>
      arm.seedHub({ subscriptionId: SUB, resourceGroupName: RG, name, hub: hubBody(keyIdentifier, extra) }),
    admin: async (method, adminPath, body) => {
      const pipeline = createPipelineFromOptions({ retryOptions: { maxRetries: 0 } });
      return toRaw(
        await pipeline.sendRequest(
          createDefaultHttpClient(),
          createPipelineRequest({
            url: `${arm.url}${adminPath}`,
            method,
            ...jsonBody(body),
          }),
        ),
      );
    },
    close: async () => {
      await proxy.close();
      await arm.close();
    },
  };
}
