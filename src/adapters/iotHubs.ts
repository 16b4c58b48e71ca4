// IoT hubs through ARM. @azure/arm-iothub 6.3.0 speaks the GA api-version, whose model has no
// `properties.encryption`: its typed update silently drops the key change. So hubs travel as raw JSON with a
// preview api-version, through the IotHubClient's own pipeline (auth, retries on 5xx and on throttled reads,
// tracing stay the SDK's; writes are paced per subscription by the ARM write budget, which alone handles their
// 429s). ARM PUT replaces the whole resource: the body we PUT is the body we read, with only the key identifier
// changed, guarded by If-Match.
import type { TokenCredential } from '@azure/core-auth';
import { createPipelineRequest, createHttpHeaders } from '@azure/core-rest-pipeline';
import type { PipelineResponse } from '@azure/core-rest-pipeline';
import { IotHubClient } from '@azure/arm-iothub';
import { mapWithConcurrency } from '../domain/concurrency';
import { EtagConflictError, UpstreamRejectedError, UpstreamUnavailableError } from '../domain/errors';
import type { HubDocument, HubRepository, JsonObject } from '../domain/ports';
import { ArmWriteBudget, armWriteBudgetPolicy, retryAfterMs } from './armWriteBudget';
import { guard, toRotatorError } from './azureErrors';
import { keepAliveThroughProxy } from './proxyTunnel';

/** The newest api-version whose IotHub model carries `properties.encryption`. */
export const HUB_API_VERSION = '2023-06-30-preview';

export interface IotHubAdapterOptions {
  armEndpoint: string;
  subscriptionIds: readonly string[];
  /** Poll interval when ARM sends no Retry-After with a long-running operation. */
  defaultPollIntervalMs?: number;
  /** Give up waiting on one hub's long-running operation after this long (it is reported transient). */
  maxOperationMs?: number;
  /** Pause between polls: injectable so tests need not wait real seconds. */
  sleep?: (ms: number) => Promise<void>;
}

const TERMINAL_FAILURES = new Set(['failed', 'canceled', 'cancelled']);
/** A write that would wait longer than this for its subscription's budget is deferred (transient) instead. */
const MAX_WRITE_WAIT_MS = 5 * 60_000;
/** Subscriptions listed at once (ARM meters reads per subscription, so they do not compete). */
const LISTING_CONCURRENCY = 16;

export class IotHubAdapter implements HubRepository {
  private readonly client: IotHubClient;
  private readonly sleep: (ms: number) => Promise<void>;
  private listing: Promise<HubDocument[]> | undefined;

  constructor(
    credential: TokenCredential,
    private readonly options: IotHubAdapterOptions,
  ) {
    // The subscription id is part of the typed operations' URLs only; every request here carries its own URL.
    this.client = new IotHubClient(credential, options.subscriptionIds[0] ?? '', {
      endpoint: options.armEndpoint,
      credentialScopes: [`${options.armEndpoint}/.default`],
      retryOptions: { maxRetries: 6, maxRetryDelayInMs: 60_000 },
      additionalPolicies: keepAliveThroughProxy(),
    });
    // After the retry phase: every attempt, retries included, waits for its turn and reports back.
    this.client.pipeline.addPolicy(armWriteBudgetPolicy(new ArmWriteBudget(), { maxWaitMs: MAX_WRITE_WAIT_MS }), {
      afterPhase: 'Retry',
    });
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
  }

  /**
   * Concurrent callers (a burst of events) share one listing in flight instead of each paging every subscription;
   * a caller never gets a listing that finished before it asked. Subscriptions are paged in parallel: ARM meters
   * reads per subscription.
   */
  listAll(): Promise<HubDocument[]> {
    this.listing ??= mapWithConcurrency(this.options.subscriptionIds, LISTING_CONCURRENCY, (sub) =>
      this.listSubscription(sub),
    )
      .then((perSubscription) => perSubscription.flat())
      .finally(() => {
        this.listing = undefined;
      });
    return this.listing;
  }

  async get(hubId: string): Promise<HubDocument> {
    const response = await this.send('GET', this.url(hubId), `hub ${hubId}`);
    return toHub(parseJson(response, `hub ${hubId}`), response);
  }

  async replace(hub: HubDocument, body: JsonObject): Promise<HubDocument> {
    const what = `hub ${hub.id}`;
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (hub.etag) headers['if-match'] = hub.etag;
    const response = await this.send('PUT', this.url(hub.id), what, JSON.stringify(body), headers, [412]);
    if (response.status === 412) throw new EtagConflictError(hub.id);
    await this.waitForOperation(response, hub.id);
    return this.get(hub.id);
  }

  private async listSubscription(subscriptionId: string): Promise<HubDocument[]> {
    const what = `IoT hubs of subscription ${subscriptionId}`;
    const hubs: HubDocument[] = [];
    let next: string | undefined = this.url(`/subscriptions/${subscriptionId}/providers/Microsoft.Devices/IotHubs`);
    while (next) {
      const response = await this.send('GET', next, what);
      const page = parseJson(response, what) as { value?: unknown[]; nextLink?: string };
      for (const item of page.value ?? []) if (isObject(item)) hubs.push(toHub(item));
      next = page.nextLink || undefined;
    }
    return hubs;
  }

  /**
   * Follows ARM's async pattern: `Azure-AsyncOperation` (status document), else `Location` (202 until done), else
   * the resource's own provisioningState. Resolves on success; throws HUB_UPDATE_FAILED on a failed operation.
   */
  private async waitForOperation(first: PipelineResponse, hubId: string): Promise<void> {
    const what = `update of hub ${hubId}`;
    const asyncUrl = first.headers.get('azure-asyncoperation');
    const locationUrl = first.headers.get('location');
    const deadline = Date.now() + (this.options.maxOperationMs ?? 9 * 60_000);
    let response = first;
    for (;;) {
      const status = asyncUrl
        ? first === response
          ? 'inprogress'
          : operationStatus(parseJson(response, what))
        : locationUrl
          ? response.status === 202
            ? 'inprogress'
            : 'succeeded'
          : provisioningState(parseJson(response, what));
      if (status === 'succeeded') return;
      if (TERMINAL_FAILURES.has(status)) {
        const error = operationError(response);
        throw new UpstreamRejectedError(
          'HUB_UPDATE_FAILED',
          `ARM reported the ${what} as ${status}${error ? `: ${error}` : ''}.`,
        );
      }
      if (Date.now() > deadline) throw new UpstreamUnavailableError(`The ${what} did not finish in time.`);
      await this.sleep(retryAfterMs(response) ?? this.options.defaultPollIntervalMs ?? 5_000);
      response = await this.send('GET', asyncUrl ?? locationUrl ?? this.url(hubId), what);
    }
  }

  private url(pathOrUrl: string): string {
    const url = new URL(pathOrUrl, this.options.armEndpoint);
    if (!url.searchParams.has('api-version')) url.searchParams.set('api-version', HUB_API_VERSION);
    return url.toString();
  }

  private async send(
    method: 'GET' | 'PUT',
    url: string,
    what: string,
    body?: string,
    headers: Record<string, string> = {},
    expectedErrors: number[] = [],
  ): Promise<PipelineResponse> {
    const response = await guard(what, () =>
      this.client.sendRequest(
        createPipelineRequest({ url, method, headers: createHttpHeaders(headers), ...(body ? { body } : {}) }),
      ),
    );
    if (response.status >= 400 && !expectedErrors.includes(response.status)) {
      throw toRotatorError(restErrorLike(response), what);
    }
    return response;
  }
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseJson(response: PipelineResponse, what: string): JsonObject {
  try {
    const parsed: unknown = JSON.parse(response.bodyAsText ?? '{}');
    if (isObject(parsed)) return parsed;
  } catch {
    // fall through
  }
  throw new UpstreamRejectedError(
    'UPSTREAM_REJECTED',
    `ARM answered the request for ${what} with a body that is not a JSON object.`,
  );
}

function toHub(body: JsonObject, response?: PipelineResponse): HubDocument {
  const etag = typeof body.etag === 'string' ? body.etag : (response?.headers.get('etag') ?? undefined);
  return {
    id: typeof body.id === 'string' ? body.id : '',
    name: typeof body.name === 'string' ? body.name : '',
    ...(etag ? { etag } : {}),
    body,
  };
}

function operationStatus(doc: JsonObject): string {
  return typeof doc.status === 'string' ? doc.status.toLowerCase() : 'inprogress';
}

function provisioningState(doc: JsonObject): string {
  const properties = isObject(doc.properties) ? doc.properties : {};
  return typeof properties.provisioningState === 'string' ? properties.provisioningState.toLowerCase() : 'succeeded';
}

function operationError(response: PipelineResponse): string | undefined {
  try {
    const doc = JSON.parse(response.bodyAsText ?? '{}') as { error?: { code?: string; message?: string } };
    return doc.error ? [doc.error.code, doc.error.message].filter(Boolean).join(': ') : undefined;
  } catch {
    return undefined;
  }
}

/** Shapes a non-2xx raw response like the SDK's RestError so the one error mapper handles it. */
function restErrorLike(response: PipelineResponse): Error {
  let code: string | undefined;
  try {
    code = (JSON.parse(response.bodyAsText ?? '{}') as { error?: { code?: string } }).error?.code;
  } catch {
    code = undefined;
  }
  return Object.assign(new Error(`HTTP ${response.status}`), {
    name: 'RestError',
    statusCode: response.status,
    code,
  });
}
