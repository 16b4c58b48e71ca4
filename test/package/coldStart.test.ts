// The built app (dist/main.mjs) loads no Azure SDK until a function calls a port that needs one: health answers
// without any, and the first use of storage brings its SDK in. (How long start-up takes is the bench's business.)
// The signal: every Azure SDK shares @azure/logger, which, when it is evaluated, complains once on stderr about an
// unknown AZURE_LOG_LEVEL; the bundle carries its own copy, evaluated afresh with each load of the bundle.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { RpcHttpData } from '@cmk-rotator/local-host/coreApi';
import type { LoadedApp } from '@cmk-rotator/local-host/registry';
import { loadFunctionApp } from '@cmk-rotator/local-host/registry';

const SDK_LOADED = 'sdk-evaluated';
// Azurite's published development key: the storage below is this test's own server, which refuses everything.
const DEV_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

let storage: http.Server;
let app: LoadedApp;
const saved: Record<string, string | undefined> = {};
const errors = vi.spyOn(console, 'error').mockImplementation(() => undefined);
const sdkLoaded = () => errors.mock.calls.some((args) => String(args[0]).includes(`'${SDK_LOADED}'`));

function get(functionName: string, url: string): Promise<RpcHttpData | undefined> {
  const { searchParams } = new URL(url);
  const nullableQuery = Object.fromEntries([...searchParams].map(([name, value]) => [name, { value }]));
  return app
    .invoke(functionName, {
      trigger: { http: { method: 'GET', url, nullableHeaders: {}, nullableQuery, nullableParams: {} } },
      reason: 'test',
    })
    .then((response) => response.returnValue?.http ?? undefined);
}

beforeAll(async () => {
  if (!existsSync('dist/main.mjs')) execFileSync(process.execPath, ['scripts/build.mjs']);
  storage = http.createServer((_, res) => res.writeHead(403).end());
  await new Promise<void>((resolve) => storage.listen(0, '127.0.0.1', resolve));
  const { port } = storage.address() as AddressInfo;
  const settings: Record<string, string> = {
    ROTATOR_ALLOWED_VAULTS: 'https://demo.vault.azure.net',
    ROTATOR_SUBSCRIPTION_IDS: '00000000-0000-0000-0000-000000000001',
    AzureWebJobsStorage: `DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=${DEV_KEY};TableEndpoint=http://127.0.0.1:${port}/devstoreaccount1;`,
    AZURE_LOG_LEVEL: SDK_LOADED,
  };
  for (const [name, value] of Object.entries(settings)) {
    saved[name] = process.env[name];
    process.env[name] = value;
  }
  app = await loadFunctionApp('.', { log: () => undefined });
}, 60_000);

afterAll(async () => {
  // The SDK keeps its connection alive for reuse; close it rather than wait for it to idle out.
  storage?.closeAllConnections();
  await new Promise((resolve) => storage?.close(resolve));
  for (const [name, value] of Object.entries(saved)) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  errors.mockRestore();
});

describe('a cold start of dist/main.mjs', () => {
  it('answers health without evaluating any Azure SDK', async () => {
    expect(sdkLoaded()).toBe(false);
    const answer = await get('health', 'http://localhost/api/health');
    expect(answer?.statusCode).toBe('200');
    expect(sdkLoaded()).toBe(false);
  });

  it('loads the storage SDK when a function first reads a table', async () => {
    const answer = await get(
      'rotationHistory',
      'http://localhost/api/rotations?keyId=https://demo.vault.azure.net/keys/k',
    );
    expect(sdkLoaded()).toBe(true);
    // The test's storage refused the read.
    expect(answer?.statusCode).toMatch(/^5\d\d$/);
  });
});
