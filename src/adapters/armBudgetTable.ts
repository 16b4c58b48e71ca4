// The shared ARM budget's buckets in Table Storage (see armBudget.ts for why), and the pipeline policy that makes
// every ARM request take its token and report ARM's answer back.
import { isRestError } from '@azure/core-rest-pipeline';
import type { PipelinePolicy, PipelineResponse } from '@azure/core-rest-pipeline';
import type { TableClient } from '@azure/data-tables';
import type { BucketState, BucketStore, BudgetKind, SharedArmBudget } from './armBudget';
import { tableReady } from './tables';

export const BUDGET_TABLE = 'ArmBudget';

type BucketEntity = { partitionKey: string; rowKey: string } & BucketState;

const status = (error: unknown) => (isRestError(error) ? error.statusCode : undefined);

export class TableBucketStore implements BucketStore {
  private readonly ensureTable: () => Promise<void>;

  constructor(private readonly table: TableClient) {
    this.ensureTable = tableReady(table, 'the ARM budget table');
  }

  async read(id: string): Promise<{ state: BucketState; etag: string } | undefined> {
    await this.ensureTable();
    const [partitionKey, rowKey] = keysOf(id);
    try {
      const e = await this.table.getEntity<BucketEntity>(partitionKey, rowKey);
      return {
        state: { tokens: Number(e.tokens), at: Number(e.at), pausedUntil: Number(e.pausedUntil ?? 0) },
        etag: e.etag,
      };
    } catch (error) {
      if (status(error) === 404) return undefined;
      throw error;
    }
  }

  async write(id: string, state: BucketState, etag: string | undefined): Promise<string | undefined> {
    await this.ensureTable();
    const [partitionKey, rowKey] = keysOf(id);
    const entity: BucketEntity = { partitionKey, rowKey, ...state };
    try {
      const response = etag
        ? await this.table.updateEntity(entity, 'Replace', { etag })
        : await this.table.createEntity(entity);
      return response.etag ?? '*';
    } catch (error) {
      if (status(error) === 412 || status(error) === 409 || status(error) === 404) return undefined;
      throw error;
    }
  }
}

function keysOf(id: string): [string, string] {
  const [subscription = '', kind = ''] = id.split('|');
  return [subscription, kind];
}

const KIND_OF_METHOD: Record<string, BudgetKind> = {
  GET: 'reads',
  HEAD: 'reads',
  PUT: 'writes',
  PATCH: 'writes',
  POST: 'writes',
};
const SUBSCRIPTION_IN_PATH = /^\/subscriptions\/([^/]+)/i;
const REMAINING_HEADER: Record<BudgetKind, string> = {
  reads: 'x-ms-ratelimit-remaining-subscription-reads',
  writes: 'x-ms-ratelimit-remaining-subscription-writes',
};

/**
 * Every ARM request of a subscription takes a token of its kind first, and ARM's answer (remaining count, 429)
 * corrects the shared model. With the SDK's own retries off, this and the hub steps' queue are the only places
 * throttling is handled.
 */
export function armBudgetPolicy(budget: SharedArmBudget): PipelinePolicy {
  return {
    name: 'armBudgetPolicy',
    async sendRequest(request, next) {
      const kind = KIND_OF_METHOD[request.method];
      const subscriptionId = kind ? SUBSCRIPTION_IN_PATH.exec(new URL(request.url).pathname)?.[1] : undefined;
      if (!kind || !subscriptionId) return next(request);
      await budget.acquire(subscriptionId, kind);
      const response = await next(request);
      const remaining = Number(response.headers.get(REMAINING_HEADER[kind]) ?? Number.NaN);
      void budget
        .observe(subscriptionId, kind, {
          status: response.status,
          ...(Number.isInteger(remaining) ? { remaining } : {}),
          ...(response.status === 429 ? { retryAfterMs: retryAfterMs(response) ?? 1_000 } : {}),
        })
        .catch(() => undefined);
      return response;
    },
  };
}

/** Retry-After in milliseconds (`retry-after-ms`, `x-ms-retry-after-ms`, or `retry-after` in seconds or as a date). */
export function retryAfterMs(response: PipelineResponse): number | undefined {
  for (const name of ['retry-after-ms', 'x-ms-retry-after-ms']) {
    const ms = Number(response.headers.get(name) ?? Number.NaN);
    if (Number.isFinite(ms)) return Math.max(0, ms);
  }
  const value = response.headers.get('retry-after');
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(value);
  return Number.isFinite(date) ? Math.max(0, date - Date.now()) : undefined;
}
