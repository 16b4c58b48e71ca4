// The audit log in Azure Table Storage: one partition per key, rows ordered newest first by an inverted time.
import type { TableClient } from '@azure/data-tables';
import type { TableEntityResult, TransactionAction } from '@azure/data-tables';
import { chunks } from '../domain/concurrency';
import { ValidationError } from '../domain/errors';
import { keyLabel } from '../domain/keyId';
import type { KeyName } from '../domain/keyId';
import type { AuditLog, AuditPage, AuditRecord } from '../domain/ports';
import { tableReady } from './tables';
import { guard } from './azureErrors';

export const AUDIT_TABLE = 'RotationAudit';
const MAX_TICKS = 9_999_999_999_999;

/** Table keys may not contain / \ # ? or control characters. */
export function partitionFor(key: KeyName): string {
  return keyLabel(key).replace(/[/\\#?]/g, '|');
}

type AuditEntity = Omit<AuditRecord, 'time'> & { partitionKey: string; rowKey: string; time: Date };

export class AuditTableAdapter implements AuditLog {
  private readonly ensureTable: () => Promise<void>;

  constructor(private readonly table: TableClient) {
    this.ensureTable = tableReady(table, 'the audit table');
  }

  async append(records: AuditRecord[]): Promise<void> {
    if (!records.length) return;
    await this.ensureTable();
    // Rows of one partition go in transactions of up to 100; partitions differ only across keys.
    const byPartition = new Map<string, AuditEntity[]>();
    for (const record of records) {
      const partitionKey = record.keyId ? partitionFor(keyOf(record.keyId)) : 'unknown-key';
      const rowKey = `${String(MAX_TICKS - record.time.getTime()).padStart(13, '0')}-${record.id}`;
      const entity = Object.fromEntries(
        Object.entries({ ...record, partitionKey, rowKey }).filter(([, v]) => v !== undefined),
      ) as AuditEntity;
      const rows = byPartition.get(partitionKey);
      if (rows) rows.push(entity);
      else byPartition.set(partitionKey, [entity]);
    }
    // Upserts: a record repeated after a crash (same id and time) replaces itself. Transactions are independent, so
    // they go out together.
    await guard('the audit table', () =>
      Promise.all(
        [...byPartition.values()]
          .flatMap((entities) => chunks(entities, 100))
          .map((batch) => this.table.submitTransaction(batch.map((e): TransactionAction => ['upsert', e, 'Replace']))),
      ),
    );
  }

  async list(key: KeyName, limit: number, continuationToken?: string): Promise<AuditPage> {
    if (continuationToken) assertContinuationToken(continuationToken);
    await this.ensureTable();
    return guard('the audit table', async () => {
      const pages = this.table
        .listEntities<AuditEntity>({
          queryOptions: { filter: `PartitionKey eq '${partitionFor(key).replace(/'/g, "''")}'` },
        })
        .byPage({ maxPageSize: limit, ...(continuationToken ? { continuationToken } : {}) });
      const first = await pages.next();
      if (first.done) return { records: [] };
      const page = first.value;
      return {
        records: page.slice(0, limit).map(toRecord),
        ...(page.continuationToken ? { continuationToken: page.continuationToken } : {}),
      };
    });
  }
}

/**
 * A continuation token is what a previous page returned: the SDK's base64 JSON naming the service's (opaque) next
 * partition and row. Anything else is the caller's mistake (400), not an unreachable table (503). A token of another
 * key's history cannot leak it: the query is limited to this key's partition.
 */
function assertContinuationToken(token: string): void {
  let next: unknown;
  try {
    next = /^[A-Za-z0-9+/=_-]{1,2048}$/.test(token)
      ? JSON.parse(Buffer.from(token, 'base64').toString('utf8'))
      : undefined;
  } catch {
    next = undefined;
  }
  const valid =
    typeof next === 'object' &&
    next !== null &&
    typeof (next as { nextPartitionKey?: unknown }).nextPartitionKey === 'string' &&
    typeof (next as { nextRowKey?: unknown }).nextRowKey === 'string';
  if (!valid) {
    throw new ValidationError([
      { field: 'continuationToken', message: "is not a token from a previous page of this key's history" },
    ]);
  }
}

function keyOf(keyId: string): KeyName {
  const url = new URL(keyId);
  return { vaultUrl: `https://${url.host.toLowerCase()}`, name: url.pathname.split('/')[2] ?? '' };
}

function toRecord(entity: TableEntityResult<AuditEntity>): AuditRecord {
  const { partitionKey: _p, rowKey: _r, etag: _e, timestamp: _t, ...record } = entity;
  return { ...record, time: new Date(record.time) };
}
