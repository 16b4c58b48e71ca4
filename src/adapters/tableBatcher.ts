// Conditional updates to one table, sent together. A fan-out claims and records every hub task separately, and one
// request per change would make the jobs table the busiest thing in a rotation. Changes requested in the same turn
// of the event loop go out as entity-group transactions instead: up to 100 changes of one partition per request
// (all tasks of a job share the key's partition). A transaction is all or nothing, so when one change in it fails
// (its ETag moved on: another invocation got there first) the rest are sent again one by one, and every caller
// gets the answer its own change would have had.
import { isRestError } from '@azure/core-rest-pipeline';
import type { TableClient, TableEntity, TransactionAction, UpdateMode } from '@azure/data-tables';

/** The new ETag, or the status that refused the change (412: the ETag moved on; 404: the row is gone). */
export type ChangeOutcome = { etag: string | undefined } | { refused: 412 | 404 };

interface Change {
  entity: TableEntity;
  mode: UpdateMode;
  etag: string;
  settle: (outcome: ChangeOutcome) => void;
  fail: (error: unknown) => void;
}

const MAX_TRANSACTION = 100;
/**
 * Transactions in flight at once. Changes that arrive meanwhile wait and leave together (group commit); the first
 * transactions come back sooner than if all went at once, so the first claimed hubs start sooner.
 */
const MAX_IN_FLIGHT = 2;

export class TableUpdateBatcher {
  private queued: Change[] = [];
  private inFlight = 0;

  constructor(private readonly table: TableClient) {}

  /** Updates one entity if its ETag is still `etag`. Rejects only on failures other than 412/404 (e.g. unreachable). */
  update(entity: TableEntity, mode: UpdateMode, etag: string): Promise<ChangeOutcome> {
    return new Promise((settle, fail) => {
      // Nothing queued: no send is due to pick this up, so one is scheduled once this turn's changes are in.
      if (this.queued.length === 0) setImmediate(() => this.pump());
      this.queued.push({ entity, mode, etag, settle, fail });
    });
  }

  private pump(): void {
    while (this.inFlight < MAX_IN_FLIGHT && this.queued.length) {
      const [next = [], ...rest] = transactions(this.queued);
      this.queued = rest.flat();
      this.inFlight++;
      void this.send(next).finally(() => {
        this.inFlight--;
        this.pump();
      });
    }
  }

  private async send(changes: Change[]): Promise<void> {
    if (changes.length === 1) return this.sendAlone(changes[0]!);
    try {
      const response = await this.table.submitTransaction(
        changes.map((c): TransactionAction => ['update', c.entity, c.mode, { etag: c.etag }]),
      );
      // Sub-responses come in the order of the actions.
      changes.forEach((c, i) => c.settle({ etag: response.subResponses[i]?.etag }));
    } catch (error) {
      if (!refusedChange(error)) {
        for (const c of changes) c.fail(error);
        return;
      }
      await Promise.all(changes.map((c) => this.sendAlone(c)));
    }
  }

  private async sendAlone(change: Change): Promise<void> {
    try {
      const { etag } = await this.table.updateEntity(change.entity, change.mode, { etag: change.etag });
      change.settle({ etag });
    } catch (error) {
      const status = isRestError(error) ? error.statusCode : undefined;
      if (status === 412 || status === 404) change.settle({ refused: status });
      else change.fail(error);
    }
  }
}

/** Groups changes by partition into transactions of at most 100, never two changes of one row in a transaction. */
function transactions(changes: Change[]): Change[][] {
  const result: Change[][] = [];
  const open = new Map<string, { changes: Change[]; rows: Set<string> }[]>();
  for (const change of changes) {
    const partition = String(change.entity.partitionKey);
    const row = String(change.entity.rowKey);
    const candidates = open.get(partition) ?? [];
    let target = candidates.find((t) => t.changes.length < MAX_TRANSACTION && !t.rows.has(row));
    if (!target) {
      target = { changes: [], rows: new Set() };
      candidates.push(target);
      open.set(partition, candidates);
      result.push(target.changes);
    }
    target.changes.push(change);
    target.rows.add(row);
  }
  return result;
}

/** A transaction that failed because one of its changes was refused (Azure: TableTransactionError; Azurite: 412/404). */
function refusedChange(error: unknown): boolean {
  if (error instanceof Error && error.name === 'TableTransactionError') return true;
  return isRestError(error) && (error.statusCode === 412 || error.statusCode === 404);
}
