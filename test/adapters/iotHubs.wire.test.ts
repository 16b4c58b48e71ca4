// The IoT hub adapter on the wire, through a recording transport: which URLs it will send the app's bearer token to,
// what it sends on PUT, and how it reads ARM's and IoT Hub's error answers.
import { createHttpHeaders } from '@azure/core-rest-pipeline';
import type { HttpClient, PipelineRequest, PipelineResponse } from '@azure/core-rest-pipeline';
import { describe, expect, it } from 'vitest';
import { SharedArmBudget } from '../../src/adapters/armBudget';
import type { BucketState, BucketStore } from '../../src/adapters/armBudget';
import { IotHubAdapter } from '../../src/adapters/iotHubs';
import { EtagConflictError, ThrottledError, UpstreamUnavailableError, ValidationError } from '../../src/domain/errors';

const SUB = '11111111-1111-1111-1111-111111111111';
const HUB_ID = `/subscriptions/${SUB}/resourceGroups/rg-iot/providers/Microsoft.Devices/IotHubs/hub-1`;
const API_VERSION = '2025-08-01-preview';

class MemoryBuckets implements BucketStore {
  private readonly rows = new Map<string, { state: BucketState; etag: string }>();
  private n = 0;
  read(id: string) {
    return Promise.resolve(this.rows.get(id));
  }
  write(id: string, state: BucketState, etag: string | undefined) {
    if (this.rows.get(id)?.etag !== etag) return Promise.resolve(undefined);
    const next = `e${++this.n}`;
    this.rows.set(id, { state, etag: next });
    return Promise.resolve(next);
  }
}

type Answer = { status: number; body?: unknown; headers?: Record<string, string> };

/** Records every request and answers from `answer`; the token it saw is kept to check where it went. */
function transport(answer: (request: PipelineRequest) => Answer) {
  const sent: { method: string; url: string; authorization: string | undefined; body: string | undefined }[] = [];
  const client: HttpClient = {
    sendRequest(request): Promise<PipelineResponse> {
      sent.push({
        method: request.method,
        url: request.url,
        authorization: request.headers.get('authorization'),
        body: typeof request.body === 'string' ? request.body : undefined,
      });
      const a = answer(request);
      return Promise.resolve({
        request,
        status: a.status,
        headers: createHttpHeaders(a.headers ?? {}),
        bodyAsText: a.body === undefined ? '' : JSON.stringify(a.body),
      });
    },
  };
  return { client, sent };
}

function adapter(answer: (request: PipelineRequest) => Answer) {
  const wire = transport(answer);
  const hubs = new IotHubAdapter(
    { getToken: () => Promise.resolve({ token: 'secret-arm-token', expiresOnTimestamp: Date.now() + 3_600_000 }) },
    {
      armEndpoint: 'https://management.azure.com',
      subscriptionIds: [SUB],
      apiVersion: API_VERSION,
      budget: new SharedArmBudget(new MemoryBuckets()),
      httpClient: wire.client,
    },
  );
  return { hubs, sent: wire.sent };
}

const hubBody = { id: HUB_ID, name: 'hub-1', etag: '"e1"', properties: { provisioningState: 'Succeeded' } };

describe('IotHubAdapter: where the bearer token may go', () => {
  it.each([
    ['an absolute URL on another host', `https://capture.example${HUB_ID}`],
    ['a scheme-relative URL', `//capture.example${HUB_ID}`],
    ['a subscription that is not configured', HUB_ID.replace(SUB, '99999999-9999-9999-9999-999999999999')],
    ['a path that is not an IoT hub', `/subscriptions/${SUB}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/v`],
  ])('refuses a hub id that is %s, sending nothing', async (_what, hubId) => {
    const { hubs, sent } = adapter(() => ({ status: 200, body: hubBody }));
    await expect(hubs.get(hubId)).rejects.toBeInstanceOf(ValidationError);
    expect(sent).toEqual([]);
  });

  it('refuses an operation URL or Location on another origin, sending nothing there', async () => {
    const { hubs, sent } = adapter(() => ({ status: 200, body: { status: 'Succeeded' } }));
    await expect(hubs.operationState('https://capture.example/operations/1')).rejects.toMatchObject({
      code: 'UPSTREAM_REJECTED',
    });
    await expect(hubs.operationState('http://management.azure.com/operations/1')).rejects.toMatchObject({
      code: 'UPSTREAM_REJECTED',
    });
    expect(sent).toEqual([]);
  });

  it('follows nextLink only on the ARM endpoint: a planted one fails the listing before anything is sent to it', async () => {
    const { hubs, sent } = adapter((request) =>
      request.url.includes('capture.example')
        ? { status: 200, body: { value: [] } }
        : { status: 200, body: { value: [hubBody], nextLink: 'https://capture.example/next?token=1' } },
    );
    await expect(hubs.listAll()).rejects.toMatchObject({ code: 'UPSTREAM_REJECTED' });
    expect(sent.map((r) => new URL(r.url).host)).toEqual(['management.azure.com']);
    expect(sent[0]!.authorization).toBe('Bearer secret-arm-token');
  });

  it('a listing throttled for a moment waits for its turn instead of failing the planning', async () => {
    const answers: Answer[] = [
      { status: 429, body: { error: { code: 'SubscriptionRequestsThrottled' } }, headers: { 'retry-after': '1' } },
      { status: 200, body: { value: [hubBody] } },
    ];
    const { hubs, sent } = adapter(() => answers.shift()!);
    expect((await hubs.listAll()).map((h) => h.id)).toEqual([HUB_ID]);
    expect(sent).toHaveLength(2);
  });

  it('a listing throttled for longer than a delivery can wait fails as throttled (Event Grid retries)', async () => {
    const { hubs } = adapter(() => ({
      status: 429,
      body: { error: { code: 'SubscriptionRequestsThrottled' } },
      headers: { 'retry-after': '60' },
    }));
    await expect(hubs.listAll()).rejects.toBeInstanceOf(ThrottledError);
  });

  it('ignores listed resources whose id is not a hub of a configured subscription', async () => {
    const foreign = { ...hubBody, id: `https://capture.example${HUB_ID}` };
    const { hubs } = adapter(() => ({ status: 200, body: { value: [hubBody, foreign] } }));
    expect((await hubs.listAll()).map((h) => h.id)).toEqual([HUB_ID]);
  });
});

describe('IotHubAdapter: the PUT and its answers', () => {
  it('sends the body with If-Match and the preview api-version, and returns the operation to poll', async () => {
    const { hubs, sent } = adapter(() => ({
      status: 201,
      body: hubBody,
      headers: {
        'azure-asyncoperation': `https://management.azure.com/subscriptions/${SUB}/providers/Microsoft.Devices/locations/westeurope/operationResults/op1?api-version=${API_VERSION}&asyncinfo`,
        'retry-after': '15',
      },
    }));
    const started = await hubs.beginReplace({ id: HUB_ID, name: 'hub-1', etag: '"e1"', body: hubBody }, { a: 1 });
    expect(started).toEqual({ operationUrl: expect.stringContaining('/operationResults/op1'), retryAfterMs: 15_000 });
    expect(sent[0]).toMatchObject({ method: 'PUT', body: '{"a":1}' });
    expect(new URL(sent[0]!.url).searchParams.get('api-version')).toBe(API_VERSION);
  });

  it('reads an operation: running with its Retry-After, succeeded, or failed with ARM error text', async () => {
    const answers: Answer[] = [
      { status: 200, body: { status: 'InProgress' }, headers: { 'retry-after': '20' } },
      { status: 200, body: { status: 'Succeeded' } },
      { status: 200, body: { status: 'Failed', error: { code: 'InternalServerError', message: 'boom' } } },
      { status: 202, headers: { 'retry-after': '5' } },
    ];
    const { hubs } = adapter(() => answers.shift()!);
    const url = `https://management.azure.com/subscriptions/${SUB}/providers/Microsoft.Devices/locations/weu/operationResults/op1`;
    expect(await hubs.operationState(url)).toEqual({ status: 'running', retryAfterMs: 20_000 });
    expect(await hubs.operationState(url)).toEqual({ status: 'succeeded' });
    expect(await hubs.operationState(url)).toEqual({ status: 'failed', error: 'InternalServerError: boom' });
    expect(await hubs.operationState(url)).toEqual({ status: 'running', retryAfterMs: 5_000 });
  });

  it('maps 412 to an ETag conflict, 429 to throttling with its Retry-After (which then holds the writes back)', async () => {
    const answers: Answer[] = [
      { status: 412, body: { code: '412001', httpStatusCode: 'PreconditionFailed', message: 'etag mismatch' } },
      {
        status: 429,
        body: { error: { code: 'TooManyRequests', message: 'slow down' } },
        headers: { 'retry-after': '20' },
      },
    ];
    const { hubs, sent } = adapter(() => answers.shift()!);
    const hub = { id: HUB_ID, name: 'hub-1', etag: '"e1"', body: hubBody };
    await expect(hubs.beginReplace(hub, {})).rejects.toBeInstanceOf(EtagConflictError);
    const throttled = await hubs.beginReplace(hub, {}).catch((e: unknown) => e);
    expect(throttled).toBeInstanceOf(ThrottledError);
    expect((throttled as ThrottledError).retryAfterMs).toBe(20_000);
    // The subscription's writes now wait out the Retry-After: the next PUT is not even sent.
    const held = await hubs.beginReplace(hub, {}).catch((e: unknown) => e);
    expect(held).toBeInstanceOf(ThrottledError);
    expect((held as ThrottledError).retryAfterMs).toBeGreaterThan(15_000);
    expect(sent).toHaveLength(2);
  });

  it('maps 409 (another operation runs on the hub) to a transient failure that keeps the code', async () => {
    const { hubs } = adapter(() => ({
      status: 409,
      body: { code: '409002', httpStatusCode: 'Conflict', message: 'operation in progress' },
    }));
    const hub = { id: HUB_ID, name: 'hub-1', etag: '"e1"', body: hubBody };
    const conflict = await hubs.beginReplace(hub, {}).catch((e: unknown) => e);
    expect(conflict).toBeInstanceOf(UpstreamUnavailableError);
    expect((conflict as Error).message).toContain('409002');
  });

  it("keeps IoT Hub's top-level error code (numeric) in the error, and never the token", async () => {
    const { hubs } = adapter(() => ({
      status: 400,
      body: { code: '400083', httpStatusCode: 'BadRequest', message: 'The key vault key is not accessible' },
    }));
    const error = (await hubs.get(HUB_ID).catch((e: unknown) => e)) as Error & { code: string };
    expect(error.code).toBe('UPSTREAM_REJECTED');
    expect(error.message).toContain('400083');
    expect(error.message).not.toContain('secret-arm-token');
  });
});
