// IoT hubs through ARM. @azure/arm-iothub 6.3.0 speaks the GA api-version, whose model has no
// `properties.encryption`: its typed update silently drops the key change. So hubs travel as raw JSON with a preview
// api-version (ROTATOR_IOTHUB_API_VERSION), through the IotHubClient's own pipeline (auth and tracing stay the
// SDK's). The SDK's retries are off: a hub step that meets throttling or a transient failure goes back on the queue,
// delayed (hubSteps.ts), and every request first takes a token from the shared ARM budget (armBudget.ts).
// ARM PUT replaces the whole resource: the body we PUT is the body we read, with only the key identifier changed and
// the read-only fields left out, guarded by If-Match. Only URLs on the configured ARM endpoint are ever requested,
// with only hub ids of the configured subscriptions: the bearer token goes nowhere else.
import type { TokenCredential } from '@azure/core-auth';
import { createPipelineRequest, createHttpHeaders } from '@azure/core-rest-pipeline';
import type { HttpClient, PipelineResponse } from '@azure/core-rest-pipeline';
import { IotHubClient } from '@azure/arm-iothub';
import { mapWithConcurrency } from '../domain/concurrency';
import {
  EtagConflictError,
  ThrottledError,
  UpstreamRejectedError,
  UpstreamUnavailableError,
  ValidationError,
} from '../domain/errors';
import type { HubDocument, HubRepository, HubUpdateStarted, JsonObject, OperationState } from '../domain/ports';
import { armBudgetPolicy, retryAfterMs } from './armBudgetTable';
import type { SharedArmBudget } from './armBudget';
import { guard, toRotatorError } from './azureErrors';
import { keepAliveThroughProxy } from './proxyTunnel';

export interface IotHubAdapterOptions {
  armEndpoint: string;
  subscriptionIds: readonly string[];
  /** A preview api-version whose IotHub model has `properties.encryption`. */
  apiVersion: string;
  budget: SharedArmBudget;
  /** One ARM request may take this long before it counts as a transient failure. */
  requestTimeoutMs?: number;
  /** The transport (the SDK's default one when omitted), as every Azure SDK client accepts it. */
  httpClient?: HttpClient;
}

/** How long a listing waits in all for ARM's read budget before it fails as throttled. */
const LISTING_THROTTLE_WAIT_MS = 12_000;
/** Subscriptions listed at once (ARM meters reads per subscription, so they do not compete). */
const LISTING_CONCURRENCY = 16;
const HUB_ID =
  /^\/subscriptions\/([0-9a-f-]{36})\/resourceGroups\/[-\w._()]{1,90}\/providers\/Microsoft\.Devices\/IotHubs\/[0-9a-z-]{3,50}$/i;

export class IotHubAdapter implements HubRepository {
  private readonly client: IotHubClient;
  private readonly origin: string;
  private readonly subscriptions: Set<string>;
  private listing: Promise<HubDocument[]> | undefined;

  constructor(
    credential: TokenCredential,
    private readonly options: IotHubAdapterOptions,
  ) {
    this.origin = new URL(options.armEndpoint).origin;
    this.subscriptions = new Set(options.subscriptionIds.map((s) => s.toLowerCase()));
    // The subscription id is part of the typed operations' URLs only; every request here carries its own URL.
    this.client = new IotHubClient(credential, options.subscriptionIds[0] ?? '', {
      endpoint: options.armEndpoint,
      credentialScopes: [`${options.armEndpoint}/.default`],
      retryOptions: { maxRetries: 0 },
      additionalPolicies: keepAliveThroughProxy(),
      ...(options.httpClient ? { httpClient: options.httpClient } : {}),
    });
    this.client.pipeline.addPolicy(armBudgetPolicy(options.budget), { afterPhase: 'Retry' });
  }

  /**
   * Concurrent callers (a burst of events) share one listing in flight instead of each paging every subscription;
   * a caller never gets a listing that finished before it asked.
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
    const response = await this.send('GET', this.hubUrl(hubId), `hub ${hubId}`);
    return toHub(parseJson(response, `hub ${hubId}`), response);
  }

  async beginReplace(hub: HubDocument, body: JsonObject): Promise<HubUpdateStarted> {
    const what = `hub ${hub.id}`;
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (hub.etag) headers['if-match'] = hub.etag;
    const response = await this.send('PUT', this.hubUrl(hub.id), what, JSON.stringify(body), headers, [412]);
    if (response.status === 412) throw new EtagConflictError(hub.id);
    const operationUrl = response.headers.get('azure-asyncoperation') ?? response.headers.get('location');
    const retryAfter = retryAfterMs(response);
    return {
      ...(operationUrl ? { operationUrl: this.armUrl(operationUrl, `the operation URL of ${what}`) } : {}),
      ...(retryAfter !== undefined ? { retryAfterMs: retryAfter } : {}),
    };
  }

  /** `Azure-AsyncOperation` answers a status document; a `Location` URL answers 202 until the operation is done. */
  async operationState(operationUrl: string): Promise<OperationState> {
    const what = 'a hub update operation';
    const response = await this.send('GET', this.armUrl(operationUrl, what), what);
    if (response.status === 202) return running(response);
    const doc = parseJson(response, what, true);
    const status = typeof doc.status === 'string' ? doc.status.toLowerCase() : 'succeeded';
    if (status === 'succeeded') return { status: 'succeeded' };
    if (['failed', 'canceled', 'cancelled'].includes(status)) {
      const error = operationError(doc);
      return { status: 'failed', ...(error ? { error } : {}) };
    }
    return running(response);
  }

  private async listSubscription(subscriptionId: string): Promise<HubDocument[]> {
    const what = `IoT hubs of subscription ${subscriptionId}`;
    const hubs: HubDocument[] = [];
    let next: string | undefined = this.armUrl(
      `/subscriptions/${encodeURIComponent(subscriptionId)}/providers/Microsoft.Devices/IotHubs`,
      what,
    );
    // A listing plans a move (an Event Grid delivery waits on it, 30 s at most): when ARM's read budget is spent by
    // running steps, it waits for its turn a while instead of failing the delivery, which Event Grid would retry
    // and, failing again, delay.
    const deadline = Date.now() + LISTING_THROTTLE_WAIT_MS;
    while (next) {
      let response: PipelineResponse;
      try {
        response = await this.send('GET', next, what);
      } catch (error) {
        const wait = error instanceof ThrottledError ? (error.retryAfterMs ?? 1_000) : Number.POSITIVE_INFINITY;
        if (Date.now() + wait > deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, wait));
        continue;
      }
      const page = parseJson(response, what) as { value?: unknown[]; nextLink?: string };
      for (const item of page.value ?? []) {
        if (isObject(item) && typeof item.id === 'string' && this.isHubId(item.id)) hubs.push(toHub(item));
      }
      next = page.nextLink ? this.armUrl(page.nextLink, `the next page of ${what}`) : undefined;
    }
    return hubs;
  }

  private isHubId(hubId: string): boolean {
    const match = HUB_ID.exec(hubId);
    return !!match && this.subscriptions.has((match[1] ?? '').toLowerCase());
  }

  /** A hub id of a configured subscription, as a URL on the ARM endpoint; anything else is refused unsent. */
  private hubUrl(hubId: string): string {
    if (!this.isHubId(hubId)) {
      throw new ValidationError([
        {
          field: 'hubId',
          message: 'is not an IoT hub resource id in a subscription of ROTATOR_SUBSCRIPTION_IDS',
        },
      ]);
    }
    return this.armUrl(hubId, `hub ${hubId}`);
  }

  /** Resolves a path or URL against the ARM endpoint and refuses any other origin (a planted absolute or `//` URL). */
  private armUrl(pathOrUrl: string, what: string): string {
    let url: URL;
    try {
      url = new URL(pathOrUrl, this.options.armEndpoint);
    } catch {
      throw new UpstreamRejectedError('UPSTREAM_REJECTED', `The URL of ${what} is not a URL.`);
    }
    if (url.origin !== this.origin) {
      throw new UpstreamRejectedError('UPSTREAM_REJECTED', `The URL of ${what} is not on the configured ARM endpoint.`);
    }
    if (!url.searchParams.has('api-version')) url.searchParams.set('api-version', this.options.apiVersion);
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
        createPipelineRequest({
          url,
          method,
          headers: createHttpHeaders(headers),
          timeout: this.options.requestTimeoutMs ?? 30_000,
          ...(body ? { body } : {}),
        }),
      ),
    );
    if (response.status < 400 || expectedErrors.includes(response.status)) return response;
    const detail = errorDetail(response);
    const retryAfter = retryAfterMs(response);
    if (response.status === 429 || (response.status === 503 && retryAfter !== undefined)) {
      throw new ThrottledError(`ARM throttled the request for ${what} (${detail}).`, retryAfter);
    }
    // 409: another operation is running on the hub; it ends by itself, so this is worth a later try.
    if (response.status === 409) {
      throw new UpstreamUnavailableError(`ARM refused the request for ${what} for now (${detail}).`);
    }
    throw toRotatorError(restErrorLike(response, detail), what);
  }
}

function running(response: PipelineResponse): OperationState {
  const retryAfter = retryAfterMs(response);
  return { status: 'running', ...(retryAfter !== undefined ? { retryAfterMs: retryAfter } : {}) };
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseJson(response: PipelineResponse, what: string, emptyIsObject = false): JsonObject {
  const text = response.bodyAsText ?? '';
  if (emptyIsObject && !text.trim()) return {};
  try {
    const parsed: unknown = JSON.parse(text || '{}');
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

/** A failed operation's error (ARM's `{error: {code, message}}`), as text for reports. */
function operationError(doc: JsonObject): string | undefined {
  const error = isObject(doc.error) ? doc.error : undefined;
  if (!error) return undefined;
  return [error.code, error.message].filter((v) => typeof v === 'string' && v).join(': ');
}

/**
 * The code of an error answer. ARM's front door answers `{"error": {"code", "message"}}`; the IoT Hub resource
 * provider answers its ErrorDetails at the top level (`{"code": "412001", "httpStatusCode", "message"}`), often with
 * a numeric code. Either way the code is kept for reports and outcomes (the message may echo request content, so it
 * is not).
 */
function errorDetail(response: PipelineResponse): string {
  let code: unknown;
  try {
    const doc = JSON.parse(response.bodyAsText ?? '{}') as { code?: unknown; error?: { code?: unknown } };
    code = doc.error?.code ?? doc.code;
  } catch {
    code = undefined;
  }
  const text = typeof code === 'string' || typeof code === 'number' ? String(code).slice(0, 80) : 'no error code';
  return `${text}, HTTP ${response.status}`;
}

/** Shapes a non-2xx raw response like the SDK's RestError so the one error mapper handles it. */
function restErrorLike(response: PipelineResponse, detail: string): Error {
  return Object.assign(new Error(`HTTP ${response.status}`), {
    name: 'RestError',
    statusCode: response.status,
    code: detail.replace(/, HTTP \d+$/, ''),
  });
}
