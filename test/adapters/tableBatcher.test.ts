// Conditional updates sent together, against Azurite with the real @azure/data-tables client: few requests, and
// every caller still gets its own change's answer.
import { randomUUID } from 'node:crypto';
import { TableClient } from '@azure/data-tables';
import type { TransactionAction } from '@azure/data-tables';
import type { PipelinePolicy } from '@azure/core-rest-pipeline';
import { describe, expect, inject, it } from 'vitest';
import { TableUpdateBatcher } from '../../src/adapters/tableBatcher';

async function tableWithRows(count: number) {
  const requests: string[] = [];
  const counter: PipelinePolicy = {
    name: 'countRequests',
    sendRequest: (request, next) => {
      requests.push(`${request.method} ${new URL(request.url).pathname.split('/').pop()}`);
      return next(request);
    },
  };
  const table = TableClient.fromConnectionString(
    inject('storageConnectionString'),
    `batcher${randomUUID().replace(/-/g, '')}`.slice(0, 40),
    { allowInsecureConnection: true, additionalPolicies: [{ policy: counter, position: 'perCall' }] },
  );
  await table.createTable();
  const rows = Array.from({ length: count }, (_, i) => ({
    partitionKey: 'p',
    rowKey: `r${String(i).padStart(3, '0')}`,
  }));
  for (let i = 0; i < rows.length; i += 100) {
    await table.submitTransaction(rows.slice(i, i + 100).map((e): TransactionAction => ['create', { ...e, n: 0 }]));
  }
  const etags = new Map<string, string>();
  for await (const e of table.listEntities()) etags.set(e.rowKey!, e.etag);
  requests.length = 0;
  return { table, rows, etags, requests };
}

describe('TableUpdateBatcher', () => {
  it('sends changes made together as transactions of at most 100, and answers each with its new ETag', async () => {
    const { table, rows, etags, requests } = await tableWithRows(150);
    const batcher = new TableUpdateBatcher(table);
    const outcomes = await Promise.all(rows.map((r) => batcher.update({ ...r, n: 1 }, 'Merge', etags.get(r.rowKey)!)));
    expect(requests).toEqual(['POST $batch', 'POST $batch']);
    // Each new ETag is the row's real one: a conditional write with it goes through.
    const first = outcomes[0]!;
    expect('etag' in first && first.etag).toBeTruthy();
    const again = await batcher.update({ ...rows[0]!, n: 2 }, 'Merge', 'etag' in first ? first.etag! : '');
    expect('etag' in again).toBe(true);
    expect((await table.getEntity<{ n: number }>('p', 'r000')).n).toBe(2);
    expect((await table.getEntity<{ n: number }>('p', 'r149')).n).toBe(1);
  });

  it('refuses only the change whose ETag moved on; the others in its transaction still happen', async () => {
    const { table, rows, etags } = await tableWithRows(5);
    await table.updateEntity({ ...rows[2]!, n: 9 }, 'Merge'); // someone else got to r002 first
    const batcher = new TableUpdateBatcher(table);
    const outcomes = await Promise.all(
      rows.map((r) => batcher.update({ ...r, n: 1 }, 'Replace', etags.get(r.rowKey)!)),
    );
    expect(outcomes.map((o) => ('refused' in o ? o.refused : 'ok'))).toEqual(['ok', 'ok', 412, 'ok', 'ok']);
    const values = [];
    for await (const e of table.listEntities<{ n: number }>()) values.push(e.n);
    expect(values).toEqual([1, 1, 9, 1, 1]);
  });

  it('answers a change to a row that is gone with 404', async () => {
    const { table } = await tableWithRows(1);
    const outcome = await new TableUpdateBatcher(table).update({ partitionKey: 'p', rowKey: 'missing' }, 'Merge', '*');
    expect(outcome).toEqual({ refused: 404 });
  });
});
